"""Generated photos with known words (signs, screenshots, receipts) and scenes without words, for
the OCR tests and benchmarks/bench_ocr.py. Fonts: DejaVu and Liberation, as Debian installs them."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation")]
SIGN_WORDS = ["PHARMACY", "BAKERY", "HOTEL", "MUSEUM", "STATION", "PARKING", "GARAGE", "LIBRARY", "CINEMA",
              "FLORIST", "BUTCHER", "MARKET", "HARBOUR", "TAXI", "POLICE"]
SCREEN_LINES = ["Meeting notes", "Budget review", "Flight confirmation", "Password reset", "Order shipped",
                "Invoice overdue", "Weather forecast", "Train delayed"]


def fonts() -> list[Path]:
    """The TrueType fonts available (bold, regular, serif, mono), sorted."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name)
    return found


def _font(rng: random.Random, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(rng.choice(fonts())), size)


def sign(word: str, seed: int, size=(640, 480), rotate: float = 0.0, blur: float = 0.0) -> Image.Image:
    """A shop sign: a coloured board with ``word`` in large letters, in a noisy street-like scene."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randint(60, 200) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):  # clutter
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle([x, y, x + rng.randint(10, 80), y + rng.randint(10, 80)],
                       fill=tuple(rng.randint(0, 255) for _ in range(3)))
    board = tuple(rng.randint(0, 80) for _ in range(3))
    font = _font(rng, rng.randint(44, 64))
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    w, h = right - left + 40, bottom - top + 30
    x, y = (size[0] - w) // 2, (size[1] - h) // 3
    draw.rectangle([x, y, x + w, y + h], fill=board)
    draw.text((x + 20 - left, y + 15 - top), word, font=font, fill=(250, 250, 240))
    if rotate:
        img = img.rotate(rotate, resample=Image.BICUBIC, expand=False, fillcolor=board)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return img


def screenshot(lines: list[str], seed: int, size=(800, 600)) -> Image.Image:
    """A screenshot-like page: dark text lines on white, a title bar."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size[0], 40], fill=(40, 60, 120))
    font = _font(rng, 28)
    for i, line in enumerate(lines):
        draw.text((30, 70 + i * 50), line, font=font, fill=(20, 20, 20))
    return img


def scene(seed: int, size=(640, 480)) -> Image.Image:
    """A scene without words: a gradient sky, a ground, round and square shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (120, 170, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, size[1] * 2 // 3, size[0], size[1]], fill=(70, 130, 60))
    for _ in range(6):
        x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randint(15, 60)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    return img


def write_corpus(folder: Path, signs: int = 10, screenshots: int = 4, scenes: int = 10,
                 quality: int = 85) -> dict[str, list[str]]:
    """Write a mixed corpus as JPEGs; returns each file's expected words (empty for scenes)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[str]] = {}
    for i in range(signs):
        word = SIGN_WORDS[i % len(SIGN_WORDS)]
        img = sign(word, seed=i, rotate=(-6, 0, 5)[i % 3], blur=(0, 0.8)[i % 2])
        path = folder / f"sign-{i:03d}.jpg"
        img.save(path, quality=quality)
        truth[str(path)] = [word]
    for i in range(screenshots):
        lines = [SCREEN_LINES[(i + j) % len(SCREEN_LINES)] for j in range(3)]
        path = folder / f"screen-{i:03d}.png"
        screenshot(lines, seed=100 + i).save(path)
        truth[str(path)] = [w for line in lines for w in line.split()]
    for i in range(scenes):
        path = folder / f"scene-{i:03d}.jpg"
        scene(seed=200 + i).save(path, quality=quality)
        truth[str(path)] = []
    return truth
