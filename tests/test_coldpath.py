"""The cold query path: a SQLite catalog read with sqlite3 alone gives exactly what the full
(SQLAlchemy) catalog gives, and a cold search imports neither SQLAlchemy nor more than it needs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from searchlib.catalog import Catalog, ChangeSet, QuickCatalog, open_catalog
from searchlib.records import ImageMetadata, ImageRecord


def _records(n: int, rng) -> list[tuple[ImageRecord, np.ndarray]]:
    out = []
    for i in range(n):
        odd = i % 5 == 3
        path = os.fsdecode(b"/photos/caf\xe9/\xff-%d.jpg" % i) if odd else f"/photos/p {i}?#%.jpg"
        meta = ImageMetadata(width=10 + i, height=7 + i, format="JPEG" if i % 2 else "PNG",
                             taken_at=datetime(2020, 1, 1 + i % 28, 12, 30, 15, 123456) if i % 3 else None,
                             camera_make="Canon" if i % 4 == 0 else None, camera_model="EOS" if i % 4 == 0 else None,
                             orientation=6 if i % 7 == 0 else None,
                             gps_lat=48.5 + i / 100 if i % 6 == 0 else None, gps_lon=-2.25 if i % 6 == 0 else None)
        vec = rng.normal(size=16).astype(np.float32)
        vec /= np.linalg.norm(vec)
        out.append((ImageRecord(path, 100 + i, 1_700_000_000_000_000_000 + i, f"hash{i}", meta), vec))
    return out


@pytest.fixture(params=["float32", "float16"])
def filled(tmp_path, request):
    """A catalog with odd paths, EXIF and file dates, GPS, tags, a deleted row and a dtype."""
    path = tmp_path / "catalog.sqlite"
    cat = Catalog(path, create=True)
    cat.set_vector_dtype(request.param)
    applied = cat.apply(ChangeSet(added=_records(40, np.random.default_rng(1))))
    ids = applied.added_ids
    cat.apply(ChangeSet(removed=[ids[5]]))
    cat.replace_tags(["beach", "dog"], [(ids[0], "dog", 0.9), (ids[0], "beach", 0.7), (ids[2], "dog", 0.8)])
    cat.close()
    return path, ids


@pytest.mark.parametrize("read_only", [False, True])
def test_quick_reads_equal_the_full_catalog(filled, read_only):
    path, ids = filled
    quick, full = open_catalog(path, read_only=read_only), Catalog(path, read_only=read_only)
    assert isinstance(quick, QuickCatalog)
    asked = ids + [10_000, -1]  # missing ids are left out by both
    assert quick.images(asked) == full.images(asked)
    assert quick.images([]) == full.images([]) == {}
    got_ids, got = quick.vectors_of(asked)
    want_ids, want = full.vectors_of(asked)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype == np.float32
    for n, seed in [(8, 0), (2048, 0), (8, 3)]:
        np.testing.assert_array_equal(quick.sample_vectors(n, seed), full.sample_vectors(n, seed))
    assert quick.generation() == full.generation() == 3
    assert quick.model_identity() == full.model_identity()
    assert quick.get_setting("vector_dtype") == full.get_setting("vector_dtype")
    assert quick.get_setting("no such key", "x") == "x"
    assert quick.vector_dtype == full.vector_dtype
    # Anything else goes to the full catalog, opened on first use.
    assert quick.count() == full.count() == 39
    quick.close()
    full.close()


def test_an_empty_catalog_reads_alike(tmp_path):
    path = tmp_path / "catalog.sqlite"
    Catalog(path, create=True).close()
    quick, full = open_catalog(path), Catalog(path)
    assert quick.sample_vectors(8).shape == full.sample_vectors(8).shape == (0, 0)
    assert quick.vectors_of([1])[1].shape == full.vectors_of([1])[1].shape
    assert quick.generation() == 0 and quick.model_identity() is None


def test_quick_reads_see_a_writer_commit(filled):
    path, ids = filled
    quick = open_catalog(path)
    assert quick.generation() == 3
    writer = Catalog(path)
    writer.apply(ChangeSet(removed=[ids[0]]))
    assert quick.generation() == 4 and ids[0] not in quick.images([ids[0]])
    writer.close()
    quick.close()


def test_not_a_catalog_fails_as_the_full_catalog_does(tmp_path):
    from searchlib.errors import IndexCorruptError, IndexNotFoundError

    bad = tmp_path / "catalog.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexCorruptError):
        open_catalog(bad)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(IndexNotFoundError):
        open_catalog(empty)


def test_a_damaged_read_goes_through_the_full_catalog_and_its_errors(filled):
    """A quick read that fails in sqlite3 is refused by the full catalog, with its one-line
    searchlib error, never with a raw sqlite3 error."""
    from searchlib.errors import IndexCorruptError

    path, ids = filled
    quick = open_catalog(path)
    assert quick.generation() == 3
    quick.close()
    quick = open_catalog(path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:  # every page but the first (the schema) becomes garbage
        handle.seek(4096)
        handle.write(np.random.default_rng(0).integers(0, 256, size - 4096, dtype=np.uint8).tobytes())
    with pytest.raises(IndexCorruptError, match="damaged"):
        quick.images(ids[:2])
    quick.close()


def test_a_cold_search_imports_no_sqlalchemy(tmp_path):
    """``open_index`` + ``search`` on a SQLite index, in a fresh interpreter: no SQLAlchemy."""
    from searchlib.index import Index

    cat = Catalog(tmp_path / "catalog.sqlite", create=True)
    cat.close()
    index = Index.open(tmp_path)
    assert isinstance(index.catalog, QuickCatalog)
    index.close()
    code = ("import sys, searchlib\n"
            f"index = searchlib.open_index({str(tmp_path)!r})\n"
            "index.generation(); index.identity\n"
            "print(sorted(m for m in ('sqlalchemy', 'faiss', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
