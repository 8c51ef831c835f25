"""Indexing benchmark: decode ceiling, model ceiling, a naive pipeline and searchlib end to end.

Generates its corpora (12 MP camera-like JPEGs of ~3 MB; 500x375 web-size JPEGs), then in one run:

* decode-only ceilings: searchlib's CPU decode (reduced JPEG decode + resize) in one process per
  core, and the batched device decoder (nvJPEG on CUDA: decode + resize + crop, files in memory);
* model-only ceiling: the image tower on random uint8 input, with the backend the indexer uses;
* naive pipeline: one process, full decode, open_clip's own transform, eager model, batch by batch
  (how rclip and most scripts do it);
* searchlib's indexer end to end, once per JPEG decoder setting (``--decoders``; on CUDA: auto =
  CPU workers and nvJPEG together, cpu, device), steady-state rate from its progress reports and
  whole-run rate;
* fidelity: mean cosine between each fast path (CPU workers; device decoder) and the reference
  (full decode + open_clip transform + eager fp32) for the bundled model and for ViT-B-32.

Random-init weights are used for ViT-B-32: cost does not depend on weights. Large corpora are
made of a few dozen generated photos, each written many times with a different JPEG comment
(COM) segment: every file has its own bytes and content hash (so none is skipped as a copy) and
costs exactly as much to decode as its original.

    python benchmarks/bench_index.py --camera 96 --web 600            # CPU
    python benchmarks/bench_index.py --camera 48 --web 200 --decoders cpu device  # CPU, both paths
    python benchmarks/bench_index.py --device cuda --camera 2000 --web 20000  # GPU machine
"""

from __future__ import annotations

import argparse
import io
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

from searchlib.embedding import Embedder, normalize  # noqa: E402
from searchlib.imaging import decode_for_model  # noqa: E402
from searchlib.indexer import index_folder  # noqa: E402
from searchlib.indexer.pipeline import decode_stream  # noqa: E402
from searchlib.indexer.scan import FileEntry  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402


def _photo(args: tuple[int, tuple[int, int], int, int]) -> bytes:
    """One photo-like JPEG: smooth colour fields, shapes and sensor-like noise (realistic sizes)."""
    i, size, quality, seed = args
    from searchlib.synthetic import generate

    (sample,) = generate(1, seed * 100_003 + i, size=256)
    rng = np.random.default_rng(seed * 7919 + i)
    base = np.asarray(sample.image.resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
    noise = rng.normal(0, 7 if size[0] > 1000 else 4, size=(size[1], size[0], 1)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, identical pixels and decode cost."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def make_corpus(folder: Path, count: int, size: tuple[int, int], quality: int, seed: int,
                distinct: int = 48) -> list[Path]:
    """``count`` JPEGs: ``distinct`` generated photos, the rest copies of them with their own COM."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= count:
        return existing[:count]
    n = min(count, distinct)
    jobs = [(i, size, quality, seed) for i in range(n)]
    if n > 4 and (os.cpu_count() or 1) > 2:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool() as pool:
            photos = pool.map(_photo, jobs)
    else:
        photos = [_photo(j) for j in jobs]
    paths = []
    for i in range(count):
        path = folder / f"IMG_{i:05d}.jpg"
        data = photos[i] if i < n else _with_comment(photos[i % n], f"searchlib benchmark copy {i}")
        path.write_bytes(data)
        paths.append(path)
    return paths


def decode_ceiling(paths: list[Path], prep, workers: int) -> float:
    entries = [FileEntry(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    stream = decode_stream(entries, prep, workers=workers)
    next(stream)  # the pool's start-up is not counted
    t0 = time.perf_counter()
    n = sum(1 for _ in stream)
    return n / (time.perf_counter() - t0)


def device_decode_ceiling(paths: list[Path], prep, device: str, batch: int) -> float:
    """The batched device decoder alone (decode, orientation, resize, crop), files already in memory."""
    from searchlib.devicedecode import DeviceJpegDecoder

    decoder = DeviceJpegDecoder(prep, device)
    datas = [p.read_bytes() for p in paths]
    sync = _sync(device)
    decoder.decode(datas[:min(len(datas), 8)])  # start-up (CUDA context, nvJPEG handles)
    sync()
    t0 = time.perf_counter()
    for start in range(0, len(datas), batch):
        result = decoder.decode(datas[start:start + batch])
        assert not result.failed, result.failed
    sync()
    return len(datas) / (time.perf_counter() - t0)


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


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


def naive(paths: list[Path], model: str, batch: int, device: str) -> float:
    """One process, full decode, open_clip's own transform, eager PyTorch, batch by batch. Any model
    spec the CLI takes (``bundled``, ``ARCH/TAG``, ``ARCH/random``): loaded through searchlib, run
    the way a plain script would."""
    import open_clip
    import torch

    reference = Embedder(parse_model_spec(model), device=device)
    net = reference.reference_model()
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(net)), is_train=False)
    size = reference.identity.image_size
    with torch.inference_mode():
        net.encode_image(torch.zeros(1, 3, size, size, device=device))
        t0 = time.perf_counter()
        for start in range(0, len(paths), batch):
            x = torch.stack([transform(Image.open(p)) for p in paths[start:start + batch]]).to(device)
            net.encode_image(x).cpu()
    return len(paths) / (time.perf_counter() - t0)


def exactly(paths: list[Path], work: Path) -> Path:
    """A folder holding just ``paths`` (hard links: the corpus folder may hold more files)."""
    folder = work / f"{paths[0].parent.name}-{len(paths)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in paths:
        os.link(p, folder / p.name)
    return folder


def end_to_end(paths: list[Path], work: Path, model: str, device: str, batch: int | None,
               jpeg_decoder: str = "auto") -> tuple[float, float]:
    paths_dir = exactly(paths, work)
    index_dir = work / "bench-index"
    shutil.rmtree(index_dir, ignore_errors=True)
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    report = index_folder(index_dir, paths_dir, model=model, device=device, batch_size=batch,
                          jpeg_decoder=jpeg_decoder,
                          progress=lambda p: p.phase == "embedding" and marks.append((time.perf_counter(), p.done)))
    total = time.perf_counter() - t0
    assert report.failed == 0 and report.added == len(paths), (report.added, report.failures[:3])
    # Steady state: files finished per second while the pipeline is full at both ends, i.e. from
    # the first finished batch (model loaded, workers busy) to the last file the decoders deliver
    # (after it, the batches still buffered drain without decoding going on beside them). Too few
    # files for two distinct marks: the whole-run rate is all there is.
    running = [m for m in marks[:-1] if m[1] > 0]  # the last mark comes after the final flush
    (ta, da), (tb, db) = (running[0], running[-1]) if running else (marks[-1], marks[-1])
    steady = (db - da) / (tb - ta) if tb > ta and db > da else report.added / total
    return steady, report.added / total


def fidelity(paths: list[Path], model: str, device: str, with_device_decoder: bool) -> dict[str, float]:
    """Mean cosine to the open_clip reference (full decode, its transform, eager fp32 on the CPU)
    of the fast paths: CPU workers' decode, and (if asked) the device decoder, each through the
    backend the indexer uses on ``device``."""
    import open_clip
    import torch

    from searchlib.devicedecode import DeviceJpegDecoder

    fast = Embedder(parse_model_spec(model), device=device)
    prep = fast.preprocess
    datas = [p.read_bytes() for p in paths]
    vectors = {"workers": fast.embed_pixels(np.stack([decode_for_model(d, prep)[0] for d in datas]))}
    if with_device_decoder:
        decoded = DeviceJpegDecoder(prep, fast.device).decode(datas)
        assert not decoded.failed, decoded.failed
        vectors["device decoder"] = fast.embed_pixels(decoded.pixels)
    ref_model = fast.reference_model()
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(ref_model)), is_train=False)
    with torch.inference_mode():
        x = torch.stack([transform(Image.open(p)) for p in paths])
        ref = normalize(ref_model.float().cpu().encode_image(x).numpy())
    return {path: float((v * ref).sum(axis=1).mean()) for path, v in vectors.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camera", type=int, default=48, help="12 MP JPEGs to generate")
    ap.add_argument("--web", type=int, default=400, help="500x375 JPEGs to generate")
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--decoders", nargs="+", choices=["auto", "cpu", "device", "split"],
                    help="--jpeg-decoder settings to run end to end (default: auto (= split) cpu device on CUDA, "
                         "auto on CPU)")
    ap.add_argument("--naive-files", type=int, default=96, help="files the (slow) naive pipeline reads")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-index"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    decoders = args.decoders or (["auto", "cpu", "device"] if cuda else ["auto"])
    with_device = cuda or "device" in decoders or "split" in decoders
    corpora = {
        "camera 12MP": make_corpus(args.workdir / "camera", args.camera, (4000, 3000), 92, 1),
        "web 500x375": make_corpus(args.workdir / "web", args.web, (500, 375), 80, 2),
    }
    embedder = Embedder(parse_model_spec(args.model), device=args.device, batch_size=args.batch_size)
    cores = os.cpu_count() or 1
    results = {"model": args.model, "device": args.device, "cores": cores, "backend": embedder.backend,
               "batch_size": embedder.batch_size, "date": time.strftime("%Y-%m-%d"),
               "model_only": model_ceiling(embedder, 4 * embedder.batch_size), "corpora": {}}
    if cuda:
        import torch

        results["gpu"] = torch.cuda.get_device_name()
    print(f"model-only {results['model_only']:.1f} img/s", flush=True)
    for name, paths in corpora.items():
        mb = statistics.mean(p.stat().st_size for p in paths) / 1e6
        row = {"files": len(paths), "mean_mb": round(mb, 2), "e2e": {}}
        row["decode_cpu"] = decode_ceiling(paths, embedder.preprocess, workers=cores)
        if with_device:
            row["decode_device"] = device_decode_ceiling(paths, embedder.preprocess, embedder.device,
                                                         embedder.batch_size)
        row["naive"] = naive(paths[: min(len(paths), args.naive_files)], args.model, embedder.batch_size,
                             args.device)
        for mode in decoders:
            steady, total = end_to_end(paths, args.workdir, args.model, args.device,
                                       args.batch_size, mode)
            row["e2e"][mode] = {"steady": steady, "total": total}
        results["corpora"][name] = row
        print(name, json.dumps(row), flush=True)
    sample = corpora["camera 12MP"][:16] + corpora["web 500x375"][:32]
    results["fidelity"] = {m: fidelity(sample, m, args.device, with_device) for m in ("bundled", args.model)}
    report(results, args.model)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict, model: str) -> None:
    """The summary tables (printed last)."""
    m = results["model_only"]
    print(f"\nmodel {model} on {results['device']} {results.get('gpu', '')} ({results['cores']} cores), "
          f"backend {results['backend']}, batch {results['batch_size']}: model-only {m:.1f} img/s")
    print(f"{'corpus':<12} {'MB':>5} {'dec cpu':>8} {'dec dev':>8} {'naive':>7}  {'decoder':<7} {'searchlib':>9} "
          f"{'(whole)':>8} {'vs best dec':>11} {'vs model':>8} {'vs naive':>8}")
    for name, r in results["corpora"].items():
        best = max(r["decode_cpu"], r.get("decode_device", 0.0))
        dev = f"{r['decode_device']:>8.1f}" if "decode_device" in r else f"{'-':>8}"
        for i, (mode, e) in enumerate(r["e2e"].items()):
            head = (f"{name:<12} {r['mean_mb']:>5.2f} {r['decode_cpu']:>8.1f} {dev} {r['naive']:>7.1f}" if i == 0
                    else " " * 44)
            print(f"{head}  {mode:<7} {e['steady']:>9.1f} {e['total']:>8.1f} {e['steady'] / best:>10.0%} "
                  f"{e['steady'] / m:>7.0%} {e['steady'] / r['naive']:>7.2f}x")
    print("fidelity (mean cosine to the open_clip reference): " + "; ".join(
        f"{k}: " + ", ".join(f"{path} {v:.4f}" for path, v in paths.items())
        for k, paths in results["fidelity"].items()))


if __name__ == "__main__":
    main()
