"""RAW decoding: the embedded-preview path against a full demosaic of the same files.

Each file is a DNG made from a Bayer array (``tests/rawfiles.py``) with a camera-like JPEG preview
in front of the sensor data. Per file, median of ``--reps``, in one process with one OpenMP thread
(as a decode worker runs):

* full demosaic (baseline): LibRaw's default postprocess (AHD) of the sensor data, then the model's
  resize and crop;
* preview: what the indexer does when the preview covers the model input
  (:func:`searchlib.media.decode_file_bytes`: the preview JPEG decoded at reduced DCT scale);
* half-size demosaic: the indexer's fallback when the preview is too small;
* metadata only: a file whose bytes are already indexed.

Times are CPU seconds of this process (one thread), so the figures hold on a busy machine.

Ratios are the baseline's time over each path's (higher is faster).

    python benchmarks/bench_raw.py --files 4 --json benchmarks/results-raw-cpu.json
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # as in a decode worker; before LibRaw loads

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from searchlib.imaging import Preprocess, to_model_pixels  # noqa: E402
from searchlib.media import decode_file_bytes, file_metadata  # noqa: E402
from searchlib.synthetic import make_sample  # noqa: E402
from tests.rawfiles import write_dng  # noqa: E402


def make_files(folder: Path, count: int, width: int, height: int, preview_width: int) -> list[Path]:
    rng = random.Random(5)
    paths = []
    for i in range(count):
        picture = make_sample(rng, 512, count=1, artefacts=False).image.resize((width, height), Image.BILINEAR)
        preview = picture.resize((preview_width, preview_width * height // width), Image.BILINEAR)
        paths.append(write_dng(folder / f"raw_{i}.dng", picture, preview=preview))
    return paths


def full_demosaic(path: Path, prep: Preprocess) -> np.ndarray:
    import rawpy

    with rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
    return to_model_pixels(Image.fromarray(rgb), prep)


def half_demosaic(path: Path, prep: Preprocess) -> np.ndarray:
    # The indexer's fallback path: a preview too small for the model input.
    from searchlib.media.raw import RawPicture, read_raw

    picture = read_raw(path.read_bytes(), 10**6, 10**9, ".dng")
    assert isinstance(picture, RawPicture) and picture.source == "demosaic"
    return to_model_pixels(picture.image, prep)


def median_seconds(fn, path: Path, reps: int) -> float:
    """Median CPU seconds of this process: the work is single-threaded, and on a shared machine the
    wall time would measure the neighbours."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn(path)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--preview-width", type=int, default=1620, help="the embedded JPEG's width")
    ap.add_argument("--image-size", type=int, default=224, help="the model's input size")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    prep = Preprocess(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.files, args.width, args.height, args.preview_width)
        paths[0].read_bytes()  # page cache warm for every path alike
        full_demosaic(paths[0], prep)  # LibRaw loaded before anything is timed
        # Every path reads the file, as the indexer does (it also hashes the bytes: not timed here).
        ways = {
            "full demosaic": lambda p: full_demosaic(p, prep),
            "half-size demosaic": lambda p: half_demosaic(p, prep),
            "preview": lambda p: decode_file_bytes(str(p), p.read_bytes(), prep),
            "metadata only": lambda p: file_metadata(str(p), p.read_bytes()),
        }
        paths_cost = dict.fromkeys(ways, 0.0)
        for path in paths:
            for name, way in ways.items():
                paths_cost[name] += median_seconds(way, path, args.reps)
        size_mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    base = paths_cost["full demosaic"]
    result = {
        "files": args.files, "sensor": f"{args.width}x{args.height}", "preview": args.preview_width,
        "file_mb": round(size_mb, 1), "image_size": args.image_size,
        "cpu_ms_per_file": {k: round(v / args.files * 1e3, 1) for k, v in paths_cost.items()},
        "speedup_vs_full_demosaic": {k: round(base / v, 2) for k, v in paths_cost.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
