"""Does the bundled model recognise shapes drawn by a generator it was not trained on?

An independent drawing routine (written for this check; it shares no code with
``searchlib.synthetic``): supersampled numpy rasterisation with signed distances, other geometry
(6-, 7- and 8-pointed stars as well as 5, right and obtuse triangles, rounded squares,
houses with chimneys, pine and round trees, cars with two boxes, suns with short or long rays and
a face-less disc, tulips and daisies), other RGB values for each colour name (sampled around a
different centre), other backgrounds (value noise, soft vignettes, checkerboards, photo crops of
generated fractal "landscapes"), and other degradations (downscale-upscale, salt noise, JPEG).

For every colour and shape pair it draws ``--per-pair`` images, indexes them all with the bundled
model, and asks "a <colour> <shape>" (and the Chinese equivalent): P@5 is the share of the top 5
showing that colour and that shape; colour-only P@5 the share with the colour right.

    python benchmarks/bench_generalization.py --json benchmarks/results-generalization-cpu.json
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchlib import open_index  # noqa: E402
from searchlib.indexer import index_folder  # noqa: E402

# Hue (degrees), saturation, value ranges per colour name: other centres than the training colours.
HSV = {"red": (355, 0.85, 0.85), "orange": (28, 0.9, 0.95), "yellow": (54, 0.85, 0.95), "green": (125, 0.7, 0.6),
       "blue": (222, 0.8, 0.8), "purple": (280, 0.65, 0.6), "pink": (330, 0.45, 0.97), "brown": (25, 0.7, 0.42),
       "black": (0, 0.0, 0.08), "white": (0, 0.0, 0.97), "gray": (0, 0.0, 0.52)}
SHAPES = ["circle", "square", "triangle", "star", "house", "tree", "car", "sun", "flower"]
ZH_COLOR = {"red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色", "blue": "蓝色", "purple": "紫色",
            "pink": "粉色", "brown": "棕色", "black": "黑色", "white": "白色", "gray": "灰色"}
ZH_SHAPE = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星星", "house": "房子", "tree": "树",
            "car": "汽车", "sun": "太阳", "flower": "花"}
S = 192  # drawn at this size, 2x supersampled


def colour(rng: np.random.Generator, name: str) -> np.ndarray:
    h, s, v = HSV[name]
    h = (h + rng.uniform(-8, 8)) % 360 / 360
    s = float(np.clip(s + rng.uniform(-0.1, 0.1), 0, 1)) if s > 0 else rng.uniform(0, 0.05)
    v = float(np.clip(v + rng.uniform(-0.08, 0.08), 0, 1))
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255


# -- signed distance primitives (negative inside) -------------------------------------------------
def sd_circle(x, y, r):
    return np.hypot(x, y) - r


def sd_box(x, y, w, h, round_=0.0):
    qx, qy = np.abs(x) - w + round_, np.abs(y) - h + round_
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - round_


def sd_polygon(x, y, pts):
    inside = np.zeros_like(x, dtype=bool)
    d = np.full_like(x, np.inf)
    n = len(pts)
    for i in range(n):
        (x1, y1), (x2, y2) = pts[i], pts[(i + 1) % n]
        ex, ey = x2 - x1, y2 - y1
        t = np.clip(((x - x1) * ex + (y - y1) * ey) / (ex * ex + ey * ey), 0, 1)
        d = np.minimum(d, np.hypot(x - x1 - t * ex, y - y1 - t * ey))
        cond = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / (y2 - y1 + 1e-12) + x1)
        inside ^= cond
    return np.where(inside, -d, d)


def star_points(points, r_out, r_in, turn):
    return [((r_out if i % 2 == 0 else r_in) * math.cos(turn + i * math.pi / points),
             (r_out if i % 2 == 0 else r_in) * math.sin(turn + i * math.pi / points)) for i in range(2 * points)]


def shape_layers(rng: np.random.Generator, shape: str, x, y, fill):
    """[(signed distance, rgb)] drawn in order, in a frame where the object has radius ~1."""
    dark = fill * 0.5
    if shape == "circle":
        return [(sd_circle(x / rng.uniform(0.85, 1.15), y, 0.9), fill)]
    if shape == "square":
        return [(sd_box(x, y, 0.8, 0.8, rng.uniform(0, 0.25)), fill)]
    if shape == "triangle":
        kind = rng.integers(3)
        pts = {0: [(-1, 0.8), (1, 0.8), (0, -0.95)], 1: [(-0.9, 0.9), (0.9, 0.9), (-0.9, -0.9)],
               2: [(-1.1, 0.6), (1.1, 0.6), (0.3, -0.6)]}[int(kind)]
        return [(sd_polygon(x, y, pts), fill)]
    if shape == "star":
        return [(sd_polygon(x, y, star_points(int(rng.choice([5, 5, 6, 7, 8])), 1.0, rng.uniform(0.38, 0.55),
                                              rng.uniform(0, math.pi))), fill)]
    if shape == "house":
        body = sd_box(x, y + 0.35, 0.7, 0.55)
        roof = sd_polygon(x, y, [(-0.95, 0.15), (0.95, 0.15), (0, 1.0)])
        layers = [(np.minimum(body, roof), fill)]
        if rng.random() < 0.5:
            layers.insert(0, (sd_box(x - 0.5, y - 0.7, 0.1, 0.25), dark))  # chimney
        layers.append((sd_box(x, y + 0.65, 0.15, 0.25), dark))  # door
        return layers
    if shape == "tree":
        trunk = (sd_box(x, y + 0.7, 0.12, 0.3), np.array([90.0, 55, 30]))
        if rng.random() < 0.5:  # pine
            crown = np.minimum(sd_polygon(x, y, [(-0.8, -0.35), (0.8, -0.35), (0, 0.45)]),
                               sd_polygon(x, y, [(-0.6, 0.15), (0.6, 0.15), (0, 0.95)]))
        else:
            crown = sd_circle(x, y - 0.25, 0.65)
        return [trunk, (crown, fill)]
    if shape == "car":
        body = sd_box(x, y + 0.1, 0.95, 0.28, 0.08)
        cabin = sd_box(x + rng.uniform(-0.15, 0.15), y - 0.3, 0.5, 0.25, 0.1)
        wheels = np.minimum(sd_circle(x + 0.55, y + 0.4, 0.2), sd_circle(x - 0.55, y + 0.4, 0.2))
        return [(np.minimum(body, cabin), fill), (wheels, np.array([25.0, 25, 25]))]
    if shape == "sun":
        rays = int(rng.choice([8, 10, 12, 16]))
        angle = np.arctan2(y, x)
        r = np.hypot(x, y)
        long = rng.uniform(0.95, 1.15)
        ray = np.where((np.cos(rays * angle) > 0.6) & (r < long), -1.0, 1.0)
        return [(np.minimum(ray, sd_circle(x, y, 0.55)), fill)]
    if shape == "flower":
        petals = int(rng.choice([5, 6, 8]))
        angle = np.arctan2(y, x)
        r = np.hypot(x, y)
        edge = 0.55 + 0.4 * np.abs(np.cos(petals / 2 * angle))
        stem = sd_box(x, y + 1.0, 0.05, 0.3)
        return [(stem, np.array([40.0, 120, 40])), (r - edge, fill),
                (sd_circle(x, y, 0.22), np.array([240.0, 200, 60]) if fill.mean() < 200 else np.array([120.0, 80, 20]))]
    raise ValueError(shape)


def background(rng: np.random.Generator, avoid: str) -> np.ndarray:
    others = [c for c in HSV if c != avoid]
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:S, 0:S] / S
    if kind == 0:  # value noise
        grid = rng.uniform(0, 1, (6, 6, 3))
        img = np.array(Image.fromarray((grid * 255).astype(np.uint8)).resize((S, S), Image.Resampling.BICUBIC),
                       dtype=np.float64)
        base = colour(rng, str(rng.choice(others)))
        return 0.6 * base + 0.4 * img
    if kind == 1:  # vignette
        base = colour(rng, str(rng.choice(others)))
        fall = 1 - 0.5 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
        return base[None, None] * fall[..., None]
    if kind == 2:  # checkerboard
        a, b = colour(rng, str(rng.choice(others))), colour(rng, str(rng.choice(others)))
        n = int(rng.integers(4, 12))
        mask = ((xx * n).astype(int) + (yy * n).astype(int)) % 2
        return np.where(mask[..., None] == 1, a, b) * 0.85 + 20
    # a fractal "landscape": sky over hills
    sky = colour(rng, str(rng.choice(others)))
    ground = colour(rng, str(rng.choice(others)))
    horizon = 0.5 + 0.1 * np.sin(xx * rng.uniform(4, 12) + rng.uniform(0, 6)) + 0.05 * np.sin(xx * 31)
    return np.where((yy > horizon)[..., None], ground, sky) + rng.normal(0, 8, (S, S, 3))


def draw(rng: np.random.Generator, shape: str, color: str, size: int = 160) -> Image.Image:
    img = background(rng, color)
    yy, xx = (np.mgrid[0:S, 0:S] + 0.5) / S * 2 - 1  # -1..1, y down
    scale = rng.uniform(0.25, 0.55)
    cx, cy = rng.uniform(-0.9 + scale, 0.9 - scale, 2)
    angle = rng.uniform(-0.5, 0.5) if shape in ("house", "tree", "car") else rng.uniform(0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    x = ((xx - cx) * c + (yy - cy) * s) / scale
    y = -(-(xx - cx) * s + (yy - cy) * c) / scale  # y up inside the object's frame
    fill = colour(rng, color)
    outline_only = rng.random() < 0.2
    for distance, rgb in shape_layers(rng, shape, x, y, fill):
        if outline_only and rgb is fill:
            alpha = np.clip(1 - np.abs(distance * scale * S / 2) / 2.5, 0, 1)
        else:
            alpha = np.clip(0.5 - distance * scale * S / 2, 0, 1)
        img = img * (1 - alpha[..., None]) + np.asarray(rgb)[None, None] * alpha[..., None]
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    if rng.random() < 0.3:
        small = int(size * rng.uniform(0.35, 0.6))
        out = out.resize((small, small), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.NEAREST)
    if rng.random() < 0.2:
        arr = np.array(out)
        mask = rng.random(arr.shape[:2]) < 0.02
        arr[mask] = rng.integers(0, 256, (int(mask.sum()), 3))
        out = Image.fromarray(arr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-pair", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--checkpoint")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-generalization"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    photos, index_dir = args.workdir / "photos", args.workdir / "index"
    for d in (photos, index_dir):
        if d.exists():
            shutil.rmtree(d)
    photos.mkdir(parents=True)
    truth = {}
    for color in HSV:
        for shape in SHAPES:
            for i in range(args.per_pair):
                path = photos / f"{color}-{shape}-{i}.jpg"
                draw(rng, shape, color).save(path, quality=int(rng.integers(55, 95)))
                truth[str(path)] = (color, shape)
    options = {"model": args.model, "device": "cpu"}
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    index_folder(index_dir, photos, **options)
    out: dict = {"images": len(truth), "per_pair": args.per_pair, "model": args.model}
    with open_index(index_dir) as index:
        for lang in ("en", "zh"):
            both, color_only, shape_only = [], [], []
            for color in HSV:
                for shape in SHAPES:
                    q = f"a {color} {shape}" if lang == "en" else f"一个{ZH_COLOR[color]}的{ZH_SHAPE[shape]}"
                    top = [truth[h.path] for h in index.search(q, k=5)]
                    both.append(np.mean([t == (color, shape) for t in top]))
                    color_only.append(np.mean([t[0] == color for t in top]))
                    shape_only.append(np.mean([t[1] == shape for t in top]))
            out[lang] = {"p5_color_and_shape": round(float(np.mean(both)), 3),
                         "p5_color": round(float(np.mean(color_only)), 3),
                         "p5_shape": round(float(np.mean(shape_only)), 3)}
            print(f"{lang}: P@5 colour+shape {out[lang]['p5_color_and_shape']:.3f}   colour {out[lang]['p5_color']:.3f}"
                  f"   shape {out[lang]['p5_shape']:.3f}   ({len(both)} queries over {len(truth)} images)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
