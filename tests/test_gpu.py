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


def _photos(folder, count=24):
    from tests.test_device_decode import smooth_jpeg

    folder.mkdir()
    for i in range(count):
        size = [(640, 480), (480, 640), (1200, 900)][i % 3]
        (folder / f"{i:02d}.jpg").write_bytes(smooth_jpeg(*size, seed=i, orientation=(i % 8) + 1))
    return folder


def test_nvjpeg_decoder_matches_pillow(tmp_path):
    from searchlib.devicedecode import DeviceJpegDecoder, device_jpeg_available
    from searchlib.imaging import Preprocess, decode_for_model

    assert device_jpeg_available("cuda")
    folder = _photos(tmp_path / "p")
    datas = [p.read_bytes() for p in sorted(folder.iterdir())]
    orientations = [(i % 8) + 1 for i in range(len(datas))]
    prep = Preprocess(224)
    result = DeviceJpegDecoder(prep, "cuda").decode(datas, orientations)
    assert result.ok == list(range(len(datas))) and result.pixels.is_cuda
    got = result.pixels.cpu().numpy().astype(int)
    ref = np.stack([decode_for_model(d, prep, reduce=False)[0] for d in datas]).astype(int)
    assert np.abs(got - ref).mean() < 1.0


def test_gpu_indexing_split_matches_cpu_indexing(tmp_path):
    from searchlib import open_index
    from searchlib.indexer import index_folder

    folder = _photos(tmp_path / "p", 48)

    def vectors(index_dir):
        index = open_index(index_dir)
        try:
            _, ids, vecs = index.catalog.snapshot_vectors()
            rows = index.catalog.images([int(i) for i in ids])
            return {rows[int(i)].path: v for i, v in zip(ids, vecs)}
        finally:
            index.close()

    cpu = index_folder(tmp_path / "cpu", folder, model="bundled", device="cpu", jpeg_decoder="cpu")
    for mode in ("split", "device"):
        gpu = index_folder(tmp_path / mode, folder, model="bundled", device="cuda", jpeg_decoder=mode)
        assert gpu.added == cpu.added == 48 and gpu.failed == 0
        assert gpu.device_decoded > 0
        a, b = vectors(tmp_path / "cpu"), vectors(tmp_path / mode)
        assert min(float(a[p] @ b[p]) for p in a) > 0.99
