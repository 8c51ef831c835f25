"""Captioned synthetic images in English and Chinese: shapes and simple drawn things, by seed.

The bundled model is trained on these (``searchlib train``), evaluated on a held-out split made with
another seed (``searchlib evaluate``), and ``searchlib demo`` indexes a folder of them. Each sample
knows its attributes, so evaluation can check that a retrieved image really matches a caption.

The drawing varies widely, so that the model learns shapes and colours rather than one way of
drawing them: rotation, filled or outlined strokes of any width, stretched aspect, anti-aliased or
hard edges, colour jitter and shading, plain, gradient, striped, textured and photo-like
backgrounds, partial occlusion, blur and JPEG artefacts. Captions come in both languages with
natural variation (word order, measure words, synonyms, optional size, position and background).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field

import numpy as np
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
COLOR_ZH = {
    "red": ["红色", "红", "大红色"], "orange": ["橙色", "橘色", "橘黄色"], "yellow": ["黄色", "黄", "金黄色"],
    "green": ["绿色", "绿", "翠绿色"], "blue": ["蓝色", "蓝", "深蓝色"], "purple": ["紫色", "紫", "紫罗兰色"],
    "pink": ["粉色", "粉红色"], "brown": ["棕色", "褐色", "咖啡色"], "black": ["黑色", "黑"],
    "white": ["白色", "白"], "gray": ["灰色", "灰", "银色"],
}
SHAPES = ["circle", "square", "triangle", "star", "house", "tree", "car", "sun", "flower"]
SHAPE_SYNONYMS = {
    "circle": ["circle", "disc", "round dot"], "square": ["square", "box", "block"],
    "triangle": ["triangle"], "star": ["star"], "house": ["house", "home"], "tree": ["tree"],
    "car": ["car", "automobile"], "sun": ["sun"], "flower": ["flower", "blossom"],
}
SHAPE_ZH = {
    "circle": ["圆形", "圆", "圆点", "圆盘"], "square": ["正方形", "方块", "方形"], "triangle": ["三角形", "三角"],
    "star": ["星星", "星形", "五角星"], "house": ["房子", "房屋", "小房子"], "tree": ["树", "树木", "小树"],
    "car": ["汽车", "小汽车", "轿车", "车"], "sun": ["太阳"], "flower": ["花", "花朵", "小花"],
}
MEASURE_ZH = {"star": ["颗", "个"], "car": ["辆"], "flower": ["朵"], "tree": ["棵"], "house": ["座", "栋"]}
NUMBERS_ZH = {1: "一", 2: "两", 3: "三"}
PLURALS = {"box": "boxes", "home": "homes", "round dot": "round dots", "automobile": "automobiles"}
SIZES = {"small": 0.16, "medium": 0.24, "large": 0.34}
SIZE_ZH = {"small": ["小", "小小的"], "medium": ["中等大小的", "不大不小的"], "large": ["大", "很大的", "大大的"]}
POSITIONS = {
    "top left": (0.28, 0.28), "top right": (0.72, 0.28), "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72), "center": (0.5, 0.5),
}
POSITION_ZH = {"top left": ["左上角"], "top right": ["右上角"], "bottom left": ["左下角"], "bottom right": ["右下角"],
               "center": ["中间", "中央", "正中间"]}
#: Background kinds; ``plain``, ``gradient`` and ``stripes`` have a colour a caption may name.
BACKGROUNDS = ["plain", "gradient", "noise", "stripes", "texture", "photo"]
NAMED_BACKGROUNDS = ("plain", "gradient", "stripes")
NUMBERS = {1: "one", 2: "two", 3: "three"}
LANGUAGES = ("en", "zh")


@dataclass
class Sample:
    """One generated image, what is in it, and its captions (``captions[lang] = (text, mentioned)``)."""

    image: Image.Image
    caption: str
    shape: str
    color: str
    count: int
    size: str
    position: str | None
    background: str
    bg_color: str
    mentioned: set[str] = field(default_factory=set)  # attributes the English caption states
    captions: dict[str, tuple[str, set[str]]] = field(default_factory=dict)

    def caption_in(self, lang: str) -> str:
        return self.captions[lang][0]


def _plural(word: str) -> str:
    return PLURALS.get(word, word + "s")


# -- drawing ---------------------------------------------------------------------------------
@dataclass
class Style:
    """How one object is drawn."""

    angle: float  # radians
    stretch: tuple[float, float]  # x, y scale
    outline: int  # 0: filled; else the stroke width in pixels (at drawing scale)


def _transform(points, cx, cy, style: Style):
    """Stretch then rotate points around the centre."""
    ca, sa = math.cos(style.angle), math.sin(style.angle)
    sx, sy = style.stretch
    out = []
    for x, y in points:
        dx, dy = (x - cx) * sx, (y - cy) * sy
        out.append((cx + dx * ca - dy * sa, cy + dx * sa + dy * ca))
    return out


def _polygon(cx, cy, r, sides, rot=0.0, inner=None):
    pts = []
    steps = sides * (2 if inner else 1)
    for i in range(steps):
        a = rot + 2 * math.pi * i / steps - math.pi / 2
        rr = inner * r if inner and i % 2 else r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _ellipse_points(cx, cy, rx, ry, n=48):
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _shade(fill, amount: float):
    return tuple(int(max(0, min(255, c * amount))) for c in fill)


def _poly(draw: ImageDraw.ImageDraw, points, fill, style: Style, cx, cy) -> None:
    pts = _transform(points, cx, cy, style)
    if style.outline:
        draw.line(pts + [pts[0]], fill=fill, width=style.outline, joint="curve")
    else:
        draw.polygon(pts, fill=fill)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               fill: tuple[int, int, int], rot: float, style: Style | None = None,
               rng: random.Random | None = None) -> None:
    """Draw one object of radius ``r`` centred at (cx, cy) (``rot``: the legacy small tilt).

    With ``rng``, the object's own geometry varies too (points of a star, kind of triangle, a pine
    or a round tree, rays of a sun, petals of a flower, a house's chimney and windows...), so that
    the model learns the concept rather than one drawing of it.
    """
    style = style or Style(rot, (1.0, 1.0), 0)
    u = rng.uniform if rng else (lambda a, b: (a + b) / 2)
    pick = rng.choice if rng else (lambda options: options[0])
    dark = _shade(fill, 0.55)
    if shape == "circle":
        _poly(draw, _ellipse_points(cx, cy, r, r), fill, style, cx, cy)
    elif shape == "square":
        corner = pick([0.0, 0.0, 0.0, 0.15, 0.3]) * r
        half = r * 0.85
        if corner:
            pts = []
            for qx, qy, a0 in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
                ox, oy = cx + qx * (half - corner), cy + qy * (half - corner)
                pts += [(ox + corner * math.cos(math.radians(a0 + t)), oy + corner * math.sin(math.radians(a0 + t)))
                        for t in range(0, 91, 15)]
        else:
            pts = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
        _poly(draw, pts, fill, style, cx, cy)
    elif shape == "triangle":
        kind = pick(["equilateral", "equilateral", "isosceles", "right", "scalene"])
        if kind == "equilateral":
            pts = _polygon(cx, cy, r * 1.2, 3)
        elif kind == "isosceles":
            w = u(0.55, 1.1)
            pts = [(cx, cy - r * 1.1), (cx + r * w, cy + r * 0.8), (cx - r * w, cy + r * 0.8)]
        elif kind == "right":
            pts = [(cx - r * 0.9, cy - r * 0.9), (cx + r * 0.9, cy + r * 0.9), (cx - r * 0.9, cy + r * 0.9)]
        else:
            pts = [(cx + r * u(-0.6, 0.6), cy - r * 1.0), (cx + r * 1.0, cy + r * u(0.4, 0.9)),
                   (cx - r * 1.0, cy + r * u(0.5, 0.9))]
        _poly(draw, pts, fill, style, cx, cy)
    elif shape == "star":
        points = pick([5, 5, 5, 4, 6, 7, 8])
        _poly(draw, _polygon(cx, cy, r * 1.25, points, inner=u(0.38, 0.55)), fill, style, cx, cy)
    elif shape == "house":
        roof = u(0.75, 1.15)
        wall = u(0.65, 0.85)
        _poly(draw, [(cx - r * wall, cy - r * 0.1), (cx + r * wall, cy - r * 0.1), (cx + r * wall, cy + r),
                     (cx - r * wall, cy + r)], fill, style, cx, cy)
        roof_color = dark if not style.outline else fill
        if rng and rng.random() < 0.4:  # a chimney
            _poly(draw, [(cx + r * 0.35, cy - r * 0.75), (cx + r * 0.55, cy - r * 0.75), (cx + r * 0.55, cy - r * 0.2),
                         (cx + r * 0.35, cy - r * 0.2)], roof_color, style, cx, cy)
        _poly(draw, [(cx - r * roof, cy - 0.1 * r), (cx, cy - r), (cx + r * roof, cy - 0.1 * r)], roof_color,
              style, cx, cy)
        door_x = u(-0.3, 0.3) if rng else 0.0
        _poly(draw, [(cx + r * (door_x - 0.2), cy + r * 0.4), (cx + r * (door_x + 0.2), cy + r * 0.4),
                     (cx + r * (door_x + 0.2), cy + r), (cx + r * (door_x - 0.2), cy + r)], dark, style, cx, cy)
        if rng and rng.random() < 0.5:  # a window
            wx = -0.45 if door_x > 0 else 0.25
            _poly(draw, [(cx + r * wx, cy + r * 0.15), (cx + r * (wx + 0.22), cy + r * 0.15),
                         (cx + r * (wx + 0.22), cy + r * 0.4), (cx + r * wx, cy + r * 0.4)],
                  (235, 235, 200), Style(style.angle, style.stretch, 0), cx, cy)
    elif shape == "tree":
        trunk = (100, 60, 25) if not rng else _jitter_color(rng, (100, 60, 25), 15)
        _poly(draw, [(cx - r * 0.15, cy + r * 0.2), (cx + r * 0.15, cy + r * 0.2), (cx + r * 0.15, cy + r),
                     (cx - r * 0.15, cy + r)], trunk, style, cx, cy)
        crown = pick(["round", "round", "pine", "cloud"])
        if crown == "round":
            _poly(draw, _ellipse_points(cx, cy - r * 0.3, r * 0.75, r * u(0.6, 0.85)), fill, style, cx, cy)
        elif crown == "pine":
            for top, bottom, half in [(-1.05, -0.35, 0.45), (-0.75, 0.0, 0.6), (-0.45, 0.3, 0.75)]:
                _poly(draw, [(cx, cy + r * top), (cx + r * half, cy + r * bottom), (cx - r * half, cy + r * bottom)],
                      fill, style, cx, cy)
        else:
            for dx, dy, rr in ((-0.35, -0.2, 0.45), (0.35, -0.2, 0.45), (0.0, -0.55, 0.5), (0.0, -0.15, 0.45)):
                _poly(draw, _ellipse_points(cx + r * dx, cy + r * dy, r * rr, r * rr, 28), fill, style, cx, cy)
    elif shape == "car":
        cabin = u(-0.15, 0.15) if rng else 0.0
        height = u(0.35, 0.55)
        body = [(cx - r, cy - r * 0.1), (cx + r, cy - r * 0.1), (cx + r, cy + r * height), (cx - r, cy + r * height)]
        _poly(draw, body, fill, style, cx, cy)
        _poly(draw, [(cx + r * (cabin - 0.55), cy - r * 0.1), (cx + r * (cabin - 0.3), cy - r * 0.55),
                     (cx + r * (cabin + 0.35), cy - r * 0.55), (cx + r * (cabin + 0.6), cy - r * 0.1)],
              fill, style, cx, cy)
        wheel = u(0.2, 0.3)
        for wx in (cx - r * 0.55, cx + r * 0.55):
            _poly(draw, _ellipse_points(wx, cy + r * (height + 0.05), r * wheel, r * wheel, 20), (20, 20, 20),
                  Style(style.angle, style.stretch, 0), cx, cy)
    elif shape == "sun":
        rays = pick([8, 8, 6, 10, 12, 16])
        long = u(1.0, 1.3)
        triangular = rng is not None and rng.random() < 0.3
        width = max(1, int(r * 0.18)) if not style.outline else style.outline
        for i in range(rays):
            a = i * 2 * math.pi / rays
            if triangular:
                half = math.pi / rays * 0.6
                tri = [(cx + r * 0.6 * math.cos(a - half), cy + r * 0.6 * math.sin(a - half)),
                       (cx + r * long * math.cos(a), cy + r * long * math.sin(a)),
                       (cx + r * 0.6 * math.cos(a + half), cy + r * 0.6 * math.sin(a + half))]
                _poly(draw, tri, fill, style, cx, cy)
            else:
                line = [(cx + r * 0.65 * math.cos(a), cy + r * 0.65 * math.sin(a)),
                        (cx + r * long * math.cos(a), cy + r * long * math.sin(a))]
                draw.line(_transform(line, cx, cy, style), fill=fill, width=width)
        _poly(draw, _ellipse_points(cx, cy, r * 0.58, r * 0.58), fill, style, cx, cy)
    elif shape == "flower":
        petals = pick([5, 5, 4, 6, 8])
        length = u(0.45, 0.6)
        if rng and rng.random() < 0.4:  # a stem
            _poly(draw, [(cx - r * 0.06, cy), (cx + r * 0.06, cy), (cx + r * 0.06, cy + r * 1.2),
                         (cx - r * 0.06, cy + r * 1.2)], (40, 130, 45), Style(style.angle, style.stretch, 0), cx, cy)
        for i in range(petals):
            a = i * 2 * math.pi / petals
            px, py = cx + r * length * math.cos(a), cy + r * length * math.sin(a)
            _poly(draw, _ellipse_points(px, py, r * 0.4, r * 0.4 * u(0.6, 1.0), 24), fill, style, cx, cy)
        center = (250, 210, 40) if fill != COLORS["yellow"] else (150, 90, 20)
        _poly(draw, _ellipse_points(cx, cy, r * 0.3, r * 0.3, 20), center, Style(style.angle, style.stretch, 0),
              cx, cy)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _jitter_color(rng: random.Random, color: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    light = rng.uniform(0.82, 1.12)
    return tuple(int(max(0, min(255, c * light + rng.randint(-amount, amount)))) for c in color)


def _background(rng: random.Random, kind: str, color: tuple[int, int, int], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), color)
    if kind == "gradient":
        other = tuple(min(255, max(0, c + rng.randint(-90, 90))) for c in color)
        grad = Image.linear_gradient("L").resize((size, size)).rotate(rng.choice([0, 90, 180, 270, 45]))
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
    elif kind == "texture":
        img = _texture(rng, color, size)
    elif kind == "photo":
        img = _photo_like(rng, size)
    return img


def _texture(rng: random.Random, color, size: int) -> Image.Image:
    """Dots, checks or hatching over the background colour."""
    img = Image.new("RGB", (size, size), color)
    draw = ImageDraw.Draw(img)
    other = _jitter_color(rng, tuple(255 - c for c in color), 40)
    other = tuple(int(0.35 * o + 0.65 * c) for o, c in zip(other, color))  # faint: it must not look like shapes
    step = rng.randint(size // 20, size // 10)
    pattern = rng.choice(["dots", "checks", "hatch"])
    for y in range(0, size, step):
        for x in range(0, size, step):
            if pattern == "dots":
                d = step // 4
                draw.ellipse([x, y, x + d, y + d], fill=other)
            elif pattern == "checks" and (x // step + y // step) % 2:
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=other)
        if pattern == "hatch":
            draw.line([(0, y), (y, 0)], fill=other, width=1)
            draw.line([(size - y, size), (size, size - y)], fill=other, width=1)
    return img


def _photo_like(rng: random.Random, size: int) -> Image.Image:
    """Smooth, muted colour fields with soft blobs and grain, or a sky over a hilly ground: stand-ins
    for a photograph."""
    seed = rng.randint(0, 2**31)
    nrng = np.random.default_rng(seed)
    if nrng.random() < 0.35:
        sky, ground = nrng.uniform(60, 230, 3), nrng.uniform(30, 180, 3)
        x = np.linspace(0, 1, size)
        horizon = size * (0.45 + 0.12 * np.sin(x * nrng.uniform(3, 10) + nrng.uniform(0, 6)))
        rows = np.arange(size)[:, None] > horizon[None, :]
        fade = np.linspace(0.8, 1.1, size)[:, None, None]
        img = np.where(rows[..., None], ground, sky)[None].squeeze(0) * fade + nrng.normal(0, 6, (size, size, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    cells = nrng.integers(3, 7)
    base = nrng.uniform(40, 200, size=(cells, cells, 3)) * nrng.uniform(0.6, 1.0)
    img = Image.fromarray(base.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(nrng.integers(2, 6)):
        r = nrng.uniform(0.1, 0.35) * size
        x, y = nrng.uniform(0, size, 2)
        tone = tuple(int(v) for v in nrng.uniform(30, 220, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)
    img = img.filter(ImageFilter.GaussianBlur(size / 18))
    grain = Image.effect_noise((size, size), nrng.uniform(10, 30)).convert("RGB")
    return Image.blend(img, grain, 0.12)


def _occlude(rng: random.Random, draw: ImageDraw.ImageDraw, cx, cy, r, size: int) -> None:
    """Cover a corner of the object with a neutral patch (at most about a quarter of it)."""
    tone = rng.choice([(200, 200, 195), (60, 60, 60), (150, 140, 120)])
    side = rng.uniform(0.35, 0.6) * r
    ox, oy = cx + rng.choice([-1, 1]) * r * 0.8, cy + rng.choice([-1, 1]) * r * 0.8
    draw.rectangle([ox - side, oy - side, ox + side, oy + side], fill=tone)


# -- captions --------------------------------------------------------------------------------
def _leave_out(rng: random.Random, partial: bool, color: str, noun: str, generic: list[str],
               mentioned: set[str]) -> tuple[str, str]:
    """Partial captions (training only) teach the text tower each concept on its own, which is
    what zero-shot prompts like "a photo of a star" or "a red object" ask about: sometimes the
    colour is left out, sometimes the shape becomes a generic noun. Updates ``mentioned``."""
    omit = rng.random() if partial else 1.0
    if omit < 0.12:
        mentioned.discard("color")
        return "", noun
    if omit < 0.22:
        mentioned.discard("shape")
        return color, rng.choice(generic)
    return color, noun


def _caption_en(rng: random.Random, s: Sample, partial: bool = False) -> tuple[str, set[str]]:
    color = rng.choice(COLOR_SYNONYMS[s.color])
    noun = rng.choice(SHAPE_SYNONYMS[s.shape])
    mentioned = {"shape", "color", "count"}
    color, noun = _leave_out(rng, partial, color, noun, ["object", "thing", "shape"], mentioned)
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
    if s.background in NAMED_BACKGROUNDS and rng.random() < 0.5:
        bg = s.bg_color if s.background == "plain" else f"{s.background} {s.bg_color}"
        tail.append(f"on a {bg} background" if s.background != "stripes" else f"on a {s.bg_color} striped background")
        mentioned.add("background")
    template = rng.choice(["{p}", "a photo of {p}", "a picture of {p}", "an image showing {p}", "{p}",
                           "a drawing of {p}"])
    return " ".join([template.format(p=phrase)] + tail), mentioned


def _caption_zh(rng: random.Random, s: Sample, partial: bool = False) -> tuple[str, set[str]]:
    mentioned = {"shape", "color", "count"}
    color = rng.choice(COLOR_ZH[s.color])
    noun = rng.choice(SHAPE_ZH[s.shape])
    color, noun = _leave_out(rng, partial, color, noun, ["东西", "物体", "图形"], mentioned)
    measure = rng.choice(MEASURE_ZH.get(s.shape, ["个"])) if mentioned >= {"shape"} else "个"
    size = ""
    if rng.random() < 0.45:
        size = rng.choice(SIZE_ZH[s.size])
        mentioned.add("size")
    # 红色的圆形 / 红色圆形 / 红圆: the particle is optional, and single-character colours join.
    if color and len(color) == 1:
        core = color + noun
    elif color:
        core = color + ("的" if rng.random() < 0.6 else "") + noun
    else:
        core = noun
    if size:
        core = size + core
    count = NUMBERS_ZH[s.count] + measure if (s.count > 1 or rng.random() < 0.75) else ""
    phrase = count + core
    position = ""
    if s.position and rng.random() < 0.4:
        position = rng.choice(POSITION_ZH[s.position])
        mentioned.add("position")
    forms = [f"{position}有{phrase}", f"{phrase}在{position}"] if position else \
        [phrase, phrase, f"一张{phrase}的照片", f"画着{phrase}的图片", f"图片里有{phrase}", f"一幅{phrase}的画"]
    text = rng.choice(forms)
    if s.background in NAMED_BACKGROUNDS and rng.random() < 0.45:
        bg = next(c for c in COLOR_ZH[s.bg_color] if len(c) > 1)
        kind = {"plain": "", "gradient": "渐变", "stripes": "条纹"}[s.background]
        options = [f"{text}，{bg}{kind}背景"]
        if text == phrase:  # "红色背景上的一个圆" reads well; "...背景上的一张...的照片" does not
            options.append(f"{bg}{kind}背景上的{text}")
        if not kind:
            options.append(f"{text}，背景是{bg}的")
        text = rng.choice(options)
        mentioned.add("background")
    return text, mentioned


def _captions(rng: random.Random, s: Sample, partial: bool) -> None:
    s.captions = {"en": _caption_en(rng, s, partial), "zh": _caption_zh(rng, s, partial)}
    s.caption, s.mentioned = s.captions["en"]


# -- samples ---------------------------------------------------------------------------------
def make_sample(rng: random.Random, size: int = 128, count: int | None = None, shape: str | None = None,
                color: str | None = None, artefacts: bool = True, partial: bool = False) -> Sample:
    """One random captioned image of ``size`` pixels (captions in English and Chinese).

    ``partial`` lets some captions leave out the colour or the shape (used for training).
    """
    shape = shape or rng.choice(SHAPES)
    color = color or rng.choice(list(COLORS))
    count = count or rng.choice([1, 1, 1, 2, 3])
    size_word = rng.choice(list(SIZES))
    background = rng.choice(BACKGROUNDS)
    bg_color = rng.choice([c for c in COLORS if c != color])
    scale = 2 if rng.random() < 0.6 else 1  # anti-aliased (drawn large, then reduced) or hard edges
    canvas = size * scale
    img = _background(rng, background, COLORS[bg_color], canvas)
    draw = ImageDraw.Draw(img)
    radius = SIZES[size_word] * canvas * (1.0 if count == 1 else 0.7)
    position = rng.choice(list(POSITIONS)) if count == 1 else None
    if count == 1:
        fx, fy = POSITIONS[position]
        centers = [(fx * canvas + rng.uniform(-3, 3) * scale, fy * canvas + rng.uniform(-3, 3) * scale)]
    else:
        slots = rng.sample([(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73), (0.5, 0.5)], count)
        centers = [(x * canvas, y * canvas) for x, y in slots]
    upright = shape in ("house", "tree", "car")
    outline = 0
    if rng.random() < 0.25:
        outline = max(1, int(rng.uniform(0.04, 0.14) * radius))
    for cx, cy in centers:
        fill = _jitter_color(rng, COLORS[color], 18)
        angle = rng.uniform(-0.35, 0.35) if upright else rng.uniform(0, 2 * math.pi)
        stretch = (rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.25)) if rng.random() < 0.5 else (1.0, 1.0)
        draw_shape(draw, shape, cx, cy, radius, fill, angle, Style(angle, stretch, outline), rng)
        if artefacts and rng.random() < 0.15:
            _occlude(rng, draw, cx, cy, radius, canvas)
    if scale > 1:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    if artefacts:
        if rng.random() < 0.25:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        if rng.random() < 0.1:  # enlarged from a small copy: blocky or soft
            small = max(8, int(size * rng.uniform(0.3, 0.6)))
            img = img.resize((small, small), Image.Resampling.BILINEAR).resize(
                (size, size), rng.choice([Image.Resampling.NEAREST, Image.Resampling.BILINEAR]))
        if rng.random() < 0.1:  # sensor noise: salt and pepper
            arr = np.array(img)
            mask = np.random.default_rng(rng.randint(0, 2**31)).random(arr.shape[:2]) < rng.uniform(0.005, 0.03)
            arr[mask] = rng.choice([0, 255])
            img = Image.fromarray(arr)
        if rng.random() < 0.35:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=rng.randint(20, 80))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    sample = Sample(img, "", shape, color, count, size_word, position, background, bg_color)
    _captions(rng, sample, partial)
    return sample


def generate(n: int, seed: int, size: int = 128, single_object: bool = False) -> list[Sample]:
    """``n`` samples, identical for the same ``seed``."""
    rng = random.Random(seed)
    return [make_sample(rng, size, count=1 if single_object else None) for _ in range(n)]


def matches(sample: Sample, other: Sample, lang: str = "en") -> bool:
    """Whether ``other`` fits every attribute that ``sample``'s caption (in ``lang``) states."""
    mentioned = sample.mentioned if lang == "en" or not sample.captions else sample.captions[lang][1]
    checks = {
        "shape": sample.shape == other.shape, "color": sample.color == other.color,
        "count": sample.count == other.count, "size": sample.size == other.size,
        "position": sample.position == other.position,
        "background": (sample.background, sample.bg_color) == (other.background, other.bg_color)
        or (sample.background == "plain" and other.background == "plain" and sample.bg_color == other.bg_color),
    }
    return all(checks[a] for a in mentioned)
