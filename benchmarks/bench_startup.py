"""The cold query ladder, and fixed costs of an index run, each as a ratio measured in the same run.

The ladder (``--ladder-only`` runs just this) is what a cold ``searchlib search`` pays, step by
step, each step a fresh process and a median of ``--reps`` rounds taken in turn (so load on the
machine falls on every step alike), as a ratio to the floor any ONNX query path pays,
``python -c "import numpy, onnxruntime"``:

* interpreter start; the CLI's import; opening the index (catalog, identity); + its vectors;
  + the text tower;
* a whole ``searchlib search`` with a text never asked before (the query vector cache misses) and
  with a repeated one (it hits);
* where the index has an int8 text tower (it answers queries where its fidelity gate passed; where
  it failed, ``SEARCHLIB_TEXT_INT8=force`` makes it answer for the measurement, and the failed gate
  is printed), the text tower and the new-text search again on the fp32 tower
  (``SEARCHLIB_TEXT_INT8=0``), the gate's figures, and both towers' warm milliseconds per query;
* with ``--baseline-exe``, the same two searches by another console script (the code before a
  change, installed in another environment) on the same index.

``--ladder-size N`` runs the ladder on an index of N synthetic vectors built as bench_query.py
builds them (ViT-B-32 random weights, exported text tower) instead of a folder indexed with
``--model``.

The rest are fixed costs of an index run, each as a ratio to a cold ``searchlib search``:

Every figure is the median wall time of ``--reps`` runs of the console script in a fresh process
(what a user waits for), on this machine:

* cold search: ``searchlib search`` in a new process on an index of the same model;
* nothing to do: ``searchlib index`` over a folder whose files are all indexed;
* 8 new files, fresh index: ``searchlib index`` of 8 photos into a new index, with the model used
  before on this machine (its identity and ONNX exports in the user cache), and with an empty
  user cache (the very first run with a model: the weights load, the towers are exported);
* N camera JPEGs end to end, against the decode-only time of the same files (the ceiling the
  workers allow) and the model-only time.

    python benchmarks/bench_startup.py --model ViT-B-32/random --json benchmarks/results-startup-cpu.json
    python benchmarks/bench_startup.py --ladder-only --model bundled --baseline-exe OLD/bin/searchlib
    python benchmarks/bench_startup.py --ladder-only --ladder-size 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_index import decode_ceiling, make_corpus, model_ceiling  # noqa: E402
from searchlib.embedding import Embedder  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402

EXE = str(Path(sys.executable).with_name("searchlib"))


def timed(args: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run([EXE, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def median_of(reps: int, fn) -> float:
    return statistics.median(fn() for _ in range(reps))


def timed_cmd(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                   env={**os.environ, **env} if env else None)
    return time.perf_counter() - t0


#: The environment that keeps queries on the fp32 text tower (the int8 one answers where its gate passed).
FP32 = {"SEARCHLIB_TEXT_INT8": "0"}


def ladder_steps(index: Path, baseline_exe: str | None, int8: bool = False) -> list[tuple]:
    """``(key, label, command or function of the round number[, environment])`` for each rung of
    the ladder; with ``int8`` (the index's int8 text tower passed its gate, so it answers), the
    text tower and the new-text search again on the fp32 tower."""
    py = sys.executable
    opened = f"import searchlib; i = searchlib.open_index({str(index)!r}); i.identity; i.generation()"
    steps: list[tuple[str, str, object]] = [
        ("interpreter_s", "python -c pass", [py, "-c", "pass"]),
        ("floor_s", "floor: import numpy, onnxruntime", [py, "-c", "import numpy, onnxruntime"]),
        ("cli_import_s", "import the CLI", [py, "-c", "import searchlib.cli.main"]),
        ("open_s", "+ open the index", [py, "-c", opened]),
        ("vectors_s", "+ its vectors", [py, "-c", opened + "; i.vectors.ntotal"]),
        ("text_tower_s", "+ the text tower", [py, "-c", opened + "; i.vectors.ntotal; i.text_encoder()"]),
        ("search_miss_s", "searchlib search (new text)",
         lambda r: [EXE, "--index", str(index), "search", f"a dog on a beach at {os.getpid()}.{r} o'clock"]),
        ("search_hit_s", "searchlib search (repeated text)",
         [EXE, "--index", str(index), "search", "a dog on a beach"]),
    ]
    if int8:  # the same rungs on the fp32 tower, in the same rounds
        steps[5:7] = [steps[5], ("text_tower_fp32_s", "+ the text tower, fp32", steps[5][2], FP32),
                      steps[6], ("search_miss_fp32_s", "searchlib search (new text), fp32",
                                 lambda r: [EXE, "--index", str(index), "search",
                                            f"a cat on a beach at {os.getpid()}.{r} o'clock"], FP32)]
    if baseline_exe:
        steps += [("baseline_miss_s", "baseline: searchlib search (new text)",
                   lambda r: [baseline_exe, "--index", str(index), "search", f"a cat on a sofa {os.getpid()}.{r}"]),
                  ("baseline_hit_s", "baseline: searchlib search (repeated text)",
                   [baseline_exe, "--index", str(index), "search", "a dog on a beach"])]
    return steps


def run_ladder(index: Path, reps: int, baseline_exe: str | None) -> dict:
    """Median seconds of each rung, rounds taken in turn; printed as ratios to the floor. Where the
    index's int8 text tower passed its gate, also the fp32 tower's rungs, its gate's figures and
    both towers' warm milliseconds per query."""
    from searchlib.textquant import int8_for_queries, read_int8_note

    note = json.loads((index / "text_encoder.json").read_text()) if (index / "text_encoder.json").exists() else {}
    gate = (read_int8_note(index) or {}).get("gate")
    if gate and not gate["passed"]:
        # Measured all the same (random weights quantize unlike trained ones): the failed gate is printed.
        os.environ["SEARCHLIB_TEXT_INT8"] = "force"
    int8 = note and int8_for_queries(index, note["checksum"]) is not None
    steps = ladder_steps(index, baseline_exe, int8=bool(int8))
    for _key, _label, cmd, *env in steps:  # warm the page cache and the .pyc files once
        timed_cmd(cmd(-1) if callable(cmd) else cmd, *env)
    times: dict[str, list[float]] = {step[0]: [] for step in steps}
    for r in range(reps):
        for key, _label, cmd, *env in steps:
            times[key].append(timed_cmd(cmd(r) if callable(cmd) else cmd, *env))
    out: dict = {key: statistics.median(values) for key, values in times.items()}
    floor = out["floor_s"]
    print(f"\ncold query ladder on {index}, medians of {reps} rounds"
          + ("; the text tower is int8 unless marked fp32" if int8 else "")
          + (" (forced: its gate failed)" if int8 and not gate["passed"] else ""))
    print(f"{'step':<44} {'seconds':>8} {'vs floor':>9}")
    for key, label, *_ in steps:
        print(f"{label:<44} {out[key]:>8.3f} {out[key] / floor:>8.2f}x")
    if gate:
        out["int8_gate"] = gate
        print(f"int8 gate {'passed' if gate['passed'] else 'failed: ' + str(gate['reason'])}: min cosine "
              f"{gate['min_cosine']:.4f}, mean {gate['mean_cosine']:.4f}, 1st percentile {gate['p1_cosine']:.4f}, "
              f"top-{gate['k']} agreement {gate['top10_agreement']} over {gate['vectors_sampled']} stored vectors, "
              f"{gate['probes']} probes")
        out.update(warm_tower_ms(index, note, reps=max(20, 4 * reps)))
    return out


def warm_tower_ms(index: Path, note: dict, reps: int) -> dict:
    """Median milliseconds per single query of the fp32 and the int8 text tower, loaded once and
    warmed, queries taken in turn (a text never seen before each time)."""
    from searchlib.textenc import ONNX_FILE, OnnxTextEncoder
    from searchlib.textquant import INT8_FILE, read_int8_note

    towers = {"fp32": OnnxTextEncoder(index, note),
              "int8": OnnxTextEncoder(index, note, INT8_FILE, read_int8_note(index)["checksum"])}
    assert towers["fp32"].file == ONNX_FILE
    for tower in towers.values():
        tower.embed_texts(["warm up"])
    times: dict[str, list[float]] = {name: [] for name in towers}
    for r in range(reps):
        for name, tower in towers.items():
            t0 = time.perf_counter()
            tower.embed_texts([f"a photo of a dog on a beach number {r}"])
            times[name].append((time.perf_counter() - t0) * 1000)
    ms = {name: statistics.median(values) for name, values in times.items()}
    print(f"warm text tower, median of {reps} single queries: fp32 {ms['fp32']:.1f} ms, int8 {ms['int8']:.1f} ms "
          f"({ms['fp32'] / ms['int8']:.2f}x faster)")
    return {"warm_fp32_ms": ms["fp32"], "warm_int8_ms": ms["int8"]}


def ladder_index(args, work: Path) -> Path:
    """The index the ladder runs on: a folder indexed with ``--model``, or N synthetic vectors."""
    if args.ladder_size:
        from benchmarks.bench_query import build
        from searchlib.textenc import ONNX_FILE, export_text_encoder

        embedder = Embedder(parse_model_spec("ViT-B-32/random"), device="cpu")
        text_dir = work / "text"
        if not (text_dir / ONNX_FILE).exists():
            text_dir.mkdir(parents=True, exist_ok=True)
            export_text_encoder(embedder, text_dir)
        index = build(work, args.ladder_size, embedder, text_dir)
        from searchlib.index import Index

        with Index.open(index) as opened, opened.writer() as writer:
            writer.finish()  # what an index run ends with: the int8 text tower and its gate
        return index
    make_corpus(work / "eight", 8, (1600, 1200), 90, 5)
    base = work / f"ladder-{args.model.replace('/', '-')}"
    if not (base / "catalog.sqlite").exists():
        timed(["--index", str(base), "index", str(work / "eight"), "--model", args.model])
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--camera", type=int, default=160, help="12 MP JPEGs for the end-to-end run")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-startup"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ladder-only", action="store_true", help="run the cold query ladder only")
    ap.add_argument("--ladder-size", type=int, default=0, help="ladder on N synthetic vectors (ViT-B-32)")
    ap.add_argument("--baseline-exe", help="another searchlib console script to time on the same index")
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    ladder = run_ladder(ladder_index(args, work), args.reps, args.baseline_exe)
    if args.ladder_only:
        if args.json:
            args.json.write_text(json.dumps({"model": "ViT-B-32/random" if args.ladder_size else args.model,
                                             "size": args.ladder_size or 8, "date": time.strftime("%Y-%m-%d"),
                                             "cores": os.cpu_count(), "reps": args.reps, **ladder}, indent=2))
        return
    make_corpus(work / "eight", 8, (1600, 1200), 90, 5)
    camera = make_corpus(work / "camera", args.camera, (4000, 3000), 92, 1)
    base = work / "base-index"
    shutil.rmtree(base, ignore_errors=True)
    timed(["--index", str(base), "index", str(work / "eight"), "--model", args.model])  # warms the model cache

    def fresh(env=None) -> float:
        target = work / "fresh-index"
        shutil.rmtree(target, ignore_errors=True)
        return timed(["--index", str(target), "index", str(work / "eight"), "--model", args.model], env)

    def first_ever() -> float:
        with tempfile.TemporaryDirectory() as empty:
            return fresh({**os.environ, "SEARCHLIB_CACHE": empty})

    results = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "reps": args.reps,
               "ladder": ladder}
    results["cold_search_s"] = median_of(args.reps, lambda: timed(["--index", str(base), "search", "a dog on a beach"]))
    results["noop_s"] = median_of(args.reps, lambda: timed(["--index", str(base), "index", str(work / "eight")]))
    results["fresh8_s"] = median_of(args.reps, fresh)
    results["fresh8_first_ever_s"] = median_of(max(1, args.reps // 2), first_ever)
    target = work / "camera-index"
    shutil.rmtree(target, ignore_errors=True)
    results["camera_files"] = len(camera)
    results["camera_s"] = timed(["--index", str(target), "index", str(work / "camera"), "--model", args.model])
    embedder = Embedder(parse_model_spec(args.model), device="cpu")
    decode_rate = decode_ceiling(camera, embedder.preprocess, workers=os.cpu_count() or 1)
    model_rate = model_ceiling(embedder, 4 * embedder.batch_size)
    results["camera_decode_only_s"] = len(camera) / decode_rate
    results["camera_model_only_s"] = len(camera) / model_rate
    # Decoding and the model share the cores: together they cannot beat 1/(1/decode + 1/model).
    results["camera_bound_s"] = results["camera_decode_only_s"] + results["camera_model_only_s"]
    cold = results["cold_search_s"]
    print(f"\nmodel {args.model}, {results['cores']} cores, medians of {args.reps}")
    print(f"{'what':<44} {'seconds':>8} {'vs cold search':>15}")
    for label, key in [("cold search", "cold_search_s"), ("index run with nothing to do", "noop_s"),
                       ("8 new files, fresh index (model used before)", "fresh8_s"),
                       ("8 new files, fresh index (empty user cache)", "fresh8_first_ever_s")]:
        print(f"{label:<44} {results[key]:>8.2f} {results[key] / cold:>14.2f}x")
    r = results
    print(f"{len(camera)} camera JPEGs end to end: {r['camera_s']:.1f} s; "
          f"decode-only {r['camera_decode_only_s']:.1f} s, "
          f"model-only {r['camera_model_only_s']:.1f} s, both on the same cores {r['camera_bound_s']:.1f} s "
          f"(the run reaches {r['camera_bound_s'] / r['camera_s']:.0%} of that bound)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
