"""Big collections within a memory budget: build, memory, disk, recall and latency, against exact
search over float16 vectors from a memory map and against faiss's own index_factory + train + add.

    python benchmarks/bench_big.py --n 10000000 --budget 2GiB --json benchmarks/results-big-cpu.json

Steps (each heavy one in a fresh process, so its peak RSS is its own):

1. N synthetic 512-d vectors, hard on purpose: random directions in a 64-dimensional subspace
   drawn around 2,000 heavily overlapping centres, plus isotropic noise (well-separated clusters make
   IVF look far better than real CLIP vectors do). Written as a float16 memory map, and into a
   searchlib catalog (SQLite, vectors stored as float16) with a ViT-B-32 text tower.
2. searchlib builds its index from the catalog under ``--budget`` (time, peak RSS, disk).
3. The baseline: faiss's ``index_factory`` on the same string, ``train`` on the same number of
   vectors, ``add`` of everything, in one process (autofaiss's path), from the memory map.
4. Queries: text queries end to end (tokenizer + ONNX text tower + search + catalog) for latency
   and RSS; held-out vectors (perturbed) for recall@10 against exact search, without and with the
   exact re-rank. The exact baseline scans the float16 memory map per query.
5. float16 storage: cosine error and top-10 agreement with float32 on a sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 512
MODEL = "ViT-B-32/random"
QUERIES = ["a dog on a beach", "sunset over the sea", "a red car", "birthday cake with candles", "snowy mountains",
           "a cat sleeping on a sofa", "people at a wedding", "a plate of pasta", "city skyline at night",
           "children playing football"]


def hwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_split_mb() -> dict:
    """This process's resident memory now, split: anonymous (heap: the text tower, the coarse
    quantizer, Python) apart from file-backed (mapped lists and ids, the catalog's pages: the
    kernel can drop these) and shared memory."""
    kinds = {"RssAnon:": "anonymous_mb", "RssFile:": "file_mapped_mb", "RssShmem:": "shmem_mb", "VmRSS:": "total_mb"}
    out = {}
    for line in open("/proc/self/status"):
        key = line.split(":")[0] + ":"
        if key in kinds:
            out[kinds[key]] = round(int(line.split()[1]) / 1024, 1)
    return out


class Synthetic:
    """The vector distribution: random directions in a 64-d subspace around 2,000 overlapping centres,
    plus isotropic noise, unit norm (float32)."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(rng.normal(size=(DIM, 64)))[0].T.astype(np.float32)
        self.centres = rng.normal(size=(2000, 64)).astype(np.float32)

    def draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        low = self.centres[rng.integers(0, 2000, m)] + rng.normal(scale=1.0, size=(m, 64)).astype(np.float32)
        x = low @ self.basis + rng.normal(scale=0.04, size=(m, DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """The float16 memory map of ``n`` synthetic unit vectors (made once, reused)."""
    if path.exists() and path.stat().st_size == n * DIM * 2:
        return np.memmap(path, dtype=np.float16, mode="r", shape=(n, DIM))
    source, rng = Synthetic(seed), np.random.default_rng(seed + 1)
    out = np.memmap(path, dtype=np.float16, mode="w+", shape=(n, DIM))
    for start in range(0, n, 250_000):
        m = min(250_000, n - start)
        out[start:start + m] = source.draw(rng, m)
    out.flush()
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n, DIM))


def make_catalog(index_dir: Path, vecs: np.ndarray) -> None:
    """A searchlib catalog holding the vectors (float16), written in bulk, plus the text tower."""
    from searchlib.catalog import Catalog, ChangeSet
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec
    from searchlib.textenc import export_text_encoder

    if (index_dir / "bench.json").exists() and json.loads((index_dir / "bench.json").read_text())["n"] == len(vecs):
        return
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    embedder = Embedder(parse_model_spec(MODEL), device="cpu")
    catalog = Catalog(index_dir / "catalog.sqlite", create=True)
    catalog.set_vector_dtype("float16")
    catalog.apply(ChangeSet(identity=embedder.identity))
    catalog.close()
    con = sqlite3.connect(index_dir / "catalog.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    when = "2024-01-01 12:00:00"
    for start in range(0, len(vecs), 200_000):
        stop = min(len(vecs), start + 200_000)
        rows = [(i + 1, f"/photos/{i // 1000:05d}/IMG_{i:08d}.jpg".encode(), 3_000_000, 1_700_000_000_000_000_000 + i,
                 f"{i:064x}", 4000, 3000, "JPEG", when, "file", when) for i in range(start, stop)]
        con.execute("BEGIN")
        con.executemany("INSERT INTO images (id, path, size, mtime_ns, content_hash, width, height, format, "
                        "captured_at, date_source, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        block = np.ascontiguousarray(vecs[start:stop])
        con.executemany("INSERT INTO embeddings (image_id, vector) VALUES (?, ?)",
                        ((i + 1, block[i - start].tobytes()) for i in range(start, stop)))
        con.execute("UPDATE settings SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")
        con.execute("COMMIT")
        print(f"  catalog: {stop:,} rows", flush=True)
    con.close()
    export_text_encoder(embedder, index_dir)
    (index_dir / "bench.json").write_text(json.dumps({"n": len(vecs)}))


BUILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.bench_big import hwm_mb
from searchlib.index import Index
index = Index.open({index!r})
t0 = time.perf_counter()
with index.writer() as writer:
    writer.configure(max_index_memory={budget})
    writer.invalidate_vectors(delete_files=True)
    writer.finish()
built = time.perf_counter() - t0
info = index.info()
print(json.dumps({{"build_s": built, "build_rss_mb": hwm_mb(), "index_type": info["index_type"],
                  "nprobe": info["nprobe"], "ef_search": info.get("ef_search"), "rerank": info.get("rerank"),
                  "tuned_recall_at_10": info["recall_at_10"],
                  "tuned_recall_at_10_rerank": info.get("recall_at_10_rerank"),
                  "expected_mb": info["memory"]["expected_bytes"] / 2**20}}))
"""

BASELINE = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks.bench_big import hwm_mb
import faiss
n, d = {n}, {dim}
vecs = np.memmap({mmap!r}, dtype=np.float16, mode="r", shape=(n, d))
t0 = time.perf_counter()
index = faiss.index_factory(d, {factory!r}, faiss.METRIC_INNER_PRODUCT)
nlist = faiss.extract_index_ivf(index).nlist
n_train = min(n, max(40 * nlist, 40 * 256))
rows = np.sort(np.random.default_rng(0).choice(n, n_train, replace=False))
index.train(np.ascontiguousarray(vecs[rows], dtype=np.float32))
trained = time.perf_counter() - t0
for start in range(0, n, 250_000):
    block = np.ascontiguousarray(vecs[start:start + 250_000], dtype=np.float32)
    index.add_with_ids(block, np.arange(start + 1, start + 1 + len(block), dtype=np.int64))
print(json.dumps({{"build_s": time.perf_counter() - t0, "train_s": trained, "build_rss_mb": hwm_mb()}}))
"""

QUERY = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks.bench_big import QUERIES, hwm_mb, rss_split_mb
from searchlib import open_index
index = open_index({index!r}, device="cpu")
heldout = np.load({heldout!r})
truth = np.load({truth!r})
index.search("warm up", k=10)
lat = []
for i in range({reps}):
    t0 = time.perf_counter()
    index.search(QUERIES[i % len(QUERIES)] + f" {{i}}", k=10)
    lat.append(time.perf_counter() - t0)
# The ladder of one query, each step on its own (new texts, so no cached vector): the text tower,
# then the search from a vector without and with the re-rank (which reads stored vectors and rows).
encode, by_vector, no_rerank = [], [], []
for i in range({reps}):
    t0 = time.perf_counter()
    v = index.embed_texts([QUERIES[i % len(QUERIES)] + f" ladder {{i}}"])[0]
    t1 = time.perf_counter()
    index.search(v, k=10)
    t2 = time.perf_counter()
    index.search(v, k=10, rerank=0)
    t3 = time.perf_counter()
    encode.append(t1 - t0); by_vector.append(t2 - t1); no_rerank.append(t3 - t2)
def recall(rerank):
    got = [[h.id for h in index.search(q, k=10, rerank=rerank)] for q in heldout]
    return float(np.mean([len(set(g) & set(t.tolist())) / 10 for g, t in zip(got, truth)]))
plain, reranked = recall(0), recall(None)
ms = lambda xs: round(1000 * float(np.median(xs)), 2)
print(json.dumps({{"p50_ms": 1000 * float(np.median(lat)), "p95_ms": 1000 * float(np.quantile(lat, 0.95)),
                  "recall_at_10": plain, "recall_at_10_rerank": reranked, "query_rss_mb": hwm_mb(),
                  "rss_after_queries": rss_split_mb(), "text_tower": index.info().get("text_tower", {{}}).get("in_use"),
                  "ladder_p50_ms": {{"text_tower": ms(encode), "search_from_vector_with_rerank": ms(by_vector),
                                    "search_from_vector_no_rerank": ms(no_rerank)}}}}))
"""

EXACT = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks.bench_big import QUERIES, hwm_mb
from searchlib import open_index
n, d = {n}, {dim}
vecs = np.memmap({mmap!r}, dtype=np.float16, mode="r", shape=(n, d))
index = open_index({index!r}, device="cpu")
encoder = index.text_encoder()
lat = []
for i in range({reps}):
    t0 = time.perf_counter()
    q = encoder.embed_texts([QUERIES[i % len(QUERIES)] + f" {{i}}"])[0]
    best_s, best_i = np.full(10, -np.inf, np.float32), np.zeros(10, np.int64)
    for start in range(0, n, 250_000):  # float16 -> float32 a block at a time: numpy has no float16 BLAS
        s = np.asarray(vecs[start:start + 250_000], dtype=np.float32) @ q
        top = np.argpartition(-s, 10)[:10]
        merged_s = np.concatenate([best_s, s[top]]); merged_i = np.concatenate([best_i, top + start + 1])
        keep = np.argsort(-merged_s)[:10]
        best_s, best_i = merged_s[keep], merged_i[keep]
    index.catalog.images(best_i.tolist())
    lat.append(time.perf_counter() - t0)
print(json.dumps({{"p50_ms": 1000 * float(np.median(lat)), "p95_ms": 1000 * float(np.quantile(lat, 0.95)),
                  "query_rss_mb": hwm_mb(), "recall_at_10": 1.0, "recall_at_10_rerank": 1.0}}))
"""


def run(code: str, **fmt) -> dict:
    out = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), **fmt)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def ground_truth(vecs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vecs), 250_000):
        s = (np.asarray(vecs[start:start + 250_000], dtype=np.float32) @ queries.T).T
        top = np.argpartition(-s, k, axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start + 1], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i


def float16_effect(sample: int = 100_000) -> dict:
    """Cosine error and top-10 agreement of float16 storage against float32, on float32 vectors of
    the same distribution."""
    rng = np.random.default_rng(5)
    full = Synthetic(0).draw(rng, sample)
    stored = full.astype(np.float16).astype(np.float32)
    queries = full[rng.choice(sample, 100, replace=False)] + rng.normal(scale=0.02, size=(100, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact, half = queries @ full.T, queries @ stored.T
    err = np.abs(exact - half)
    a, b = np.argsort(-exact, axis=1)[:, :10], np.argsort(-half, axis=1)[:, :10]
    agree = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))
    return {"cosine_error_max": float(err.max()), "cosine_error_mean": float(err.mean()), "top10_agreement": agree}


def main() -> None:
    from searchlib.indexplan import parse_size, plan_index

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--budget", default="2GiB")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--exact-reps", type=int, default=5)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true", help="skip faiss's own build (slow at 10M)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-big"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    budget = parse_size(args.budget)
    work = args.workdir / f"n{args.n}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vecs = generate(work / "vectors.f16", args.n)
    index_dir = work / "index"
    make_catalog(index_dir, vecs)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    plan = plan_index(args.n, DIM, "auto", budget)
    results: dict = {"n": args.n, "budget": args.budget, "budget_bytes": budget, "cores": os.cpu_count(),
                     "date": time.strftime("%Y-%m-%d"), "plan": plan.to_dict()}
    results.update(run(BUILD, index=str(index_dir), budget=budget))
    print("searchlib build:", json.dumps(results), flush=True)
    disk = sum(p.stat().st_size for p in index_dir.glob("vectors*"))
    results["disk_mb"] = disk / 2**20
    rng = np.random.default_rng(11)
    held = np.asarray(vecs[rng.choice(args.n, args.heldout, replace=False)], dtype=np.float32)
    held = held + rng.normal(scale=0.5 / np.sqrt(DIM), size=held.shape).astype(np.float32)
    held /= np.linalg.norm(held, axis=1, keepdims=True)
    np.save(work / "heldout.npy", held)
    np.save(work / "truth.npy", ground_truth(vecs, held))
    results.update(run(QUERY, index=str(index_dir), heldout=str(work / "heldout.npy"), truth=str(work / "truth.npy"),
                       reps=args.reps))
    print("searchlib queries:", json.dumps(results), flush=True)
    results["exact"] = run(EXACT, index=str(index_dir), mmap=str(work / "vectors.f16"), n=args.n, dim=DIM,
                           reps=args.exact_reps)
    results["exact"]["disk_mb"] = (work / "vectors.f16").stat().st_size / 2**20
    results["exact"]["build_s"] = 0.0
    print("exact:", json.dumps(results["exact"]), flush=True)
    if not args.no_baseline and plan.on_disk:
        results["faiss_baseline"] = run(BASELINE, mmap=str(work / "vectors.f16"), n=args.n, dim=DIM,
                                        factory=results["index_type"])
        print("faiss baseline:", json.dumps(results["faiss_baseline"]), flush=True)
    results["float16"] = float16_effect()
    r = results
    print(f"\n{args.n:,} vectors, budget {args.budget}, {r['cores']} cores: {r['index_type']} "
          f"(nprobe {r['nprobe']}, efSearch {r['ef_search']}, re-rank {r['rerank']})")
    print(f"{'':<22} {'recall@10':>9} {'+rerank':>8} {'p50 ms':>8} {'p95 ms':>8} {'build s':>8} {'build RSS':>10} "
          f"{'query RSS':>10} {'disk MB':>9}")
    rows = [("searchlib", r), ("exact float16 mmap", r["exact"])]
    for name, x in rows:
        print(f"{name:<22} {x['recall_at_10']:>9.3f} {x['recall_at_10_rerank']:>8.3f} {x['p50_ms']:>8.1f} "
              f"{x['p95_ms']:>8.1f} {x.get('build_s', 0):>8.0f} {x.get('build_rss_mb', 0):>9.0f}M "
              f"{x['query_rss_mb']:>9.0f}M {x['disk_mb']:>9.0f}")
    if "faiss_baseline" in r:
        b = r["faiss_baseline"]
        print(f"faiss index_factory+train+add, same string: {b['build_s']:.0f} s (train {b['train_s']:.0f} s), "
              f"peak RSS {b['build_rss_mb']:.0f} MB; searchlib {r['build_s']:.0f} s "
              f"({r['build_s'] / b['build_s']:.2f}x)")
    f = r["float16"]
    print(f"float16 storage: cosine error max {f['cosine_error_max']:.2e}, mean {f['cosine_error_mean']:.2e}; "
          f"top-10 agreement with float32 {f['top10_agreement']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
