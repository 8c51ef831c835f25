"""GPU paths; skipped without CUDA (run them on a GPU machine with: python -m pytest -m gpu)."""

import numpy as np
import pytest

from searchlib.embedding import normalize

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gpu_embedding_matches_cpu_within_fp16():
    from searchlib.embedding import Embedder
    from searchlib.models import parse_model_spec

    pixels = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    cpu = Embedder(parse_model_spec("ViT-B-32/random"), device="cpu", backend="torch").embed_pixels(pixels)
    gpu = Embedder(parse_model_spec("ViT-B-32/random"), device="cuda").embed_pixels(pixels)
    assert (cpu * gpu).sum(axis=1).min() > 0.99


def test_faiss_gpu_search_matches_cpu():
    from searchlib.vectors import GPU_MIN_VECTORS, VectorIndex, gpu_count

    if gpu_count() == 0:
        pytest.skip("this faiss build sees no GPU")
    rng = np.random.default_rng(0)
    vecs = normalize(rng.normal(size=(GPU_MIN_VECTORS + 1000, 64)))
    ids = np.arange(len(vecs), dtype=np.int64)
    vi = VectorIndex.build(64, ids, vecs)
    q = vecs[:20]
    _, got = vi.search(q, 10)
    assert vi._gpu_index is not None and vi._gpu_index is not vi.index
    truth = np.argsort(-(q @ vecs.T), axis=1)[:, :10]
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(ids[truth], axis=1))
