"""Captioned synthetic images: shapes and simple drawn things, deterministic by seed.

The bundled model is trained on these (``searchlib train``), evaluated on a held-out split made with
another seed (``searchlib evaluate``), and ``searchlib demo`` indexes a folder of them. Each sample
knows its attributes, so evaluation can check that a retrieved image really matches a caption.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFilter

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (40, 170, 50),
    "blue": (30, 70, 220), "purple": (130, 40, 180), "pink": (245, 120, 190), "brown": (120, 70, 30),
    "black": (15, 15, 15), "white": (245, 245, 245), "gray": (128, 128, 128),
}
COLOR_SYNONYMS = {
    "red": ["red", "crimson", "scarlet"], "orange": ["orange"], "yellow": ["yellow", "golden"],
    "green": ["green", "emerald"], "blue": ["blue", "navy", "azure"], "purple": ["purple", "violet"],
    "pink": ["pink"], "brown": ["brown"], "black": ["black", "dark"], "white": ["white"],
    "gray": ["gray", "grey", "silver"],
}
SHAPES = ["circle", "square", "triangle", "star", "house", "tree", "car", "sun", "flower"]
SHAPE_SYNONYMS = {
    "circle": ["circle", "disc", "round dot"], "square": ["square", "box", "block"],
    "triangle": ["triangle"], "star": ["star"], "house": ["house", "home"], "tree": ["tree"],
    "car": ["car", "automobile"], "sun": ["sun"], "flower": ["flower", "blossom"],
}
PLURALS = {"box": "boxes", "home": "homes", "round dot": "round dots", "automobile": "automobiles"}
SIZES = {"small": 0.16, "medium": 0.24, "large": 0.34}
POSITIONS = {
    "top left": (0.28, 0.28), "top right": (0.72, 0.28), "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72), "center": (0.5, 0.5),
}
BACKGROUNDS = ["plain", "gradient", "noise", "stripes"]
NUMBERS = {1: "one", 2: "two", 3: "three"}


@dataclass
class Sample:
    """One generated image and what is in it."""

    image: Image.Image
    caption: str
    shape: str
    color: str
    count: int
    size: str
    position: str | None
    background: str
    bg_color: str
    mentioned: set[str] = field(default_factory=set)  # attributes the caption states


def _plural(word: str) -> str:
    return PLURALS.get(word, word + "s")


def _polygon(cx, cy, r, sides, rot=0.0, inner=None):
    pts = []
    steps = sides * (2 if inner else 1)
    for i in range(steps):
        a = rot + 2 * math.pi * i / steps - math.pi / 2
        rr = inner * r if inner and i % 2 else r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               fill: tuple[int, int, int], rot: float) -> None:
    """Draw one object of radius ``r`` centred at (cx, cy)."""
    dark = tuple(max(0, c - 90) for c in fill)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, rot + math.pi / 4), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, rot), fill=fill)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.25, 5, rot, inner=0.45), fill=fill)
    elif shape == "house":
        draw.rectangle([cx - r * 0.8, cy - r * 0.1, cx + r * 0.8, cy + r], fill=fill)
        draw.polygon([(cx - r, cy - 0.1 * r), (cx, cy - r), (cx + r, cy - 0.1 * r)], fill=dark)
        draw.rectangle([cx - r * 0.2, cy + r * 0.4, cx + r * 0.2, cy + r], fill=dark)
    elif shape == "tree":
        draw.rectangle([cx - r * 0.15, cy + r * 0.2, cx + r * 0.15, cy + r], fill=(100, 60, 25))
        draw.ellipse([cx - r * 0.75, cy - r, cx + r * 0.75, cy + r * 0.4], fill=fill)
    elif shape == "car":
        draw.rectangle([cx - r, cy - r * 0.1, cx + r, cy + r * 0.45], fill=fill)
        draw.polygon([(cx - r * 0.55, cy - r * 0.1), (cx - r * 0.3, cy - r * 0.55),
                      (cx + r * 0.35, cy - r * 0.55), (cx + r * 0.6, cy - r * 0.1)], fill=fill)
        for wx in (cx - r * 0.55, cx + r * 0.55):
            draw.ellipse([wx - r * 0.25, cy + r * 0.25, wx + r * 0.25, cy + r * 0.75], fill=(20, 20, 20))
    elif shape == "sun":
        for i in range(8):
            a = rot + i * math.pi / 4
            draw.line([(cx + r * 0.6 * math.cos(a), cy + r * 0.6 * math.sin(a)),
                       (cx + r * 1.2 * math.cos(a), cy + r * 1.2 * math.sin(a))], fill=fill,
                      width=max(1, int(r * 0.18)))
        draw.ellipse([cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6], fill=fill)
    elif shape == "flower":
        for i in range(5):
            a = rot + i * 2 * math.pi / 5
            px, py = cx + r * 0.55 * math.cos(a), cy + r * 0.55 * math.sin(a)
            draw.ellipse([px - r * 0.4, py - r * 0.4, px + r * 0.4, py + r * 0.4], fill=fill)
        draw.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(250, 210, 40))
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _background(rng: random.Random, kind: str, color: tuple[int, int, int], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), color)
    if kind == "gradient":
        other = tuple(min(255, max(0, c + rng.randint(-90, 90))) for c in color)
        grad = Image.linear_gradient("L").resize((size, size)).rotate(rng.choice([0, 90, 180, 270]))
        img = Image.composite(Image.new("RGB", (size, size), other), img, grad)
    elif kind == "noise":
        noise = Image.effect_noise((size, size), rng.uniform(20, 45)).convert("RGB")
        img = Image.blend(img, noise, 0.25)
    elif kind == "stripes":
        draw = ImageDraw.Draw(img)
        other = tuple(min(255, max(0, c + (50 if sum(color) < 380 else -50))) for c in color)
        step = rng.randint(size // 16, size // 8)
        for x in range(0, size * 2, step * 2):
            if rng.random() < 0.5:
                draw.rectangle([x, 0, x + step - 1, size], fill=other)
            else:
                draw.rectangle([0, x, size, x + step - 1], fill=other)
    return img


def _caption(rng: random.Random, s: Sample, partial: bool = False) -> str:
    color = rng.choice(COLOR_SYNONYMS[s.color])
    noun = rng.choice(SHAPE_SYNONYMS[s.shape])
    mentioned = {"shape", "color", "count"}
    # Partial captions (training only) teach the text tower each concept on its own, which is
    # what zero-shot prompts like "a photo of a star" or "a red object" ask about.
    omit = rng.random() if partial else 1.0
    if omit < 0.12:
        color = ""
        mentioned.discard("color")
    elif omit < 0.22:
        noun = rng.choice(["object", "thing", "shape"])
        mentioned.discard("shape")
    noun = noun if s.count == 1 else _plural(noun)
    parts = []
    if s.count > 1:
        parts.append(NUMBERS[s.count])
    elif rng.random() < 0.8:
        parts.append("a")
    if rng.random() < 0.5:
        parts.append(s.size)
        mentioned.add("size")
    parts += [w for w in (color, noun) if w]
    phrase = " ".join(parts)
    if phrase.startswith("a ") and phrase[2] in "aeiou":
        phrase = "an " + phrase[2:]
    tail = []
    if s.position and rng.random() < 0.4:
        tail.append(f"in the {s.position}")
        mentioned.add("position")
    if rng.random() < 0.5:
        bg = s.bg_color if s.background == "plain" else f"{s.background} {s.bg_color}"
        tail.append(f"on a {bg} background" if s.background != "stripes"
                    else f"on a {s.bg_color} striped background")
        mentioned.add("background")
    template = rng.choice(["{p}", "a photo of {p}", "a picture of {p}", "an image showing {p}",
                           "{p}", "a drawing of {p}"])
    s.mentioned = mentioned
    return " ".join([template.format(p=phrase)] + tail)


def make_sample(rng: random.Random, size: int = 128, count: int | None = None, shape: str | None = None,
                color: str | None = None, artefacts: bool = True, partial: bool = False) -> Sample:
    """One random captioned image of ``size`` pixels.

    ``partial`` lets some captions leave out the color or the shape (used for training).
    """
    shape = shape or rng.choice(SHAPES)
    color = color or rng.choice(list(COLORS))
    count = count or rng.choice([1, 1, 1, 2, 3])
    size_word = rng.choice(list(SIZES))
    background = rng.choice(BACKGROUNDS)
    bg_color = rng.choice([c for c in COLORS if c != color])
    img = _background(rng, background, COLORS[bg_color], size)
    draw = ImageDraw.Draw(img)
    radius = SIZES[size_word] * size * (1.0 if count == 1 else 0.7)
    position = rng.choice(list(POSITIONS)) if count == 1 else None
    if count == 1:
        fx, fy = POSITIONS[position]
        centers = [(fx * size + rng.uniform(-3, 3), fy * size + rng.uniform(-3, 3))]
    else:
        slots = rng.sample([(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73), (0.5, 0.5)], count)
        centers = [(x * size, y * size) for x, y in slots]
    jitter = 12
    for cx, cy in centers:
        fill = tuple(min(255, max(0, c + rng.randint(-jitter, jitter))) for c in COLORS[color])
        draw_shape(draw, shape, cx, cy, radius, fill, rng.uniform(-0.4, 0.4))
    if artefacts:
        if rng.random() < 0.25:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        if rng.random() < 0.3:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=rng.randint(30, 80))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    sample = Sample(img, "", shape, color, count, size_word, position, background, bg_color)
    sample.caption = _caption(rng, sample, partial)
    return sample


def generate(n: int, seed: int, size: int = 128, single_object: bool = False) -> list[Sample]:
    """``n`` samples, identical for the same ``seed``."""
    rng = random.Random(seed)
    return [make_sample(rng, size, count=1 if single_object else None) for _ in range(n)]


def matches(sample: Sample, other: Sample) -> bool:
    """Whether ``other`` fits every attribute that ``sample``'s caption states."""
    checks = {
        "shape": sample.shape == other.shape, "color": sample.color == other.color,
        "count": sample.count == other.count, "size": sample.size == other.size,
        "position": sample.position == other.position,
        "background": (sample.background, sample.bg_color) == (other.background, other.bg_color)
        or (sample.background == "plain" and other.background == "plain" and sample.bg_color == other.bg_color),
    }
    return all(checks[a] for a in sample.mentioned)
