"""``searchlib serve`` under load, each figure against a reference measured in the same run.

* warm latency: one client, sequential text queries over HTTP, against ``Index.search`` in the
  library (same index, same queries, both warm);
* throughput: ``--concurrency`` clients sending text queries for ``--seconds``, against what the
  text encoder alone does on these cores (one text per call, as a query arrives, and batches of
  ``--concurrency`` texts);
* thumbnails: 12 MP camera JPEGs, first request (generated: reduced JPEG decode, resize, encode,
  write) against Pillow's ``draft()`` decode-only rate in one thread; then cached (req/s).

The index holds ``--n`` synthetic vectors (as bench_query builds them; ViT-B-32 with random weights:
query cost does not depend on the weights). The server runs as a real process.

    python benchmarks/bench_serve.py --n 100000 --json benchmarks/results-serve-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_index import make_corpus  # noqa: E402
from benchmarks.bench_query import MODEL, QUERIES, build  # noqa: E402
from searchlib import open_index  # noqa: E402
from searchlib.embedding import Embedder  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402
from searchlib.textenc import ONNX_FILE, export_text_encoder  # noqa: E402

EXE = str(Path(sys.executable).with_name("searchlib"))


def serve(index_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([EXE, "--index", str(index_dir), "serve", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.search(r"http://\S+:\d+", proc.stdout.readline()).group(0)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)


def query(i: int) -> str:
    return f"{QUERIES[i % len(QUERIES)]} {i}"  # distinct texts: nothing is answered from a cache


def library_latency(index_dir: Path, reps: int) -> list[float]:
    with open_index(index_dir, device="cpu") as index:
        for i in range(5):
            index.search(query(10_000 + i), k=10)
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            index.search(query(i), k=10)
            times.append(time.perf_counter() - t0)
    return times


def http_latency(url: str, reps: int) -> list[float]:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(5):
            client.get("/api/v1/search", params={"q": query(20_000 + i), "k": 10}).raise_for_status()
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            r = client.get("/api/v1/search", params={"q": query(i), "k": 10})
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
    return times


async def _load(url: str, concurrency: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await c.get("/api/v1/search", params={"q": query(30_000 + next(counter)), "k": 10})
                    if r.status_code != 200 or len(r.json()["hits"]) != 10:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"requests": len(latencies), "errors": errors, "qps": len(latencies) / elapsed,
            "p50_ms": 1000 * float(np.quantile(latencies, 0.5)), "p99_ms": 1000 * float(np.quantile(latencies, 0.99))}


def encoder_alone(index_dir: Path, batch: int, seconds: float) -> float:
    """Texts per second the exported text tower embeds, ``batch`` texts per call."""
    with open_index(index_dir, device="cpu") as index:
        encoder = index.text_encoder()
        encoder.embed_texts([query(1)] * batch)
        n, i = 0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            encoder.embed_texts([query(40_000 + i + j) for j in range(batch)])
            n += batch
            i += batch
        return n / (time.perf_counter() - t0)


def _decode_only(paths: list[Path], threads: int) -> float:
    """Pillow's reduced decode (``draft`` to the thumbnail size) of every file, per second."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def decode(path: Path) -> None:
        img = Image.open(io.BytesIO(path.read_bytes()))
        img.draft("RGB", (256, 256))
        img.load()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without the GIL
        list(pool.map(decode, paths))
    return len(paths) / (time.perf_counter() - t0)


def _fetch_all(url: str, ids: list[int], concurrency: int, rounds: int = 1) -> float:
    import httpx

    async def run() -> float:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            queue = [i for _ in range(rounds) for i in ids]

            async def worker() -> None:
                while queue:
                    image_id = queue.pop()
                    r = await client.get(f"/api/v1/images/{image_id}/thumbnail", params={"size": 256})
                    r.raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return rounds * len(ids) / (time.perf_counter() - t0)

    return asyncio.run(run())


def thumbnails(workdir: Path, files: int) -> dict:
    """Thumbnail rates of 12 MP JPEGs on first request (one client, and four at once, as a browser
    loads a grid) and cached, against Pillow's draft() decode-only rate (one and two threads)."""
    import shutil

    import httpx

    from searchlib.indexer import index_folder

    paths = make_corpus(workdir / "camera", files, (4000, 3000), 92, 1)
    index_dir = workdir / "thumb-index"
    if not (index_dir / "catalog.sqlite").exists():
        index_folder(index_dir, workdir / "camera", model="bundled", device="cpu")
    out = {"files": len(paths), "decode_only_1_per_s": _decode_only(paths, 1),
           "decode_only_2_per_s": _decode_only(paths, 2)}
    proc, url = serve(index_dir)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            hits = client.get("/api/v1/search", params={"q": "a photo", "k": len(paths)}).json()["hits"]
        ids = [h["id"] for h in hits]
        for concurrency in (1, 4):
            shutil.rmtree(index_dir / "thumbnails", ignore_errors=True)
            out[f"first_c{concurrency}_per_s"] = _fetch_all(url, ids, concurrency)
        out["cached_per_s"] = _fetch_all(url, ids, 4, rounds=10)
    finally:
        stop(proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--thumb-files", type=int, default=40)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-serve"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(parse_model_spec(MODEL), device="cpu")
    text_dir = args.workdir / "text"
    if not (text_dir / ONNX_FILE).exists():
        text_dir.mkdir(exist_ok=True)
        export_text_encoder(embedder, text_dir)
    index_dir = build(args.workdir, args.n, embedder, text_dir)
    results: dict = {"n": args.n, "model": MODEL, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                     "concurrency": args.concurrency, "seconds": args.seconds}
    lib = library_latency(index_dir, args.reps)
    proc, url = serve(index_dir)
    try:
        http = http_latency(url, args.reps)
        results["load"] = asyncio.run(_load(url, args.concurrency, args.seconds))
    finally:
        stop(proc)
    results["library_p50_ms"] = 1000 * statistics.median(lib)
    results["http_p50_ms"] = 1000 * statistics.median(http)
    results["http_p95_ms"] = 1000 * float(np.quantile(http, 0.95))
    results["encoder_single_per_s"] = encoder_alone(index_dir, 1, min(10, args.seconds))
    results["encoder_batched_per_s"] = encoder_alone(index_dir, args.concurrency, min(10, args.seconds))
    results["thumbnails"] = thumbnails(args.workdir, args.thumb_files)
    r, load, th = results, results["load"], results["thumbnails"]
    print(f"\n{args.n:,} images, {MODEL}, {r['cores']} cores")
    print(f"warm latency p50: HTTP {r['http_p50_ms']:.1f} ms vs library {r['library_p50_ms']:.1f} ms "
          f"({r['http_p50_ms'] / r['library_p50_ms']:.2f}x); HTTP p95 {r['http_p95_ms']:.1f} ms")
    print(f"throughput at concurrency {args.concurrency} for {args.seconds:.0f} s: {load['qps']:.1f} q/s, p50 "
          f"{load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, {load['errors']} errors of {load['requests']}")
    print(f"text encoder alone: {r['encoder_single_per_s']:.1f} texts/s one per call "
          f"({load['qps'] / r['encoder_single_per_s']:.2f}x), {r['encoder_batched_per_s']:.1f} texts/s in batches of "
          f"{args.concurrency} ({load['qps'] / r['encoder_batched_per_s']:.2f}x)")
    print(f"thumbnails of {th['files']} 12 MP JPEGs, first request: one client {th['first_c1_per_s']:.1f}/s vs "
          f"draft() decode-only in one thread {th['decode_only_1_per_s']:.1f}/s "
          f"({th['first_c1_per_s'] / th['decode_only_1_per_s']:.2f}x); four clients {th['first_c4_per_s']:.1f}/s vs "
          f"two threads {th['decode_only_2_per_s']:.1f}/s ({th['first_c4_per_s'] / th['decode_only_2_per_s']:.2f}x); "
          f"cached {th['cached_per_s']:.0f} req/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
