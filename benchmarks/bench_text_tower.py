"""The exported text tower over a query's own tokens against the same tower over the full context.

The ONNX text tower used to run over all ``context_length`` positions (77 for CLIP), padding
included. Where attention is causal and the vector is taken at the end-of-text token, the padding
cannot change the vector, so the export now takes any number of tokens and a query runs over its
own (``searchlib/textenc.py``). This measures both exports of one model in the same run:

* warm milliseconds per single query (fp32 and int8 towers, loaded once, queries taken in turn,
  each text new to the tower), over realistic queries: the gate's probe texts (captions, words,
  other languages, a few long ones);
* a batch of 1,000 labels (what ``classify`` embeds), fp32;
* the session's load time (fresh ``InferenceSession`` from the file, median of ``--loads``);
* fidelity: cosine of each probe's vector from the cut tower to the full-context tower's, and of
  both to open_clip's ``encode_text`` in torch.

Run: ``python benchmarks/bench_text_tower.py [--model ViT-B-32/random] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchlib.embedding import Embedder  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402
from searchlib.textenc import ONNX_FILE, OnnxTextEncoder, _export_onnx, _read_note, token_lengths  # noqa: E402
from searchlib.textquant import INT8_FILE, probe_texts, quantize  # noqa: E402
from searchlib.tokenizing import context_length_of  # noqa: E402
from searchlib.vectors import file_checksum  # noqa: E402


def export(embedder: Embedder, folder: Path, cut: bool) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    _export_onnx(embedder, folder, context_length_of(embedder.identity.arch), allow_cut=cut)
    quantize(folder / ONNX_FILE, folder / INT8_FILE)
    note = _read_note(folder, embedder.identity)
    assert bool(note["trim"]) == cut, note
    return note


def towers(folder: Path, note: dict) -> dict[str, OnnxTextEncoder]:
    return {"fp32": OnnxTextEncoder(folder, note),
            "int8": OnnxTextEncoder(folder, note, INT8_FILE, file_checksum(folder / INT8_FILE))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--queries", type=int, default=120, help="single queries per tower (probe texts in turn)")
    ap.add_argument("--loads", type=int, default=5, help="session loads per file")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    os.environ.setdefault("SEARCHLIB_CACHE", tempfile.mkdtemp(prefix="bench-text-tower-cache-"))
    work = Path(tempfile.mkdtemp(prefix="bench-text-tower-"))
    embedder = Embedder(parse_model_spec(args.model), device="cpu")
    notes = {"full": export(embedder, work / "full", cut=False), "cut": export(embedder, work / "cut", cut=True)}
    loaded = {variant: towers(work / variant, note) for variant, note in notes.items()}

    texts = list(probe_texts())
    tokens = np.asarray(embedder.tokenizer()(texts))
    lengths = token_lengths(tokens, notes["cut"]["trim"]["pad_id"])
    print(f"{args.model}: context {tokens.shape[1]} tokens; the {len(texts)} probe texts have "
          f"{int(np.median(lengths))} tokens (median), {int(np.percentile(lengths, 90))} (90th percentile)")

    # Fidelity, fp32: cut vs full context vs torch.
    reference = embedder.embed_texts(texts)
    vectors = {variant: loaded[variant]["fp32"].embed_texts(texts) for variant in loaded}
    fidelity = {
        "cut_vs_full_min_cosine": float((vectors["cut"] * vectors["full"]).sum(axis=1).min()),
        "cut_vs_torch_min_cosine": float((vectors["cut"] * reference).sum(axis=1).min()),
        "full_vs_torch_min_cosine": float((vectors["full"] * reference).sum(axis=1).min()),
    }
    int8 = {variant: loaded[variant]["int8"].embed_texts(texts) for variant in loaded}
    for variant in loaded:
        fidelity[f"int8_{variant}_vs_fp32_min_cosine"] = float((int8[variant] * vectors[variant]).sum(axis=1).min())
    print("fidelity:", json.dumps({k: round(v, 6) for k, v in fidelity.items()}))

    # Warm single queries, the four towers in turn on each text.
    for tower_set in loaded.values():
        for tower in tower_set.values():
            tower.embed_texts(["warm up"])
    times: dict[str, list[float]] = {f"{v}_{t}": [] for v in loaded for t in ("fp32", "int8")}
    order = [texts[i % len(texts)] for i in range(args.queries)]
    for text in order:
        for variant, tower_set in loaded.items():
            for kind, tower in tower_set.items():
                t0 = time.perf_counter()
                tower.embed_texts([text])
                times[f"{variant}_{kind}"].append((time.perf_counter() - t0) * 1000)
    warm = {key: statistics.median(values) for key, values in times.items()}
    p90 = {key: float(np.percentile(values, 90)) for key, values in times.items()}

    # A classify-sized batch, fp32 (median of 3, in turn).
    labels = [f"a photo of a {t}" for t in (texts * 4)[:1000]]
    batch: dict[str, list[float]] = {variant: [] for variant in loaded}
    for _ in range(3):
        for variant, tower_set in loaded.items():
            t0 = time.perf_counter()
            tower_set["fp32"].embed_texts(labels)
            batch[variant].append(time.perf_counter() - t0)
    batch_s = {variant: statistics.median(values) for variant, values in batch.items()}

    # Session load, from the file (page cache warm), in turn.
    import onnxruntime as ort

    loads: dict[str, list[float]] = {f"{v}_{t}": [] for v in loaded for t in ("fp32", "int8")}
    for _ in range(args.loads):
        for variant in loaded:
            for kind, name in (("fp32", ONNX_FILE), ("int8", INT8_FILE)):
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                options.log_severity_level = 3
                t0 = time.perf_counter()
                session = ort.InferenceSession(str(work / variant / name), options,
                                               providers=["CPUExecutionProvider"])
                session.run(None, {"tokens": tokens[:1, :lengths[0]] if variant == "cut" else tokens[:1]})
                loads[f"{variant}_{kind}"].append(time.perf_counter() - t0)
    load_s = {key: statistics.median(values) for key, values in loads.items()}

    print(f"\nwarm single query, median (90th percentile) of {args.queries}, ms:")
    print(f"{'':<6}{'full context':>20}{'own tokens':>20}{'ratio':>8}")
    for kind in ("fp32", "int8"):
        print(f"{kind:<6}{warm[f'full_{kind}']:>12.1f} ({p90[f'full_{kind}']:>5.1f}){warm[f'cut_{kind}']:>12.1f} "
              f"({p90[f'cut_{kind}']:>5.1f}){warm[f'full_{kind}'] / warm[f'cut_{kind}']:>7.2f}x")
    print(f"1,000 labels, fp32: full {batch_s['full']:.2f} s, own tokens {batch_s['cut']:.2f} s "
          f"({batch_s['full'] / batch_s['cut']:.2f}x)")
    print("session load + first run, s: " + ", ".join(f"{k} {v:.3f}" for k, v in load_s.items()))

    result = {"model": args.model, "context_length": int(tokens.shape[1]), "probe_texts": len(texts),
              "tokens_median": int(np.median(lengths)), "tokens_p90": int(np.percentile(lengths, 90)),
              "fidelity": fidelity, "warm_ms_median": warm, "warm_ms_p90": p90,
              "labels_1000_fp32_s": batch_s, "session_load_s": load_s,
              "speedup_fp32": warm["full_fp32"] / warm["cut_fp32"],
              "speedup_int8": warm["full_int8"] / warm["cut_int8"],
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
