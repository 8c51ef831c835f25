"""Reverse geocoding cost: what places add to indexing, per photo, against decoding the same photos.

Measured in one run on one machine:

* **decode**: ``decode_for_model`` (what a decode worker does per file: EXIF, reduced JPEG decode,
  resize and crop to the model's 224 px) on generated JPEGs with GPS EXIF, web-size (500x375)
  and camera-size (4000x3000, fewer of them);
* **geocode**: ``writer.with_places`` on batches of 32 records with GPS positions (what
  ``IndexWriter.apply`` adds per batch: the k-d tree lookup and new records), spread over the
  inhabited world (near places, and random positions on land);
* **load**: the gazetteer's one-off load in a fresh process that has imported faiss (paid once per
  index run, and only by runs that meet a GPS position), from the compact copy in the cache
  directory, and the first load on a machine (which parses the package's JSON and writes the copy).

    python benchmarks/bench_places.py --json benchmarks/results-places-cpu.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchlib.catalog import ChangeSet  # noqa: E402
from searchlib.imaging import Preprocess, decode_for_model  # noqa: E402
from searchlib.places.gazetteer import gazetteer  # noqa: E402
from searchlib.records import ImageMetadata, ImageRecord  # noqa: E402
from searchlib.writer import with_places  # noqa: E402
from tests.conftest import make_exif  # noqa: E402

BATCH = 32


def photo_bytes(rng: np.random.Generator, size: tuple[int, int], gps: tuple[float, float]) -> bytes:
    """A JPEG with smooth content (camera-like compression) and GPS EXIF."""
    w, h = size
    small = rng.integers(0, 256, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=make_exif(taken="2024:05:01 10:00:00", gps=gps))
    return out.getvalue()


def time_decode(files: list[bytes], repeat: int) -> float:
    prep = Preprocess(224)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in files:
            decode_for_model(data, prep)
        best = min(best, (time.perf_counter() - start) / len(files))
    return best


def time_geocode(points: list[tuple[float, float]], repeat: int) -> float:
    records = [ImageRecord(f"/p/{i}.jpg", 1, 1, f"h{i}", ImageMetadata(640, 480, "JPEG", gps_lat=lat, gps_lon=lon))
               for i, (lat, lon) in enumerate(points)]
    batches = [ChangeSet(added=[(r, np.zeros(2, np.float32)) for r in records[i:i + BATCH]])
               for i in range(0, len(records), BATCH)]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for batch in batches:
            with_places(batch)
        best = min(best, (time.perf_counter() - start) / len(records))
    return best


def time_load(runs: int, fresh_cache: bool) -> list[float]:
    """Seconds to load the gazetteer in a new process that has imported faiss already (as an index
    run has); ``fresh_cache``: with an empty cache directory (a machine's first load)."""
    import os
    import tempfile

    code = ("import faiss, time; t = time.perf_counter(); from searchlib.places.gazetteer import gazetteer; "
            "gazetteer(); print(time.perf_counter() - t)")
    out = []
    for _ in range(runs):
        env = dict(os.environ)
        if fresh_cache:
            env["SEARCHLIB_CACHE"] = tempfile.mkdtemp(prefix="bench-places-")
        out.append(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                        env=env, cwd=Path(__file__).resolve().parents[1]).stdout))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--web", type=int, default=200, help="web-size JPEGs to decode")
    parser.add_argument("--camera", type=int, default=12, help="camera-size JPEGs to decode")
    parser.add_argument("--points", type=int, default=6400, help="GPS positions to geocode")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    g = gazetteer()
    # Photos are taken where people are: positions a few km (sigma 0.03 degrees) off gazetteer
    # places, every place alike (villages included), and, as a harder case, random positions on
    # land or coast (within 100 km of a place: the search looks wider there).
    picks = rng.integers(0, len(g.cities), args.points)
    points = list(zip((g.lat[picks] + rng.normal(0, 0.03, args.points)).clip(-90, 90).tolist(),
                      (g.lon[picks] + rng.normal(0, 0.03, args.points)).clip(-180, 180).tolist()))
    rural: list[tuple[float, float]] = []
    while len(rural) < args.points:
        cand = list(zip(rng.uniform(-60, 70, 4096).tolist(), rng.uniform(-180, 180, 4096).tolist()))
        rural += [p for p, place in zip(cand, g.locate(cand)) if place is not None]
    rural = rural[:args.points]

    web = [photo_bytes(rng, (500, 375), points[i]) for i in range(args.web)]
    camera = [photo_bytes(rng, (4000, 3000), points[i]) for i in range(args.camera)]
    decode_web = time_decode(web, args.repeat)
    decode_camera = time_decode(camera, args.repeat)
    geocode = time_geocode(points, args.repeat)
    geocode_rural = time_geocode(rural, args.repeat)
    first_loads = time_load(2, fresh_cache=True)
    loads = time_load(3, fresh_cache=False)
    result = {
        "decode_web_ms": 1000 * decode_web, "decode_camera_ms": 1000 * decode_camera,
        "geocode_us_per_photo": 1e6 * geocode, "ratio_to_web_decode": geocode / decode_web,
        "ratio_to_camera_decode": geocode / decode_camera, "geocode_rural_us_per_photo": 1e6 * geocode_rural,
        "rural_ratio_to_web_decode": geocode_rural / decode_web, "load_s_median": statistics.median(loads),
        "load_s": loads, "first_load_s": first_loads, "points": args.points, "web": args.web, "camera": args.camera,
        "load_in_web_decodes": statistics.median(loads) / decode_web,
    }
    for key, value in result.items():
        print(f"{key:24s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
