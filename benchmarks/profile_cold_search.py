"""Where a cold ``searchlib search`` spends its time: py-spy samples of fresh processes, by step.

Each round runs one fresh ``searchlib search`` of a text never asked before under
``py-spy record --idle --threads`` and files every sample of every thread under the first step
(searching from the innermost frame out) whose frame it holds: an import, the tokenizer's set-up,
the text tower's session load, its run, the vector search, the relevance calibration... The main
thread's samples, idle ones included, add up to its wall time; other threads (the text tower's
loader, FAISS's and ONNX Runtime's own) are listed apart, since they overlap the main thread.

Sampling slows the process, so the table gives each step's share of the main thread's samples and
that share of the median wall time of the same command run unprofiled in the same rounds, beside
the floor (``python -c "import numpy, onnxruntime"``) measured in those rounds too.

    pip install py-spy
    python benchmarks/profile_cold_search.py --index /tmp/searchlib-bench-startup/index-100000 --reps 5
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("searchlib"))

#: (step, frame fragments): a sample goes to the first step, innermost frame first, that matches.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("import faiss", ("<module> (faiss/",)),
    ("import onnxruntime", ("<module> (onnxruntime/",)),
    ("import numpy", ("<module> (numpy/",)),
    ("import sqlalchemy", ("<module> (sqlalchemy/",)),
    ("import click", ("<module> (click/",)),
    ("dataclass set-up at import", ("_process_class (dataclasses.py",)),
    ("checksums (memo or hash)", ("(searchlib/checked.py", "file_checksum (searchlib/vectors.py")),
    ("tokenizer set-up", ("ClipTokenizer.__init__", "load_tokenizer (")),
    ("text tower: session load", ("InferenceSession.__init__", "_create_inference_session")),
    ("text tower: tokens and run", ("OnnxTextEncoder.embed_texts", "InferenceSession.run")),
    ("relevance calibration", ("(searchlib/relevance.py",)),
    ("reading a place phrase", ("(searchlib/places/", "place_query (")),
    ("asking whether videos are held", ("_has_video (",)),
    ("vectors: load and search", ("(searchlib/vectors.py", "(searchlib/flatscan.py", "(searchlib/ondisk.py",
                                  "(faiss/")),
    ("catalog reads", ("(searchlib/catalog/", "(sqlite3/")),
    ("printing the results", ("(cli/output.py", "(click/utils.py", "(click/termui.py")),
    ("waiting on another thread", ("join (threading.py", "wait (threading.py", "_wait_for_tstate_lock")),
]


def step_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for step, fragments in STEPS:
            if any(f in frame for f in fragments):
                return step
        if frame.startswith("<module> ("):  # another import: named by the package whose module runs
            where = frame[len("<module> ("):].split(":")[0]
            return f"import {where.split('/')[0].removesuffix('.py')} (rest)"
    return "other"


def profile_once(index: Path, text: str, rate: int) -> tuple[collections.Counter, collections.Counter]:
    """Samples per step of the main thread and of all other threads, for one fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        subprocess.run(["py-spy", "record", "--idle", "--threads", "--nonblocking", "-r", str(rate), "-f", "raw",
                        "-o", str(out), "--", EXE, "--index", str(index), "search", text],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        lines = out.read_text().splitlines()
    main, others = collections.Counter(), collections.Counter()
    parsed, main_thread = [], None
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(":")[0]  # "thread (1234)", named or not ("thread (1234): MainThread")
        if frames[0].endswith(": MainThread"):
            main_thread = thread
        parsed.append((thread, frames[1:], int(count)))
    if main_thread is None:
        raise SystemExit("py-spy's samples name no MainThread")
    for thread, frames, n in parsed:
        (main if thread == main_thread else others)[step_of(frames)] += n
    return main, others


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the searches (SEARCHLIB_TEXT_INT8=0)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    os.environ.update(dict(kv.split("=", 1) for kv in args.env))
    search = [EXE, "--index", str(args.index), "search"]
    floor_cmd = [sys.executable, "-c", "import numpy, onnxruntime"]
    timed(search + ["warm the page cache"])
    main_steps, other_steps = collections.Counter(), collections.Counter()
    walls, floors = [], []
    for r in range(args.reps):
        text = f"a red bicycle by a lake number {os.getpid()}.{r}"
        floors.append(timed(floor_cmd))
        walls.append(timed(search + [text + " plain"]))
        m, o = profile_once(args.index, text + " profiled", args.rate)
        main_steps.update(m)
        other_steps.update(o)
    wall, floor = statistics.median(walls), statistics.median(floors)
    total = sum(main_steps.values())
    print(f"cold 'searchlib search' (new text) on {args.index}: median {wall:.3f} s unprofiled = "
          f"{wall / floor:.2f}x the floor ({floor:.3f} s); py-spy at {args.rate}/s, {args.reps} processes")
    print(f"{'main thread, step':<32} {'share':>6} {'~seconds':>9} {'~x floor':>9}")
    rows = []
    for step, n in main_steps.most_common():
        share = n / total
        rows.append({"step": step, "share": share, "seconds": share * wall, "floors": share * wall / floor})
        print(f"{step:<32} {share:>6.1%} {share * wall:>9.3f} {share * wall / floor:>8.2f}x")
    print(f"{'other threads (overlapping)':<32} {'samples vs main':>16}")
    for step, n in other_steps.most_common(8):
        print(f"  {step:<30} {n / total:>6.1%}")
    if args.json:
        args.json.write_text(json.dumps({
            "index": str(args.index), "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "reps": args.reps,
            "rate": args.rate, "env": args.env, "wall_s": wall, "floor_s": floor, "main_thread": rows,
            "other_threads": {s: n / total for s, n in other_steps.items()}}, indent=2))


if __name__ == "__main__":
    main()
