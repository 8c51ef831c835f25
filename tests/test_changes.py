"""Change detection: moves and renames keep their row and vector, copies reuse the vector."""

import os
import shutil

import numpy as np

from searchlib import open_index
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images


def _vectors_by_path(index_dir, catalog=None):
    with open_index(index_dir, catalog=catalog) as index:
        _, ids, vecs = index.catalog.snapshot_vectors()
        paths = {r.id: r.path for r in index.catalog.iter_images()}
        assert index.vectors.ntotal == len(ids)
    return {paths[i]: (i, v) for i, v in zip(ids.tolist(), vecs)}


def test_move_rename_and_copy(tmp_path, catalog_url):
    folder = tmp_path / "p"
    files = write_images(folder, 6)
    idx = tmp_path / "i"
    index_folder(idx, folder, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    before = _vectors_by_path(idx, catalog_url)
    (folder / "sub").mkdir()
    moved = folder / "sub" / "moved.jpg"
    files[0].rename(moved)                              # move into a subfolder
    renamed = folder / "renamed.png"
    files[1].rename(renamed)                            # rename
    copy = folder / "copy.jpg"
    shutil.copy2(files[2], copy)                        # copy
    report = index_folder(idx, folder, device="cpu", workers=1, catalog=catalog_url)
    assert (report.moved, report.added, report.removed, report.updated, report.unchanged) == (2, 1, 0, 0, 4)
    after = _vectors_by_path(idx, catalog_url)
    assert after[str(moved)][0] == before[str(files[0])][0]      # same row id
    assert after[str(renamed)][0] == before[str(files[1])][0]
    np.testing.assert_array_equal(after[str(copy)][1], before[str(files[2])][1])
    assert after[str(copy)][0] != before[str(files[2])][0]
    assert str(files[0]) not in after and len(after) == 7


def test_touch_without_content_change_reuses_vector(tmp_path, catalog_url):
    folder = tmp_path / "p"
    files = write_images(folder, 3)
    idx = tmp_path / "i"
    index_folder(idx, folder, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    before = _vectors_by_path(idx, catalog_url)
    os.utime(files[0], ns=(5, 5_000_000_000))
    report = index_folder(idx, folder, device="cpu", workers=0, catalog=catalog_url)
    assert (report.updated, report.unchanged) == (1, 2)
    after = _vectors_by_path(idx, catalog_url)
    np.testing.assert_array_equal(after[str(files[0])][1], before[str(files[0])][1])


def test_deleted_then_same_bytes_elsewhere_outside_roots_is_a_removal(tmp_path, catalog_url):
    a, b = tmp_path / "a", tmp_path / "b"
    files = write_images(a, 2)
    idx = tmp_path / "i"
    index_folder(idx, a, model=TINY, device="cpu", workers=0, catalog=catalog_url)
    b.mkdir()
    files[0].rename(b / "x.jpg")
    report = index_folder(idx, a, device="cpu", workers=0, catalog=catalog_url)
    assert (report.removed, report.moved) == (1, 0)
