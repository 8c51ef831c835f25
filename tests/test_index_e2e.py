"""End to end: index generated images with a tiny model, then check search against numpy."""

import os

import numpy as np
import pytest

from searchlib import open_index
from searchlib.config import VECTORS_FILE
from searchlib.errors import IndexNotFoundError, ModelMismatchError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images


def _brute_force(index, text, k):
    gen, ids, vecs = index.catalog.snapshot_vectors()
    q = index.embed_texts([text])[0]
    sims = vecs @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return ids[order].tolist(), sims[order]


def test_search_equals_brute_force_over_stored_vectors(images_dir, index_dir, catalog_url):
    report = index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    assert (report.added, report.failed) == (12, 0)
    with open_index(index_dir, catalog=catalog_url) as index:
        _, _, vecs = index.catalog.snapshot_vectors()
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        for text in ["a red circle", "two dogs on a beach", "sunset"]:
            hits = index.search(text, k=5)
            ids, scores = _brute_force(index, text, 5)
            assert [h.id for h in hits] == ids
            np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
            assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
            assert all(os.path.isabs(h.path) and h.metadata["width"] == 64 for h in hits)


def test_rerun_skips_unchanged_updates_changed_removes_gone(images_dir, index_dir, catalog_url):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    files = sorted(images_dir.iterdir())
    files[0].unlink()
    write_images(images_dir / "sub", 2, seed=5)
    # New content and mtime: must be re-embedded under the same id.
    write_images(images_dir / "tmp", 1, seed=9)[0].replace(files[1].with_suffix(".png"))
    (images_dir / "tmp").rmdir()
    os.utime(files[1], ns=(1, 1_000_000_000))
    report = index_folder(index_dir, images_dir, device="cpu", workers=0, catalog=catalog_url)
    assert (report.added, report.updated, report.removed, report.unchanged) == (2, 1, 1, 10)
    with open_index(index_dir, catalog=catalog_url) as index:
        info = index.info()
        assert info["images"] == info["vectors"] == 13
        paths = {im["path"] for im in index.images()}
    assert str(files[0]) not in paths and str(files[1]) in paths


def test_removal_only_inside_the_given_roots(tmp_path, index_dir, catalog_url):
    a, b = tmp_path / "a", tmp_path / "b"
    write_images(a, 3, seed=1)
    write_images(b, 3, seed=2)
    index_folder(index_dir, a, b, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    report = index_folder(index_dir, a, device="cpu", workers=0, catalog=catalog_url)
    assert (report.removed, report.unchanged) == (0, 3)


def test_faiss_file_is_rebuilt_when_missing_or_corrupt(images_dir, index_dir):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    with open_index(index_dir) as index:
        before = [h.id for h in index.search("x", k=12)]
    (index_dir / VECTORS_FILE).write_bytes(b"garbage")
    with open_index(index_dir) as index:
        assert [h.id for h in index.search("x", k=12)] == before
    (index_dir / VECTORS_FILE).unlink()
    with open_index(index_dir) as index:
        assert index.vectors.ntotal == 12
    assert (index_dir / VECTORS_FILE).stat().st_size > 1000  # rebuilt file was saved


def test_model_mismatch_names_both_models(images_dir, index_dir, catalog_url):
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    with pytest.raises(ModelMismatchError, match="searchlib-tiny/random.*ViT-B-32/random"):
        index_folder(index_dir, images_dir, model="ViT-B-32/random", device="cpu", workers=0, catalog=catalog_url)


def test_open_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no index at"):
        open_index(tmp_path / "nothing")


def test_worker_processes_give_the_same_vectors(images_dir, tmp_path):
    index_folder(tmp_path / "i0", images_dir, model=TINY, device="cpu", workers=0)
    index_folder(tmp_path / "i2", images_dir, model=TINY, device="cpu", workers=2)
    with open_index(tmp_path / "i0") as a, open_index(tmp_path / "i2") as b:
        ga, ia, xa = a.catalog.snapshot_vectors()
        gb, ib, xb = b.catalog.snapshot_vectors()
        pa = {r.id: r.path for r in a.catalog.iter_images()}
        pb = {r.id: r.path for r in b.catalog.iter_images()}
    by_path_a = {pa[i]: v for i, v in zip(ia.tolist(), xa)}
    by_path_b = {pb[i]: v for i, v in zip(ib.tolist(), xb)}
    assert by_path_a.keys() == by_path_b.keys()
    for p in by_path_a:
        np.testing.assert_allclose(by_path_a[p], by_path_b[p], atol=1e-6)
