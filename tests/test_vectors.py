import numpy as np

from searchlib.embedding import normalize
from searchlib.vectors import VectorIndex


def _data(n=200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return np.arange(10, 10 + n, dtype=np.int64) * 3, normalize(rng.normal(size=(n, d)))


def test_search_equals_numpy_brute_force():
    ids, vecs = _data()
    vi = VectorIndex.build(16, ids, vecs)
    q = normalize(np.random.default_rng(1).normal(size=(3, 16)))
    scores, got = vi.search(q, 7)
    sims = q @ vecs.T
    for row in range(3):
        order = np.argsort(-sims[row])[:7]
        assert got[row].tolist() == ids[order].tolist()
        np.testing.assert_allclose(scores[row], sims[row][order], atol=1e-5)


def test_remove_and_k_larger_than_count():
    ids, vecs = _data(5)
    vi = VectorIndex.build(16, ids, vecs)
    assert vi.remove(ids[:2]) == 2 and vi.ntotal == 3
    scores, got = vi.search(vecs[:1], 10)
    assert got.shape == (1, 3) and set(got[0].tolist()) == set(ids[2:].tolist())


def test_save_load_checks_stamp_and_survives_corruption(tmp_path):
    ids, vecs = _data(20)
    vi = VectorIndex.build(16, ids, vecs)
    f, stamp = tmp_path / "v.faiss", tmp_path / "v.json"
    vi.save(f, stamp, generation=7)
    assert VectorIndex.load(f, stamp, 7, 20, 16).ntotal == 20
    assert VectorIndex.load(f, stamp, 8, 20, 16) is None  # stale generation
    assert VectorIndex.load(f, stamp, 7, 21, 16) is None  # count differs
    f.write_bytes(f.read_bytes()[:100])
    assert VectorIndex.load(f, stamp, 7, 20, 16) is None  # corrupt file
    stamp.unlink()
    assert VectorIndex.load(f, stamp, 7, 20, 16) is None  # missing stamp
