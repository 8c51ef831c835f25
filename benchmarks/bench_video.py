"""Video indexing: its rate against PyAV decoding the same files, and scene recall.

The videos are generated (H.264, ``--size``, ``--fps``, a keyframe every 2 s): each shows a few
scenes of coloured shapes (``tests/videofiles.py``), with known cut times. Measured in one run:

* decode-only (baseline): PyAV decoding every frame of every file (threaded, no conversion), in
  this process — what any video indexer must at least pay;
* segmenting: :func:`searchlib.media.video.decode_video` alone (sampling, the scene detector, one
  model-size frame per segment);
* indexing: ``index_folder`` with the bundled model on the CPU (workers, model, catalog), wall time,
  also past the fixed cost of a run (measured on a 1-second video: model load, workers);
* keyframes only: decoding a long video's keyframes against all of its frames (why videos above
  ``KEYFRAMES_ONLY_ABOVE`` seconds or ``FULL_DECODE_PIXEL_SECONDS`` are read that way).

Rates are seconds of video per second of wall time; ratios are each rate over decode-only's.
Scene recall: the share of true scenes that have a segment lying inside them (0.5 s slack);
purity: the share of segments that lie inside one scene (do not straddle a cut).

    python benchmarks/bench_video.py --videos 6 --json benchmarks/results-video-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402

from searchlib.imaging import Preprocess  # noqa: E402
from searchlib.media import video as video_mod  # noqa: E402
from tests.test_relevance import PRESENT  # noqa: E402
from tests.videofiles import scene_picture  # noqa: E402


def write_h264(path: Path, scenes, fps: int, size: int, gop_seconds: float = 2.0) -> None:
    """Scenes of (picture, seconds) as H.264 with a slow pan, so frames differ as a camera's do."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size * 4 // 3 // 2 * 2, size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = int(gop_seconds * fps)
        stream.options = {"preset": "veryfast"}
        index = 0
        for picture, seconds in scenes:
            big = np.asarray(picture.convert("RGB").resize((stream.width + 64, stream.height + 64)), dtype=np.int16)
            for f in range(round(seconds * fps)):
                dx = int(32 + 30 * np.sin(f / fps))  # a slow pan
                crop = big[16:16 + stream.height, dx:dx + stream.width]
                pixels = np.clip(crop + rng.integers(-4, 5, crop.shape), 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_videos(folder: Path, count: int, fps: int, size: int, seed: int = 3) -> dict[Path, list]:
    rng = random.Random(seed)
    truth = {}
    for v in range(count):
        scenes, cuts, t = [], [], 0.0
        for s in range(rng.randint(3, 5)):
            color, shape = rng.choice(PRESENT)
            seconds = rng.choice([2.0, 3.0, 5.0, 8.0, 14.0])
            scenes.append((scene_picture(color, shape, seed * 100 + v * 10 + s, size=256), seconds))
            cuts.append((t, t + seconds))
            t += seconds
        path = folder / f"video{v:02d}.mp4"
        write_h264(path, scenes, fps, size)
        truth[path] = cuts
    return truth


def decode_only(paths) -> float:
    started = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass
    return time.perf_counter() - started


def recall_and_purity(truth: dict[Path, list], segments: dict[Path, tuple], slack: float = 0.5):
    found = total = pure = count = 0
    for path, scenes in truth.items():
        segs = segments[path]
        for start, end in scenes:
            total += 1
            found += any(start - slack <= s.start and s.end <= end + slack for s in segs)
        for s in segs:
            count += 1
            pure += any(start - slack <= s.start and s.end <= end + slack for start, end in scenes)
    return found / total, pure / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, default=360, help="frame height (width is 4/3 of it)")
    parser.add_argument("--long-seconds", type=float, default=120.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from searchlib.indexer import index_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        truth = make_videos(folder, args.videos, args.fps, args.size)
        seconds = sum(scenes[-1][1] for scenes in truth.values())
        paths = sorted(truth)
        decode_only(paths[:1])  # warm the libraries
        base = decode_only(paths)
        prep = Preprocess(224)
        started = time.perf_counter()
        segments = {p: video_mod.decode_video(str(p), p.name, prep).segments for p in paths}
        segmenting = time.perf_counter() - started
        recall, purity = recall_and_purity(truth, segments)
        # The fixed cost of a run (model load, workers, the relevance bank) on a 1-second video,
        # so that the rate below is what each further second of video costs.
        one = Path(tmp) / "one"
        one.mkdir()
        write_h264(one / "one.mp4", [(scene_picture("red", "circle", 1, size=256), 1.0)], args.fps, args.size)
        started = time.perf_counter()
        index_folder(Path(tmp) / "index-one", one, model="bundled", device="cpu")
        fixed = time.perf_counter() - started
        started = time.perf_counter()
        report = index_folder(Path(tmp) / "index", folder, model="bundled", device="cpu")
        indexing = time.perf_counter() - started
        assert report.added == len(paths), report

        long_path = Path(tmp) / "long.mp4"
        write_h264(long_path, [(scene_picture("red", "circle", 1, size=256), args.long_seconds)], args.fps,
                   args.size)
        full = decode_only([long_path])
        saved = video_mod.KEYFRAMES_ONLY_ABOVE, video_mod.FULL_DECODE_PIXEL_SECONDS
        video_mod.KEYFRAMES_ONLY_ABOVE = video_mod.FULL_DECODE_PIXEL_SECONDS = 0.0
        started = time.perf_counter()
        video_mod.decode_video(str(long_path), "long.mp4", prep)
        keyframes = time.perf_counter() - started
        video_mod.KEYFRAMES_ONLY_ABOVE, video_mod.FULL_DECODE_PIXEL_SECONDS = saved

    out = {
        "videos": len(paths), "video_seconds": seconds, "fps": args.fps,
        "frame": f"{args.size * 4 // 3 // 2 * 2}x{args.size}",
        "decode_only_s": round(base, 3), "decode_only_rate": round(seconds / base, 1),
        "segmenting_s": round(segmenting, 3), "segmenting_rate": round(seconds / segmenting, 1),
        "segmenting_ratio": round(base / segmenting, 3),
        "indexing_s": round(indexing, 3), "indexing_rate": round(seconds / indexing, 1),
        "indexing_ratio": round(base / indexing, 3), "run_fixed_cost_s": round(fixed, 3),
        "indexing_rate_past_fixed": round(seconds / max(indexing - fixed, 1e-3), 1),
        "indexing_ratio_past_fixed": round(base / max(indexing - fixed, 1e-3), 3),
        "segments": sum(len(s) for s in segments.values()), "scenes": sum(len(s) for s in truth.values()),
        "scene_recall": round(recall, 3), "segment_purity": round(purity, 3),
        "long_video_seconds": args.long_seconds, "long_full_decode_rate": round(args.long_seconds / full, 1),
        "long_keyframes_only_rate": round(args.long_seconds / keyframes, 1),
        "keyframes_speedup": round(full / keyframes, 2),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
