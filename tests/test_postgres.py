"""A PostgreSQL catalog with writers and readers in several processes (a real server, started by
the test suite): concurrent indexers, no duplicate rows, readers during writes, per-machine FAISS
caches that catch up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.errors import IndexBusyError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images

INDEXER = """
import os, sys
from searchlib.indexer import index_folder
r = index_folder(sys.argv[1], *sys.argv[2:], model=os.environ["MODEL"], device="cpu", workers=1, batch_size=4,
                 commit_seconds=0.05, catalog=os.environ["CATALOG"])
print("DONE", r.added, r.updated, r.unchanged, flush=True)
"""


def _spawn(cache_dir, catalog: str, *folders):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "MODEL": TINY, "CATALOG": catalog}
    return subprocess.Popen([sys.executable, "-c", INDEXER, str(cache_dir), *map(str, folders)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(catalog: str, cache_dir) -> list[str]:
    with open_index(cache_dir, catalog=catalog) as index:
        return [im["path"] for im in index.images()]


def test_two_indexers_on_different_folders_both_land(postgres, tmp_path):
    url = postgres.new_database()
    a = write_images(tmp_path / "a", 40, seed=1)
    b = write_images(tmp_path / "b", 40, seed=2)
    index_folder(tmp_path / "cache", a[0], model=TINY, device="cpu", workers=0, catalog=url)  # a model for both
    procs = [_spawn(tmp_path / "cache", url, tmp_path / "a"), _spawn(tmp_path / "cache-2", url, tmp_path / "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = _rows(url, tmp_path / "cache")
    assert sorted(paths) == sorted(map(str, a + b)) and len(paths) == len(set(paths))


def test_overlapping_indexers_never_duplicate_a_row_and_the_same_folder_is_busy(postgres, tmp_path):
    url = postgres.new_database()
    files = write_images(tmp_path / "p", 30, seed=3) + write_images(tmp_path / "p" / "sub", 30, seed=4)
    index_folder(tmp_path / "cache", files[0], model=TINY, device="cpu", workers=0, catalog=url)
    procs = [_spawn(tmp_path / "c1", url, tmp_path / "p"), _spawn(tmp_path / "c2", url, tmp_path / "p" / "sub")]
    # The same folder as a running indexer: refused at once.
    time.sleep(0.5)
    busy = _spawn(tmp_path / "c3", url, tmp_path / "p")
    outs = [p.communicate(timeout=300) for p in procs]
    busy_out = busy.communicate(timeout=300)
    assert all(p.returncode == 0 for p in procs), outs
    assert busy.returncode == 0 or "is indexing" in busy_out[1], busy_out
    paths = _rows(url, tmp_path / "cache")
    assert len(paths) == len(set(paths)) == 60 and sorted(paths) == sorted(map(str, files))


def test_the_same_folder_twice_is_refused_in_process(postgres, tmp_path):
    url = postgres.new_database()
    write_images(tmp_path / "p", 2)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0, catalog=url)
    with open_index(tmp_path / "i", catalog=url) as index:
        with index.writer([str(tmp_path / "p")]):
            try:
                index_folder(tmp_path / "i2", tmp_path / "p", device="cpu", workers=0, catalog=url)
            except IndexBusyError as e:
                assert str(tmp_path / "p") in str(e)
            else:
                raise AssertionError("a second writer on the same folder was let in")


def test_readers_search_while_writers_write_and_caches_catch_up(postgres, tmp_path):
    url = postgres.new_database()
    write_images(tmp_path / "p", 4, seed=5)
    index_folder(tmp_path / "writer-cache", tmp_path / "p", model=TINY, device="cpu", workers=0, catalog=url)
    write_images(tmp_path / "p" / "more", 150, seed=6, size=(40, 30))
    proc = _spawn(tmp_path / "writer-cache", url, tmp_path / "p")
    seen = []
    reader = open_index(tmp_path / "reader-cache", catalog=url)  # another machine's cache directory
    try:
        while proc.poll() is None:
            info = reader.info()
            hits = reader.search("a photo", k=5)
            seen.append(info["images"])
            assert info["vectors"] == info["images"] or info["vectors"] <= info["images"]
            # info's vectors are a snapshot taken before the search, which may have caught up since
            assert min(5, info["vectors"]) <= len(hits) <= 5
            time.sleep(0.05)
        assert proc.returncode == 0, proc.stderr.read()
        cache = reader.store.vector_cache()
        assert reader.vectors.ntotal == 154
        # The reader caught up by replaying the change log, not by rebuilding.
        assert cache.generation == reader.catalog.generation()
        _, ids, vecs = reader.catalog.snapshot_vectors()
        q = vecs[7]
        hit = reader.search(q, k=1)[0]
        assert hit.id == ids[7] and hit.score > 0.9999
    finally:
        reader.close()
    assert len(seen) >= 3 and seen == sorted(seen) and seen[0] < seen[-1]


def test_catch_up_replays_changes_without_a_rebuild(postgres, tmp_path, monkeypatch):
    from searchlib import vectorcache

    url = postgres.new_database()
    write_images(tmp_path / "p", 10, seed=7)
    index_folder(tmp_path / "c1", tmp_path / "p", model=TINY, device="cpu", workers=0, catalog=url)
    reader = open_index(tmp_path / "c2", catalog=url)
    assert reader.vectors.ntotal == 10
    write_images(tmp_path / "p", 13, seed=8)
    index_folder(tmp_path / "c1", tmp_path / "p", device="cpu", workers=0, catalog=url)
    rebuilds = []
    monkeypatch.setattr(vectorcache.VectorCache, "_rebuild", lambda self: rebuilds.append(1))
    assert reader.vectors.ntotal == 23 and not rebuilds
    _, ids, vecs = reader.catalog.snapshot_vectors()
    scores, got = reader.vectors.search(vecs, 1)
    np.testing.assert_array_equal(got[:, 0], ids)
    reader.close()


def test_cli_catalog_option_and_env(postgres, tmp_path):
    url = postgres.new_database()
    write_images(tmp_path / "p", 3)
    runner = CliRunner()
    r = runner.invoke(main, ["--index", str(tmp_path / "cache"), "--catalog", url, "index", str(tmp_path / "p"),
                             "--model", TINY, "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["--index", str(tmp_path / "other-cache"), "search", "x", "--json"],
                      env={"SEARCHLIB_CATALOG": url})
    assert r.exit_code == 0, r.output
    assert len(__import__("json").loads(r.stdout)) == 3
    info = runner.invoke(main, ["--index", str(tmp_path / "cache"), "info", "--catalog", url])
    assert "catalog:" in info.stdout and "postgresql" in info.stdout


def test_a_missing_postgres_database_is_a_one_line_error(postgres, tmp_path):
    runner = CliRunner()
    bad = f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/no_such_database"
    r = runner.invoke(main, ["--index", str(tmp_path / "c"), "--catalog", bad, "search", "x"])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1 and "no_such_database" in r.stderr
