"""Query benchmark: warm library latency, recall@10, cold CLI time and memory at 10k-1M images.

Builds real index directories (catalog + FAISS + exported text tower) holding synthetic vectors,
then compares searchlib with the brute-force approach of rclip and llm (load every vector from
SQLite, numpy matmul) measured in the same run.

Synthetic vectors: 512-d, drawn around 2,000 cluster centres (photo collections are clustered:
many shots of the same scenes), unit norm. The model is ViT-B-32 with random weights: query
cost does not depend on the weights. Recall@10 is measured against exact search with queries near
stored vectors (like a text query near its images), since random text vectors have no neighbours.

    python benchmarks/bench_query.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchlib.catalog import Catalog, ChangeSet  # noqa: E402
from searchlib.embedding import Embedder, normalize  # noqa: E402
from searchlib.index import Index, open_index  # noqa: E402
from searchlib.models import parse_model_spec  # noqa: E402
from searchlib.records import ImageMetadata, ImageRecord  # noqa: E402
from searchlib.textenc import NOTE_FILE, ONNX_FILE, export_text_encoder  # noqa: E402

MODEL = "ViT-B-32/random"
QUERIES = ["a dog on a beach", "sunset over the sea", "a red car", "birthday cake with candles", "snowy mountains",
           "a cat sleeping on a sofa", "people at a wedding", "a plate of pasta", "city skyline at night",
           "children playing football", "a bicycle against a wall", "fireworks", "a forest path in autumn",
           "an old church", "a baby smiling", "boats in a harbour", "a horse in a field", "coffee cup on a table",
           "a waterfall", "graduation photo"]


def clustered(n: int, dim: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        pts = c[rng.integers(0, centres, m)] + rng.normal(scale=0.7, size=(m, dim)).astype(np.float32)
        out[start:start + m] = normalize(pts)
    return out


def build(root: Path, n: int, embedder: Embedder, text_dir: Path) -> Path:
    directory = root / f"index-{n}"
    marker = directory / "bench.json"
    if marker.exists() and json.loads(marker.read_text()).get("n") == n:
        if (directory / NOTE_FILE).read_text() != (text_dir / NOTE_FILE).read_text():
            for name in (ONNX_FILE, NOTE_FILE):  # a newer export of the text tower
                shutil.copy(text_dir / name, directory / name)
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    catalog = Catalog(directory / "catalog.sqlite", create=True)
    vecs = clustered(n, embedder.identity.dim, seed=n)
    meta = ImageMetadata(width=4000, height=3000, format="JPEG")
    t0 = time.perf_counter()
    for start in range(0, n, 50_000):
        items = [(ImageRecord(f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg", 3_000_000 + i,
                              1_600_000_000_000_000_000 + i, f"{i:064x}", meta), vecs[i])
                 for i in range(start, min(n, start + 50_000))]
        catalog.apply(ChangeSet(added=items, identity=embedder.identity if start == 0 else None))
    catalog.close()
    for name in (ONNX_FILE, NOTE_FILE):
        shutil.copy(text_dir / name, directory / name)
    index = Index.open(directory)
    with index.writer() as writer:
        t1 = time.perf_counter()
        vectors = index.vectors  # builds (and for IVF trains + tunes) and saves under the lock
        build_s = time.perf_counter() - t1
        writer.finish()  # what an index run ends with: the cache saved, the relevance bank embedded
    marker.write_text(json.dumps({"n": n, "write_s": t1 - t0, "build_s": build_s, "type": vectors.index_type}))
    index.close()
    return directory


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def warm_latency(directory: Path, reps: int) -> dict:
    with open_index(directory, device="cpu") as index:
        index.search("warm up", k=10)
        index.search("warm up again", k=10)
        total, enc, srch = [], [], []
        for i in range(reps):
            q = QUERIES[i % len(QUERIES)] + f" {i}"
            t0 = time.perf_counter()
            v = index.embed_texts([q])[0]
            t1 = time.perf_counter()
            index.search(v, k=10)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            srch.append(t2 - t1)
            total.append(t2 - t0)
        # The whole text path as an app calls it: embed, search, hits with their relevance.
        full, bare = [], []
        for i in range(reps):
            q = QUERIES[i % len(QUERIES)] + f" again {i}"
            t0 = time.perf_counter()
            index.search(q, k=10)
            full.append(time.perf_counter() - t0)
            v = index.embed_texts([q + " x"])[0]
            t0 = time.perf_counter()
            index.search(v, k=10)  # a vector query: no relevance computed
            bare.append(time.perf_counter() - t0)
        vectors = index.vectors
        # Independent recall check: ANN top-10 vs numpy exact over every stored vector.
        _, ids, stored = index.catalog.snapshot_vectors()
        rng = np.random.default_rng(7)
        sample = stored[rng.choice(len(stored), 100, replace=False)]
        queries = normalize(sample + rng.normal(scale=0.5 / np.sqrt(stored.shape[1]), size=sample.shape))
        _, got = vectors.search(queries, 10)
        truth = ids[np.argsort(-(queries @ stored.T), axis=1)[:, :10]]
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))
        mem = rss_mb()
    q = np.quantile
    return {"p50_ms": 1000 * q(total, 0.5), "p95_ms": 1000 * q(total, 0.95), "encode_p50_ms": 1000 * q(enc, 0.5),
            "search_p50_ms": 1000 * q(srch, 0.5), "text_search_p50_ms": 1000 * q(full, 0.5),
            "vector_search_p50_ms": 1000 * q(bare, 0.5), "recall10": recall, "type": vectors.index_type,
            "nprobe": vectors.nprobe, "rss_mb": mem}


# Peak memory from VmHWM: ru_maxrss would carry over the forking parent's size across exec.
HWM = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"

BASELINE = """
import sqlite3, sys, time
import numpy as np
import torch, open_clip
t0 = time.perf_counter()
model = open_clip.create_model("ViT-B-32").eval()
tok = open_clip.get_tokenizer("ViT-B-32")
with torch.inference_mode():
    q = model.encode_text(tok([sys.argv[2]])).numpy()[0]
q /= np.linalg.norm(q)
con = sqlite3.connect(sys.argv[1])
rows = con.execute("SELECT image_id, vector FROM embeddings").fetchall()
ids = np.array([r[0] for r in rows])
vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
t1 = time.perf_counter()
sims = vecs @ q
top = ids[np.argsort(-sims)[:10]]
t2 = time.perf_counter()
paths = con.execute(f"SELECT path FROM images WHERE id IN ({','.join(map(str, top))})").fetchall()
print("BASE", t2 - t1, HWM)
""".replace("HWM", HWM)


def cold_cli(directory: Path, reps: int) -> dict:
    """The installed console script, timed from the outside like a user would see it."""
    exe = Path(sys.executable).with_name("searchlib")
    timer = shutil.which("time") or "/usr/bin/time"
    times, rss = [], []
    for i in range(reps):
        cmd = [str(exe), "--index", str(directory), "search", QUERIES[i], "--json"]
        if os.path.exists(timer):
            cmd = [timer, "-f", "MAXRSS %M"] + cmd
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)) == 10
        if "MAXRSS" in out.stderr:
            rss.append(int(out.stderr.split("MAXRSS")[1].split()[0]) / 1024)
    return {"cold_s": statistics.median(times), "cold_rss_mb": max(rss) if rss else float("nan")}


def baseline(directory: Path, reps: int) -> dict:
    times, matmul, rss = [], [], []
    for i in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", BASELINE, str(directory / "catalog.sqlite"), QUERIES[i]],
                             capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
        _, mm, mr = out.stdout.split()
        matmul.append(float(mm))
        rss.append(int(mr) / 1024)
    return {"base_cold_s": statistics.median(times), "base_search_ms": 1000 * statistics.median(matmul),
            "base_rss_mb": max(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-query"))
    parser.add_argument("--reps", type=int, default=50, help="warm queries per size")
    parser.add_argument("--cold-reps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(parse_model_spec(MODEL), device="cpu")
    text_dir = args.workdir / "text"
    if not (text_dir / ONNX_FILE).exists():
        text_dir.mkdir(exist_ok=True)
        export_text_encoder(embedder, text_dir)
    results = []
    for n in args.sizes:
        directory = build(args.workdir, n, embedder, text_dir)
        row = {"n": n, **json.loads((directory / "bench.json").read_text())}
        row.update(warm_latency(directory, args.reps))
        row.update(cold_cli(directory, args.cold_reps))
        row.update(baseline(directory, args.cold_reps))
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{'images':>9} {'index':>14} {'warm p50':>9} {'p95':>7} {'encode':>7} {'search':>7} {'recall@10':>9} "
          f"{'cold CLI':>9} {'cold RSS':>9} | {'base cold':>9} {'base srch':>9} {'base RSS':>9} {'cold x':>7}")
    for r in results:
        print(f"{r['n']:>9,} {r['type']:>14} {r['p50_ms']:>7.1f}ms {r['p95_ms']:>5.1f}ms {r['encode_p50_ms']:>5.1f}ms "
              f"{r['search_p50_ms']:>5.1f}ms {r['recall10']:>9.3f} {r['cold_s']:>8.2f}s {r['cold_rss_mb']:>6.0f}MiB | "
              f"{r['base_cold_s']:>8.2f}s {r['base_search_ms']:>7.1f}ms {r['base_rss_mb']:>6.0f}MiB "
              f"{r['base_cold_s'] / r['cold_s']:>6.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
