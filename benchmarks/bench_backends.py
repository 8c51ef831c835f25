"""Image-tower backends on this machine: throughput and fidelity against eager fp32 PyTorch.

Picks the CPU default of searchlib.backends (recorded in benchmarks/RESULTS.md). Random-init
weights: cost does not depend on them; fidelity is also checked with the bundled model.

    python benchmarks/bench_backends.py --model ViT-B-32/random --batch 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchlib.embedding import Embedder  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402


def rate(embedder: Embedder, pixels: np.ndarray, reps: int) -> tuple[float, np.ndarray]:
    out = embedder.embed_pixels(pixels[: embedder.batch_size])  # warm-up (and export, for ONNX)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = embedder.embed_pixels(pixels)
        times.append(time.perf_counter() - t0)
    return len(pixels) / statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch", "bf16", "onnx", "onnx-int8"])
    args = ap.parse_args()
    spec = parse_model_spec(args.model)
    size = Embedder(spec, device="cpu").identity.image_size
    rng = np.random.default_rng(0)
    # Smooth random images (not white noise): closer to the activations real photos produce.
    small = rng.integers(0, 256, (args.images, 8, 8, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(small, size // 8, axis=1), size // 8, axis=2)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    results = {}
    for backend in args.backends:
        emb = Embedder(spec, device="cpu", batch_size=args.batch, backend=backend)
        results[backend] = rate(emb, pixels, args.reps)
    base_rate, base = results["torch"] if "torch" in results else next(iter(results.values()))
    print(f"{args.model}, batch {args.batch}, {args.images} images, CPU")
    print(f"{'backend':<10} {'img/s':>7} {'vs torch':>8} {'cosine vs torch fp32 (mean / min)':>34}")
    for backend, (r, out) in results.items():
        cos = (out * base).sum(axis=1)
        print(f"{backend:<10} {r:>7.1f} {r / base_rate:>7.2f}x {cos.mean():>24.4f} / {cos.min():.4f}")


if __name__ == "__main__":
    main()
