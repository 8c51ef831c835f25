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


def test_quick_place_names_equal_the_full_catalog(filled):
    """A query with "in / at / near ..." reads the index's places: through sqlite3 on a search,
    the same places as the full catalog's."""
    path, ids = filled
    places = [("Paris", "Île-de-France", "France", "FR"), (None, "Bretagne", "France", "FR"),
              ("São Paulo", None, "Brazil", "BR"), ("Paris", "Texas", "United States", "US")]
    with sqlite3.connect(path) as conn:
        for image_id, place in zip(ids[::3], places * 4):
            conn.execute("UPDATE images SET place_city = ?, place_region = ?, place_country = ?, "
                         "place_country_code = ? WHERE id = ?", (*place, image_id))
    quick, full = open_catalog(path, read_only=True), Catalog(path, read_only=True)
    got, want = quick.place_names(), full.place_names()
    for name in ("Paris", "paris", "Île-de-France", "ile de france", "Bretagne", "France", "FR", "Sao Paulo",
                 "Brazil", "Texas", "United States", "US", "Tokyo", "", "x"):
        assert got.matching(name) == want.matching(name), name
    assert got.holds("sao paulo") and not got.holds("Tokyo")
    assert not quick.full_is_open  # answered without opening the full catalog
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


def _open_files(path) -> int:
    """How many of this process's descriptors are open on ``path`` or its -wal/-shm files."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    return sum(os.readlink(f"/proc/self/fd/{fd}") in names for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_reads_from_threads_that_end_leave_no_connections_open(filled):
    """A server's pool threads come and go, and a search loads vectors in a thread of its own: each
    ended thread's connection is closed (the soak found two descriptors leaked per search)."""
    import threading

    path, ids = filled
    quick = open_catalog(path)
    quick.generation()
    held = _open_files(path)
    for _ in range(60):
        t = threading.Thread(target=lambda: (quick.generation(), quick.images(ids[:3])))
        t.start()
        t.join()
    assert _open_files(path) <= held + 3  # the last ended thread's connection, closed by the next one
    assert quick.images(ids[:1])  # the calling thread's own connection still works
    quick.close()
    assert _open_files(path) == 0


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


# -- the flat scan without FAISS ------------------------------------------------------------------
def _unit(rng, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _saved_flat(tmp_path, n: int = 300, dim: int = 32):
    from searchlib.vectors import VectorIndex

    rng = np.random.default_rng(7)
    ids = rng.permutation(np.arange(5, 5 + 3 * n, 3))  # sparse, not in row order
    vectors = _unit(rng, n, dim)
    stamp = VectorIndex.build(dim, ids, vectors, "Flat").save(tmp_path / "v.faiss", tmp_path / "v.json", 1)
    return ids, vectors, stamp


def test_a_saved_flat_file_reads_back_exactly(tmp_path):
    from searchlib.flatscan import read_flat_file

    ids, vectors, stamp = _saved_flat(tmp_path)
    got_ids, got = read_flat_file(tmp_path / "v.faiss", stamp)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, vectors)
    assert got.flags.aligned and got.flags.c_contiguous


def test_flat_scan_finds_what_brute_force_and_faiss_find(tmp_path):
    import faiss

    from searchlib.flatscan import FlatScanIndex

    ids, vectors, stamp = _saved_flat(tmp_path)
    scan = FlatScanIndex.read(tmp_path / "v.faiss", stamp)
    assert scan is not None and scan.ntotal == len(ids) and scan.exact
    reference = faiss.IndexFlatIP(vectors.shape[1])
    reference.add(vectors)
    queries = _unit(np.random.default_rng(8), 5, vectors.shape[1])
    for k in (1, 10, len(ids), len(ids) + 50):
        scores, got = scan.search(queries, k)
        sims = queries @ vectors.T
        truth = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(got, ids[truth])
        np.testing.assert_allclose(scores, np.take_along_axis(sims, truth, axis=1), atol=1e-6)
        faiss_scores, faiss_rows = reference.search(queries, min(k, len(ids)))
        np.testing.assert_array_equal(got, ids[faiss_rows])
        np.testing.assert_allclose(scores, faiss_scores, atol=1e-5)
    allowed = np.sort(ids[::7])
    scores, got = scan.search_subset(queries, 10, np.concatenate([allowed, [10**9]]))
    inside = np.isin(ids, allowed)
    sims = queries @ vectors[inside].T
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(got, ids[inside][truth])


def test_equal_scores_come_out_as_faiss_orders_them():
    import faiss

    from searchlib.vectormath import top_k_inner_product

    v = _unit(np.random.default_rng(0), 6, 8)
    base = np.concatenate([v, v, v])  # every vector three times, under different ids
    ids = np.array([50, 40, 30, 20, 10, 0, 5, 15, 25, 35, 45, 55, 1, 2, 3, 4, 6, 7])
    reference = faiss.IndexIDMap2(faiss.IndexFlatIP(8))
    reference.add_with_ids(base, ids)
    queries = v[:3] + 0.01
    np.testing.assert_array_equal(top_k_inner_product(queries, base, ids, 3)[1], reference.search(queries, 3)[1])


def test_a_damaged_or_foreign_flat_file_is_not_read(tmp_path):
    from dataclasses import replace

    from searchlib.flatscan import FlatScanIndex, read_flat_file

    ids, vectors, stamp = _saved_flat(tmp_path)
    path = tmp_path / "v.faiss"
    data = bytearray(path.read_bytes())
    data[200] ^= 0x40
    path.write_bytes(bytes(data))
    assert read_flat_file(path, stamp) is None  # the checksum
    assert read_flat_file(path, replace(stamp, checksum="")) is not None  # the layout alone still reads
    assert FlatScanIndex.read(path, replace(stamp, index_type="HNSW32")) is None
    path.write_bytes(bytes(data[:-8]))
    assert read_flat_file(path, replace(stamp, checksum="", file_size=0)) is None  # truncated
    (tmp_path / "gone.faiss").unlink(missing_ok=True)
    assert read_flat_file(tmp_path / "gone.faiss", stamp) is None


def test_the_flat_file_is_hashed_once_then_again_only_after_a_change(tmp_path, monkeypatch):
    """The numpy reader checks the checksum over the bytes it reads, remembers the match for this
    file as it stands, trusts it while the file is unchanged, and hashes a changed file again."""
    from searchlib import checked
    from searchlib.flatscan import read_flat_file

    monkeypatch.setenv("SEARCHLIB_CACHE", str(tmp_path / "cache"))
    ids, vectors, stamp = _saved_flat(tmp_path)
    path = tmp_path / "v.faiss"
    assert not checked.known_match(path, stamp.checksum, os.stat(path))
    assert read_flat_file(path, stamp) is not None
    assert checked.known_match(path, stamp.checksum, os.stat(path))
    got_ids, got = read_flat_file(path, stamp)  # trusted: read without hashing, same arrays
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, vectors)
    data = bytearray(path.read_bytes())
    data[300] ^= 0x01  # same size, one bit: a write all the same (mtime, ctime)
    with open(path, "r+b") as handle:
        handle.write(bytes(data))
    assert not checked.known_match(path, stamp.checksum, os.stat(path))
    assert read_flat_file(path, stamp) is None


def test_a_large_flat_index_is_scanned_with_numpy_unless_a_gpu_would_search_it(tmp_path, monkeypatch):
    """Collections of GPU size go to FAISS only where an NVIDIA GPU is present (it makes the GPU
    copy); elsewhere numpy scans them too, and finds what brute force finds."""
    import searchlib.embedding
    from searchlib.flatscan import FlatScanIndex
    from searchlib.vectors import GPU_MIN_VECTORS

    ids, vectors, stamp = _saved_flat(tmp_path, n=GPU_MIN_VECTORS + 10, dim=8)
    path = tmp_path / "v.faiss"
    monkeypatch.setattr(searchlib.embedding, "gpu_device_present", lambda: False)
    scan = FlatScanIndex.read(path, stamp)
    assert scan is not None and scan.ntotal == len(ids)
    query = _unit(np.random.default_rng(3), 1, 8)
    sims = (vectors @ query[0])
    truth = np.argsort(-sims, kind="stable")[:10]
    np.testing.assert_array_equal(scan.search(query, 10)[1][0], ids[truth])
    monkeypatch.setattr(searchlib.embedding, "gpu_device_present", lambda: True)
    assert FlatScanIndex.read(path, stamp) is None
    monkeypatch.setenv("SEARCHLIB_FAISS_GPU", "0")  # FAISS told to keep off the GPU: numpy again
    assert FlatScanIndex.read(path, stamp) is not None


def test_clean_text_skips_ftfy_only_where_ftfy_changes_nothing():
    import string

    import ftfy

    from searchlib.tokenizing import clean_text

    rng = np.random.default_rng(3)
    alphabet = list(string.printable) + ["&amp;", "&lt;", "\x1b[31m", "\r\n", "é", "ﬁ", "“", "Ã©", "\u00a0"]
    texts = ["a dog on a beach", "Two DOGS!! (at sunset)", "tom &amp; jerry", "C:\\path\\x.jpg", ""]
    texts += ["".join(rng.choice(alphabet, size=int(rng.integers(1, 40)))) for _ in range(2000)]
    for text in texts:
        for kind in ("lower", "whitespace", "canonicalize"):
            fixed = ftfy.fix_text(text)
            import html

            expected = html.unescape(html.unescape(fixed)).strip()
            expected = {"canonicalize": lambda t: t.replace("_", " ").translate(
                str.maketrans("", "", string.punctuation)).lower(), "lower": str.lower}.get(kind, lambda t: t)(expected)
            assert clean_text(text, kind) == " ".join(expected.split()).strip(), repr(text)


def test_a_cold_search_in_a_new_process_gives_the_regular_hits_without_faiss(images_dir, index_dir):
    """The console script on a fresh process (numpy flat scan, sqlite3 reads) returns the hits the
    regular path returns (FAISS, SQLAlchemy) and numpy brute force over the stored vectors finds."""
    import json
    from pathlib import Path

    from searchlib import open_index
    from searchlib.indexer import index_folder
    from searchlib.vectors import VectorIndex
    from tests.conftest import TINY

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    code = ("import sys, json\n"
            "from searchlib.cli.main import main\n"
            f"sys.argv = ['searchlib', '--index', {str(index_dir)!r}, 'search', 'a red circle', '-k', '5', '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in ('sqlalchemy', 'faiss', 'torch', 'ftfy') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    hits_json, imported = out.strip().rsplit("\n", 1)
    assert json.loads(imported) == []
    cold = json.loads(hits_json)
    with open_index(index_dir) as index:
        full = Catalog(index_dir / "catalog.sqlite")
        regular = VectorIndex.build(index.identity.dim, *full.snapshot_vectors()[1:])
        vector = index.query_vector("a red circle")
        _, want_ids = regular.index.search(vector[None], 5)  # FAISS itself
        ids, vectors = full.vectors_of(want_ids[0].tolist() + [h["id"] for h in cold])
        all_ids, all_vectors = full.snapshot_vectors()[1:]
        brute = all_ids[np.argsort(-(all_vectors @ vector), kind="stable")[:5]]
        full.close()
    assert [h["id"] for h in cold] == want_ids[0].tolist() == brute.tolist()
    assert [Path(h["path"]).parent for h in cold] == [images_dir] * 5


# -- the query vector cache -----------------------------------------------------------------------
def test_a_repeated_query_loads_no_encoder_and_gets_the_same_vector(images_dir, index_dir):
    from searchlib import open_index
    from searchlib.indexer import index_folder
    from searchlib.querycache import CACHE_FILE
    from tests.conftest import TINY

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    with open_index(index_dir) as index:
        fresh = index.text_encoder().embed_texts(["a red circle", "a blue star"])
        first = index.search("a red circle", k=5)
    assert (index_dir / CACHE_FILE).is_file()
    code = ("import sys, json, searchlib\n"
            f"with searchlib.open_index({str(index_dir)!r}) as index:\n"
            "    v = index.embed_texts(['a red circle'])\n"
            "    hits = index.search('a red circle', k=5)\n"
            "print(v.tobytes().hex())\n"
            "print(json.dumps([[h.id, h.score, h.relevance] for h in hits]))\n"
            "print('onnxruntime' in sys.modules)\n")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert bytes.fromhex(lines[0]) == fresh[:1].tobytes()  # bit for bit what the encoder made
    import json

    assert json.loads(lines[1]) == [[h.id, h.score, h.relevance] for h in first]
    assert lines[2] == "False"


def test_cached_vectors_belong_to_the_encoder_that_made_them(tmp_path):
    from searchlib.querycache import QueryVectorCache

    cache = QueryVectorCache(tmp_path)
    v = np.arange(8, dtype=np.float32)
    cache.store("onnx:xxh3_128:aa", ["a dog", "a cat"], np.stack([v, v + 1]))
    cache.close()
    again = QueryVectorCache(tmp_path)
    assert set(again.lookup("onnx:xxh3_128:aa", ["a dog", "a cat", "a cow"])) == {"a dog", "a cat"}
    np.testing.assert_array_equal(again.lookup("onnx:xxh3_128:aa", ["a cat"])["a cat"], v + 1)
    assert again.lookup("onnx:xxh3_128:bb", ["a dog"]) == {}  # another export: encoded again
    assert again.lookup("model:x", ["a dog"]) == {}


def test_the_cache_keeps_the_latest_entries_only(tmp_path, monkeypatch):
    from searchlib import querycache

    monkeypatch.setattr(querycache, "MAX_ENTRIES", 5)
    cache = querycache.QueryVectorCache(tmp_path)
    for i in range(12):
        cache.store("k", [f"text {i}"], np.full((1, 4), i, dtype=np.float32))
    cache.close()
    rows = sqlite3.connect(tmp_path / querycache.CACHE_FILE).execute("SELECT text FROM vectors").fetchall()
    assert {r[0] for r in rows} == {f"text {i}" for i in range(7, 12)}
    assert set(querycache.QueryVectorCache(tmp_path).lookup("k", ["text 3", "text 11"])) == {"text 11"}


def test_a_damaged_or_unwritable_cache_is_left_alone(images_dir, index_dir):
    from searchlib import open_index
    from searchlib.indexer import index_folder
    from searchlib.querycache import CACHE_FILE
    from tests.conftest import TINY

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    with open_index(index_dir) as index:
        want = [h.id for h in index.search("a red circle", k=3)]
    (index_dir / CACHE_FILE).write_bytes(b"garbage" * 1000)
    with open_index(index_dir) as index:
        assert [h.id for h in index.search("a red circle", k=3)] == want
        assert [h.id for h in index.search("a red circle", k=3)] == want  # from memory now
    (index_dir / CACHE_FILE).unlink()
    (index_dir / CACHE_FILE).mkdir()  # cannot be opened as a database at all
    with open_index(index_dir) as index:
        assert [h.id for h in index.search("a red circle", k=3)] == want


def test_a_reader_on_the_numpy_scan_catches_up_with_a_writer(images_dir, index_dir):
    """A reader that loaded the flat file into numpy follows another writer's commits (the change
    log is replayed into a FAISS copy) and still finds what brute force finds."""
    from searchlib import open_index
    from searchlib.flatscan import FlatScanIndex
    from searchlib.indexer import index_folder
    from tests.conftest import TINY

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    with open_index(index_dir) as reader, open_index(index_dir) as writer:
        assert isinstance(reader.vectors, FlatScanIndex)
        vector = reader.query_vector("a red circle")
        first = reader.search(vector, k=3)
        assert writer.remove([first[0].path]) == 1
        after = reader.search(vector, k=3)
        ids, vectors = Catalog(index_dir / "catalog.sqlite").vectors_of(range(1, 10_000))
        brute = ids[np.argsort(-(vectors @ vector), kind="stable")[:3]]
        assert [h.id for h in after] == brute.tolist() and first[0].id not in brute.tolist()
        assert not isinstance(reader.vectors, FlatScanIndex)  # the replay went to FAISS


def test_a_query_with_undecodable_bytes_is_encoded_not_cached(images_dir, index_dir):
    """A command line's bytes that are not UTF-8 arrive as surrogates, which SQLite cannot hold:
    the query is answered (as before the cache) and simply not cached."""
    from searchlib import open_index
    from searchlib.indexer import index_folder
    from tests.conftest import TINY

    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    odd = os.fsdecode(b"\xff\xfe dog")
    with open_index(index_dir) as index:
        assert len(index.search(odd, k=2)) == 2
        assert len(index.search(odd + " " * 2000, k=2)) == 2  # too long to keep
    exe = os.path.join(os.path.dirname(sys.executable), "searchlib")
    done = subprocess.run([exe, "--index", str(index_dir), "search", os.fsencode(odd), "-k", "1"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr


def test_an_index_path_with_url_characters_opens_on_every_path(tmp_path):
    """'?', '#', '%' and spaces in the index's path are part of its name for the full catalog (read
    and write, and read-only) as for the quick one; they once cut SQLAlchemy's URL short."""
    folder = tmp_path / "what? #1 100%20 done"
    folder.mkdir()
    path = folder / "catalog.sqlite"
    cat = Catalog(path, create=True)
    ids = cat.apply(ChangeSet(added=_records(5, np.random.default_rng(2)))).added_ids
    cat.close()
    assert sorted(os.listdir(folder))[0] == "catalog.sqlite" and not (tmp_path / "what").exists()
    for read_only in (False, True):
        full = Catalog(path, read_only=read_only)
        assert full.count() == 5 and sorted(full.images(ids)) == sorted(ids)
        full.close()
        quick = open_catalog(path, read_only=read_only)
        assert quick.generation() == 1 and quick.count() == 5
        quick.close()
