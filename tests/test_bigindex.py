"""Big collections within a memory budget, at small sizes with tiny budgets so that every branch
runs: type transitions, on-disk PQ lists, re-ranking, filters, incremental adds, float16 storage.
Results are checked against numpy brute force over the stored vectors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from searchlib import Filters, open_index
from searchlib.catalog import ChangeSet
from searchlib.index import Index
from searchlib.models import ModelIdentity
from searchlib.records import ImageMetadata, ImageRecord
from searchlib.vectormath import normalize

DIM = 32
IDENTITY = ModelIdentity(name="test/random", arch="test", pretrained="random", checkpoint=None, weights_sha256=None,
                         dim=DIM, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic",
                         resize_mode="shortest")


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """Hard synthetic data: a 12-dimensional subspace plus noise, heavily overlapping clusters."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(DIM, 12)))[0].T
    centers = rng.normal(size=(40, 12))
    low = centers[rng.integers(0, 40, n)] + rng.normal(scale=1.2, size=(n, 12))
    return normalize(low @ basis + rng.normal(scale=0.35, size=(n, DIM)))


def add(index: Index, vecs: np.ndarray, start: int, folder: str = "p") -> list[int]:
    ids = []
    with index.writer() as writer:
        for s in range(0, len(vecs), 2000):
            batch = [(ImageRecord(f"/{folder}/{start + i}.jpg", 10, 10, f"{start + i:064x}",
                                  ImageMetadata(width=640 if (start + i) % 3 else 320, height=480, format="JPEG")),
                      vecs[i]) for i in range(s, min(len(vecs), s + 2000))]
            ids += writer.apply(ChangeSet(added=batch, identity=IDENTITY if index.identity is None else None)).added_ids
        writer.finish()
    return ids


def brute(index: Index, queries: np.ndarray, k: int, allowed=None) -> np.ndarray:
    _, ids, stored = index.catalog.snapshot_vectors()
    if allowed is not None:
        keep = np.isin(ids, allowed)
        ids, stored = ids[keep], stored[keep]
    return ids[np.argsort(-(queries @ stored.T), axis=1, kind="stable")[:, :k]]


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / truth.shape[1] for g, t in zip(got, truth)]))


@pytest.fixture(scope="module")
def big_template(tmp_path_factory):
    """12,000 vectors under a 300 KB budget: compressed codes on disk. Built once per module;
    each test gets its own copy of the directory (training the PQ codes is the slow part)."""
    directory = tmp_path_factory.mktemp("big") / "i"
    index = Index.open_or_create(directory)
    with index.writer() as writer:
        writer.configure(max_index_memory=300_000)
    vecs = vectors(12_000)
    add(index, vecs, 0)
    index.close()
    return directory, vecs


@pytest.fixture
def big(big_template, tmp_path):
    template, vecs = big_template
    shutil.copytree(template, tmp_path / "i")
    index = open_index(tmp_path / "i")
    yield index, vecs
    index.close()


def test_the_budget_picks_flat_then_ivf_then_pq(tmp_path):
    index = Index.open_or_create(tmp_path / "i")
    with index.writer() as writer:
        writer.configure(max_index_memory=300_000)
    vecs = vectors(12_000, seed=3)
    add(index, vecs[:1000], 0)
    assert index.vectors.index_type == "Flat"  # 1000 x 136 bytes fit
    add(index, vecs[1000:3000], 1000)
    assert index.vectors.index_type == "IVF64,Flat"  # over the budget, too few vectors for PQ
    add(index, vecs[3000:], 3000)
    info = index.info()
    assert info["index_type"].startswith("OPQ") and ",IVF128_HNSW32,PQ" in info["index_type"]
    assert info["on_disk"] and info["memory"]["budget_bytes"] == 300_000 and info["rerank"] == 100
    assert list((tmp_path / "i").glob("vectors.*.ivfdata"))
    index.close()


def test_rerank_raises_recall_and_searches_agree_with_brute_force(big):
    index, vecs = big
    rng = np.random.default_rng(9)
    queries = normalize(vecs[rng.choice(len(vecs), 60, replace=False)] + rng.normal(scale=0.1, size=(60, DIM)))
    truth = brute(index, queries, 10)
    plain = np.array([[h.id for h in index.search(q, k=10, rerank=0)] for q in queries])
    reranked = np.array([[h.id for h in index.search(q, k=10)] for q in queries])
    info = index.info()
    assert recall(reranked, truth) >= 0.9 and recall(reranked, truth) > recall(plain, truth)
    assert info["recall_at_10_rerank"] >= 0.9  # tuned at build time on held-out queries
    hit = index.search(queries[0], k=1)[0]
    assert hit.score == pytest.approx(float(index.vector_of(hit.id) @ queries[0]), abs=1e-5)  # exact scores


def test_filters_on_a_pq_index_return_k_matching_hits(big):
    index, _ = big
    flt = Filters(min_width=600)  # two thirds of the images
    allowed = index.catalog.filtered_ids(flt)
    q = vectors(1, seed=11)[0]
    hits = index.search(q, k=15, filters=flt)
    assert len(hits) == 15 and all(h.metadata["width"] >= 600 for h in hits)
    assert recall(np.array([[h.id for h in hits]]), brute(index, q[None], 15, allowed)) >= 0.8
    few = Filters(folder="/nowhere")
    assert index.search(q, k=5, filters=few) == []


def test_incremental_adds_go_into_the_existing_lists_until_the_collection_doubles(big):
    index, vecs = big
    before = index.vectors
    trained, factory = before.trained_count, before.index_type
    more = vectors(3000, seed=5)
    new_ids = add(index, more, 100_000, folder="more")
    after = index.vectors
    assert after.index_type == factory and after.trained_count == trained  # no retraining
    assert after.delta.ntotal == 3000 and after.ntotal == 15_000
    for i in (0, 1500, 2999):
        assert index.search(more[i], k=1)[0].id == new_ids[i]
    # Removed and changed vectors disappear from the base (tombstones), everywhere.
    victim = index.search(vecs[7], k=1)[0].id
    assert index.remove([index.image(victim).path]) == 1
    assert victim not in [h.id for h in index.search(vecs[7], k=20)]
    with open_index(index.directory) as fresh:  # reloaded from disk: base, delta and tombstones
        assert fresh.vectors.ntotal == 14_999 and fresh.vectors.delta.ntotal == 3000
        assert victim not in [h.id for h in fresh.search(vecs[7], k=20)]
    add(index, vectors(10_000, seed=6), 200_000, folder="even-more")  # now more than doubled
    rebuilt = index.vectors
    assert rebuilt.trained_count == 24_999 and rebuilt.delta.ntotal == 0


def test_a_moved_index_directory_still_opens_its_lists(big, tmp_path):
    index, vecs = big
    expected = [h.id for h in index.search(vecs[3], k=5)]
    index.close()
    shutil.move(str(index.directory), str(tmp_path / "moved"))
    with open_index(tmp_path / "moved") as moved:
        assert type(moved.vectors).__name__ == "OnDiskIndex"
        assert [h.id for h in moved.search(vecs[3], k=5)] == expected


def test_another_process_sees_changes_through_the_change_log(big):
    index, _ = big
    reader = open_index(index.directory)
    assert reader.vectors.ntotal == 12_000
    more = vectors(50, seed=8)
    ids = add(index, more, 300_000, folder="late")
    assert reader.vectors.ntotal == 12_050 and reader.search(more[10], k=1)[0].id == ids[10]
    reader.close()


def test_float16_storage_keeps_scores_and_rankings(tmp_path):
    vecs = vectors(3000, seed=2)
    half = Index.open_or_create(tmp_path / "half")
    with half.writer() as writer:
        writer.configure(vector_dtype="float16")
    add(half, vecs, 0)
    full = Index.open_or_create(tmp_path / "full")
    add(full, vecs, 0)
    queries = vectors(30, seed=4)
    _, _, stored = half.catalog.snapshot_vectors()
    cosine_error = np.abs((queries @ stored.T) - (queries @ vecs.T)).max()
    assert cosine_error < 2e-3
    agree = recall(np.array([[h.id for h in half.search(q, k=10)] for q in queries]),
                   np.array([[h.id for h in full.search(q, k=10)] for q in queries]))
    assert agree >= 0.95 and half.info()["vector_dtype"] == "float16"
    with pytest.raises(Exception, match="float16 vectors"):
        with half.writer() as writer:
            writer.configure(vector_dtype="float32")
    half.close()
    full.close()


def test_budget_option_parsing_and_the_cli_info(big):
    from click.testing import CliRunner

    from searchlib.cli.main import main
    from searchlib.indexplan import parse_size

    assert parse_size("2GiB") == 2 << 30 and parse_size("1.5GB") == 1_500_000_000 and parse_size(4096) == 4096
    index, _ = big
    out = CliRunner().invoke(main, ["--index", str(index.directory), "info"]).stdout
    assert "codes on disk, memory-mapped" in out and "re-ranking the best 100" in out
    bad = CliRunner().invoke(main, ["--index", str(index.directory), "index", str(index.directory),
                                    "--max-index-memory", "lots"])
    assert bad.exit_code == 1 and "cannot read size" in bad.stderr
