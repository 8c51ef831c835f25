"""Memory of decoding one large image for the model, and of several at once (issue 27, hole 5).

Each figure is the peak RSS growth of a fresh process decoding a generated PNG (13000x13000 by
default, under the 178 MP guard) to the model's 224x224 input:

* baseline: the reference path (``reduce=False``: EXIF transpose, mode conversion and resize on
  full-size copies). For a PNG this is the path uploads took before the fix.
* bounded: ``reduce=True`` (:func:`searchlib.imaging.bounded_model_pixels`).
* three threads at once, bounded, with the default decode budget vs an unlimited one.

Usage: python benchmarks/bench_decode_memory.py [--side 13000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_bounds import write_png  # noqa: E402

_RUN = """
import resource, sys, threading, time
from searchlib import imaging
from searchlib.imaging import DecodeBudget, Preprocess, decode_for_model, held_bytes, open_image
data = open(sys.argv[1], "rb").read()
reduce, threads, unlimited = sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4] == "1"
if unlimited:
    imaging.decode_budget = DecodeBudget(1 << 62)
held = held_bytes(open_image(data))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter()
workers = [threading.Thread(target=decode_for_model, args=(data, Preprocess(224)), kwargs={"reduce": reduce})
           for _ in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
print(held, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, time.perf_counter() - started)
"""


def measure(png: Path, reduce: bool, threads: int = 1, unlimited: bool = False) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, str(png), str(int(reduce)), str(threads), str(int(unlimited))],
                         capture_output=True, text=True, check=True).stdout.split()
    held, grew, seconds = int(out[0]), int(out[1]), float(out[2])
    return {"decoded_mib": round(held / 2**20), "peak_growth_mib": round(grew / 2**20), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=13000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {"side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        for name, color_type in (("rgb", 2), ("palette", 3)):
            png = Path(tmp) / f"{name}.png"
            write_png(png, args.side, args.side, color_type)
            base, bounded = measure(png, reduce=False), measure(png, reduce=True)
            results[name] = {"png_kb": png.stat().st_size // 1024, "baseline": base, "bounded": bounded,
                             "ratio": round(bounded["peak_growth_mib"] / base["peak_growth_mib"], 2)}
            print(f"{name:8} {args.side}x{args.side} ({results[name]['png_kb']} KB, decoded "
                  f"{base['decoded_mib']} MiB): "
                  f"baseline +{base['peak_growth_mib']} MiB {base['seconds']} s, bounded "
                  f"+{bounded['peak_growth_mib']} MiB {bounded['seconds']} s (x{results[name]['ratio']})")
        png = Path(tmp) / "rgb.png"
        write_png(png, args.side, args.side, 2)
        free, budget = measure(png, True, threads=3, unlimited=True), measure(png, True, threads=3)
        results["three_at_once"] = {"unlimited": free, "budget": budget,
                                    "ratio": round(budget["peak_growth_mib"] / free["peak_growth_mib"], 2)}
        print(f"three RGB decodes at once: no budget +{free['peak_growth_mib']} MiB {free['seconds']} s, default "
              f"budget +{budget['peak_growth_mib']} MiB {budget['seconds']} s (x{results['three_at_once']['ratio']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
