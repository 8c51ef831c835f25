"""Indexing benchmark: decode ceiling, model ceiling, a naive pipeline and searchlib end to end.

Generates its corpora (12 MP camera-like JPEGs of ~3 MB; 500x375 web-size JPEGs), then in one run:

* decode-only ceiling: searchlib's decode (reduced JPEG decode + resize) in one process per core;
* model-only ceiling: the image tower on random uint8 input, with the backend the indexer uses;
* naive pipeline: one process, full decode, open_clip's own transform, eager model, batch by batch
  (how rclip and most scripts do it);
* searchlib's indexer end to end (steady-state rate from its progress reports, and whole-run rate);
* fidelity: mean cosine between the fast path and the reference (full decode + open_clip transform
  + eager fp32) for the bundled model and for ViT-B-32.

Random-init weights are used for ViT-B-32: cost does not depend on weights.

    python benchmarks/bench_index.py --camera 48 --web 400            # CPU
    python benchmarks/bench_index.py --device cuda --camera 2000 --web 20000  # GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer import index_folder  # noqa: E402
from indexer.pipeline import decode_stream  # noqa: E402
from indexer.scan import FileEntry  # noqa: E402
from searchlib.embedding import Embedder, normalize  # noqa: E402
from searchlib.imaging import decode_for_model  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402


def make_corpus(folder: Path, count: int, size: tuple[int, int], quality: int, seed: int) -> list[Path]:
    """Photo-like JPEGs: smooth colour fields, shapes and sensor-like noise (so sizes are realistic)."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= count:
        return existing[:count]
    from searchlib.synthetic import generate

    rng = np.random.default_rng(seed)
    paths = []
    for i, sample in enumerate(generate(count, seed, size=256)):
        base = np.asarray(sample.image.resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
        noise = rng.normal(0, 7 if size[0] > 1000 else 4, size=(size[1], size[0], 1)).astype(np.int16)
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        path = folder / f"IMG_{i:05d}.jpg"
        img.save(path, quality=quality)
        paths.append(path)
    return paths


def decode_ceiling(paths: list[Path], prep, workers: int) -> float:
    entries = [FileEntry(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    list(decode_stream(entries[: max(2, workers)], prep, workers=workers))  # start-up not counted
    t0 = time.perf_counter()
    n = sum(1 for _ in decode_stream(entries, prep, workers=workers))
    return n / (time.perf_counter() - t0)


def model_ceiling(embedder: Embedder, n: int) -> float:
    size = embedder.identity.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    embedder.embed_pixels(pixels[: embedder.batch_size])  # warm-up
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        embedder.embed_pixels(pixels)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def naive(paths: list[Path], arch: str, batch: int, device: str) -> float:
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch)
    model = model.eval().to(device)
    with torch.inference_mode():
        model.encode_image(torch.zeros(1, 3, 224, 224, device=device))
        t0 = time.perf_counter()
        for start in range(0, len(paths), batch):
            x = torch.stack([preprocess(Image.open(p)) for p in paths[start:start + batch]]).to(device)
            model.encode_image(x).cpu()
    return len(paths) / (time.perf_counter() - t0)


def end_to_end(paths_dir: Path, work: Path, model: str, device: str, batch: int | None) -> tuple[float, float]:
    index_dir = work / "bench-index"
    shutil.rmtree(index_dir, ignore_errors=True)
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    report = index_folder(index_dir, paths_dir, model=model, device=device, batch_size=batch,
                          progress=lambda p: marks.append((time.perf_counter(), p.done)))
    total = time.perf_counter() - t0
    assert report.failed == 0, report.failures[:3]
    # Steady state: from the first progress report (pipeline full, model loaded) to the last.
    (ta, da), (tb, db) = marks[0], marks[-1]
    steady = (db - da) / (tb - ta) if tb > ta else float("nan")
    return steady, report.added / total


def fidelity(paths: list[Path], model: str, device: str) -> float:
    """Mean cosine: fast path (reduced decode, our preprocessing, chosen backend) vs open_clip reference."""
    import open_clip
    import torch

    fast = Embedder(parse_model_spec(model), device=device)
    prep = fast.preprocess
    pixels = np.stack([decode_for_model(p.read_bytes(), prep)[0] for p in paths])
    a = fast.embed_pixels(pixels)
    ref_model = fast.reference_model()
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(ref_model)), is_train=False)
    with torch.inference_mode():
        x = torch.stack([transform(Image.open(p)) for p in paths])
        b = normalize(ref_model.float().cpu().encode_image(x).numpy())
    return float((a * b).sum(axis=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camera", type=int, default=48, help="12 MP JPEGs to generate")
    ap.add_argument("--web", type=int, default=400, help="500x375 JPEGs to generate")
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-index"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    corpora = {
        "camera 12MP": make_corpus(args.workdir / "camera", args.camera, (4000, 3000), 92, 1),
        "web 500x375": make_corpus(args.workdir / "web", args.web, (500, 375), 80, 2),
    }
    embedder = Embedder(parse_model_spec(args.model), device=args.device, batch_size=args.batch_size)
    arch = args.model.split("/")[0]
    cores = os.cpu_count() or 1
    results = {"model": args.model, "device": args.device, "cores": cores, "backend": embedder.backend,
               "model_only": model_ceiling(embedder, 4 * embedder.batch_size), "corpora": {}}
    for name, paths in corpora.items():
        mb = statistics.mean(p.stat().st_size for p in paths) / 1e6
        row = {"files": len(paths), "mean_mb": round(mb, 2)}
        row["decode_only"] = decode_ceiling(paths, embedder.preprocess, workers=cores)
        row["naive"] = naive(paths[: min(len(paths), 96)], arch, embedder.batch_size, args.device)
        row["e2e_steady"], row["e2e_total"] = end_to_end(paths[0].parent, args.workdir, args.model, args.device,
                                                         args.batch_size)
        results["corpora"][name] = row
        print(name, json.dumps(row), flush=True)
    fid = {}
    sample = corpora["camera 12MP"][:16] + corpora["web 500x375"][:32]
    for model in ("bundled", args.model):
        fid[model] = fidelity(sample, model, args.device)
    results["fidelity"] = fid
    m = results["model_only"]
    print(f"\nmodel {args.model} on {args.device} ({cores} cores), backend {embedder.backend}: "
          f"model-only {m:.1f} img/s")
    print(f"{'corpus':<12} {'MB':>5} {'decode-only':>11} {'naive':>7} {'searchlib':>9} {'(whole run)':>11} "
          f"{'vs model':>8} {'vs naive':>8}")
    for name, r in results["corpora"].items():
        print(f"{name:<12} {r['mean_mb']:>5.2f} {r['decode_only']:>11.1f} {r['naive']:>7.1f} {r['e2e_steady']:>9.1f} "
              f"{r['e2e_total']:>11.1f} {r['e2e_steady'] / m:>7.0%} {r['e2e_steady'] / r['naive']:>7.2f}x")
    print("fidelity (mean cosine, fast path vs open_clip reference): "
          + ", ".join(f"{k} {v:.4f}" for k, v in fid.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
