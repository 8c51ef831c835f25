"""Scale-out figures, each against a baseline measured in the same run on the same files:

* Ray on this one node (a local Ray: decode tasks + a model actor) against the plain indexer;
* Ray on 2 simulated nodes (``ray.cluster_utils.Cluster``, the cores split between them) against 1;
* the PostgreSQL catalog against SQLite: write rate (rows with 512-d vectors, in batches of 1,000,
  as the indexer commits them) and query latency, warm and cold (a new process), at ``--rows``.

Throughput is the steady state (from the first commit to the last file), as in bench_index.py;
the whole-run rate, start-up included, is reported beside it.

    python benchmarks/bench_scale.py --files 800 --rows 100000 --json benchmarks/results-scale-cpu.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from benchmarks.bench_index import make_corpus  # noqa: E402
from benchmarks.bench_query import QUERIES, clustered  # noqa: E402
from searchlib.catalog import Catalog, ChangeSet  # noqa: E402
from searchlib.indexer import index_folder  # noqa: E402
from searchlib.records import ImageMetadata, ImageRecord  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402


def timed_index(index_dir: Path, folder: Path, model: str, **options) -> dict:
    shutil.rmtree(index_dir, ignore_errors=True)
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    report = index_folder(index_dir, folder, model=model, device="cpu", commit_seconds=1.0,
                          progress=lambda p: p.phase == "embedding" and marks.append((time.perf_counter(), p.done)),
                          **options)
    total = time.perf_counter() - t0
    running = [m for m in marks if m[1] > 0]
    (ta, da), (tb, db) = running[0], running[-1]
    steady = (db - da) / (tb - ta) if tb > ta else report.added / total
    return {"added": report.added, "steady": steady, "whole": report.added / total}


def ray_run(index_dir: Path, folder: Path, model: str, nodes: int) -> dict:
    """Index on a fresh Ray: one node with every core, or ``nodes`` simulated nodes sharing them."""
    import ray

    cores = os.cpu_count() or 1
    if nodes == 1:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        try:
            return timed_index(index_dir, folder, model, ray="local")
        finally:
            ray.shutdown()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": max(1, cores // nodes)})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=max(1, cores // nodes))
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        return timed_index(index_dir, folder, model, ray="local")  # the cluster is this machine's
    finally:
        ray.shutdown()
        cluster.shutdown()


def write_rate(url: str, rows: int, dim: int = 512) -> float:
    catalog = Catalog(url, create=True)
    vecs = clustered(rows, dim, seed=1)
    meta = ImageMetadata(width=4000, height=3000, format="JPEG")
    t0 = time.perf_counter()
    for start in range(0, rows, 1000):
        batch = [(ImageRecord(f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg", 3_000_000 + i,
                              1_700_000_000_000_000_000 + i, f"{i:064x}", meta), vecs[i])
                 for i in range(start, min(rows, start + 1000))]
        catalog.apply(ChangeSet(added=batch))
    rate = rows / (time.perf_counter() - t0)
    catalog.close()
    return rate


def query_latency(index_dir: Path, url: str | None, reps: int) -> dict:
    """Warm (library, same process) and cold (the console script) query latency on a catalog."""
    from searchlib import open_index
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    embedder = Embedder(parse_model_spec("ViT-B-32/random"), device="cpu")
    catalog = Catalog(url or index_dir / "catalog.sqlite")
    catalog.apply(ChangeSet(identity=embedder.identity))
    catalog.close()
    with open_index(index_dir, catalog=url) as index:
        index.store.model.ensure_text_encoder(embedder)
        index.search("warm up", k=10)
        warm = []
        for i in range(reps):
            t0 = time.perf_counter()
            index.search(QUERIES[i % len(QUERIES)], k=10)
            warm.append(time.perf_counter() - t0)
    exe = str(Path(sys.executable).with_name("searchlib"))
    cold = []
    for i in range(max(3, reps // 10)):
        args = [exe, "--index", str(index_dir)] + (["--catalog", url] if url else []) + ["search", QUERIES[i]]
        t0 = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        cold.append(time.perf_counter() - t0)
    return {"warm_p50_ms": 1000 * statistics.median(warm), "cold_s": statistics.median(cold)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=800, help="web-size JPEGs to index")
    ap.add_argument("--model", default="ViT-B-32/random")
    ap.add_argument("--rows", type=int, default=100_000, help="catalog rows for the PostgreSQL/SQLite figures")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/searchlib-bench-scale"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = args.workdir
    make_corpus(work / "web", args.files, (500, 375), 80, 2)
    results: dict = {"files": args.files, "model": args.model, "cores": os.cpu_count(),
                     "date": time.strftime("%Y-%m-%d")}
    results["plain"] = timed_index(work / "plain", work / "web", args.model)
    results["ray_1_node"] = ray_run(work / "ray1", work / "web", args.model, 1)
    results["ray_2_nodes"] = ray_run(work / "ray2", work / "web", args.model, 2)
    server = PostgresServer()
    server.start()
    try:
        shutil.rmtree(work / "sqlite-index", ignore_errors=True)
        (work / "sqlite-index").mkdir(parents=True)
        results["sqlite_rows_per_s"] = write_rate(str(work / "sqlite-index" / "catalog.sqlite"), args.rows)
        pg = server.new_database()
        results["postgres_rows_per_s"] = write_rate(pg, args.rows)
        results["sqlite_query"] = query_latency(work / "sqlite-index", None, args.reps)
        results["postgres_query"] = query_latency(work / "pg-cache", pg, args.reps)
    finally:
        server.stop()
    r = results
    print(f"\n{args.files} web-size JPEGs, {args.model}, {r['cores']} cores (steady / whole run, img/s)")
    for label, key in [("plain indexer", "plain"), ("Ray, 1 node", "ray_1_node"),
                       ("Ray, 2 simulated nodes", "ray_2_nodes")]:
        print(f"{label:<24} {r[key]['steady']:>7.1f} {r[key]['whole']:>7.1f}   vs plain "
              f"{r[key]['steady'] / r['plain']['steady']:.2f}x")
    print(f"catalog writes ({args.rows:,} rows with 512-d vectors): SQLite {r['sqlite_rows_per_s']:,.0f} rows/s, "
          f"PostgreSQL {r['postgres_rows_per_s']:,.0f} rows/s")
    for name in ("sqlite", "postgres"):
        q = r[f"{name}_query"]
        print(f"{name:<9} query: warm p50 {q['warm_p50_ms']:.1f} ms, cold {q['cold_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
