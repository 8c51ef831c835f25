"""A damaged or abandoned on-disk index (compressed lists memory-mapped from ``vectors.*.ivfdata``):
searches never crash or silently lose images, ``verify`` tells, ``--repair`` rebuilds, and build
folders left by a killed process are cleaned up.

One small on-disk index (3,000 vectors, a cheap requested PQ type) is built once and copied per test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from searchlib import open_index
from searchlib.catalog import ChangeSet
from searchlib.index import Index
from searchlib.records import ImageMetadata, ImageRecord
from searchlib.verify import verify
from tests.test_bigindex import IDENTITY, brute, vectors

FACTORY = "IVF64,PQ8x4"  # on disk (IVF + PQ), and cheap to train
QUERIES = vectors(12, seed=4)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, float]:
    """The index, and its recall@10 against brute force before any damage."""
    directory = tmp_path_factory.mktemp("ondisk") / "i"
    index = Index.open_or_create(directory)
    vecs = vectors(3000)
    with index.writer() as writer:  # one batch: one build
        writer.set_index_type(FACTORY)
        writer.apply(ChangeSet(added=[(ImageRecord(f"/p/{i}.jpg", 10, 10, f"{i:064x}",
                                                   ImageMetadata(width=64, height=48, format="JPEG")), vecs[i])
                                      for i in range(len(vecs))], identity=IDENTITY))
        writer.finish()
    assert type(index.vectors).__name__ == "OnDiskIndex" and index.vectors.delta.ntotal == 0
    found = [[h.id for h in index.search(q, k=10)] for q in QUERIES]
    assert verify(index, check_files=False).ok
    index.close()
    return directory, _recall_against_brute_force(directory, found)


@pytest.fixture
def copy(built, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(built[0], target)
    return target


def _lists_file(directory: Path) -> Path:
    (found,) = directory.glob("vectors.*.ivfdata")
    return found


def _search_in_child(directory: Path) -> subprocess.CompletedProcess:
    """Search in another process: a SIGBUS there must not take the test run with it."""
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from searchlib import open_index
        queries = np.array(json.loads(sys.stdin.read()), dtype=np.float32)
        with open_index({str(directory)!r}) as index:
            print(json.dumps([[h.id for h in index.search(q, k=10)] for q in queries]))
    """)
    return subprocess.run([sys.executable, "-c", code], input=json.dumps(QUERIES.tolist()), capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)


def _recall_against_brute_force(directory: Path, found: list[list[int]]) -> float:
    with open_index(directory) as index:
        truth = brute(index, QUERIES, 10)
    return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(found, truth.tolist())]))


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_lists_file_is_rebuilt_on_open_not_a_crash_or_lost_images(built, copy, damage):
    lists = _lists_file(copy)
    size = lists.stat().st_size
    if damage == "truncated":
        with open(lists, "r+b") as handle:
            handle.truncate(size // 2)
    else:
        lists.write_bytes(b"\0" * size)
    result = _search_in_child(copy)
    assert result.returncode == 0, result.stderr[-2000:]  # was -7 (SIGBUS) when truncated
    found = json.loads(result.stdout)
    assert built[1] >= 0.5 and _recall_against_brute_force(copy, found) >= built[1] - 0.1  # zeroed: lost them all
    assert _lists_file(copy).name != lists.name  # rebuilt from the catalog


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "missing"])
def test_verify_reports_a_damaged_lists_file_and_repair_rebuilds_it(copy, damage):
    from click.testing import CliRunner

    from searchlib.cli.main import main

    lists = _lists_file(copy)
    size = lists.stat().st_size
    if damage == "truncated":
        with open(lists, "r+b") as handle:
            handle.truncate(size - 1)
    elif damage == "zeroed":
        with open(lists, "r+b") as handle:
            handle.seek(size // 2)
            handle.write(b"\0" * 64)
    else:
        lists.unlink()
    checked = CliRunner().invoke(main, ["--index", str(copy), "verify", "--no-files"])
    assert checked.exit_code == 1, checked.output
    assert "FAISS file: corrupt" in checked.output and "lists file" in checked.output
    repaired = CliRunner().invoke(main, ["--index", str(copy), "verify", "--no-files", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: rebuilt the FAISS index (3000 vectors)" in repaired.output
    with open_index(copy) as index:
        assert verify(index, check_files=False).faiss_file == "ok"
    assert _lists_file(copy).name != lists.name  # new lists; the damaged file is gone


def test_verify_reports_a_damaged_delta(copy):
    with open(copy / "vectors.delta.faiss", "r+b") as handle:
        handle.seek(40)
        handle.write(b"\xff" * 8)
    with open_index(copy) as index:
        report = verify(index, check_files=False)
    assert report.faiss_file == "corrupt" and "vectors.delta.faiss" in report.faiss_problem


def _plant_build_folder(directory: Path, name: str) -> Path:
    """A build folder as a build leaves it (shards and merged lists), with its lock file."""
    work = directory / name
    work.mkdir()
    (work / "building.lock").touch()
    (work / "shard-00000.faiss").write_bytes(b"\0" * 4096)
    (work / "vectors.0123456789ab.ivfdata").write_bytes(b"\0" * 4096)
    return work


def test_build_folders_of_killed_processes_go_when_the_writer_lock_is_taken(copy):
    from searchlib.locks import try_lock

    abandoned = _plant_build_folder(copy, ".build-killed01")
    alive = _plant_build_folder(copy, ".build-running1")
    holder = try_lock(alive / "building.lock")  # as a live builder holds it
    try:
        with open_index(copy) as index:
            assert abandoned.exists()  # readers leave them alone
            with index.writer():
                pass
        assert not abandoned.exists() and alive.exists()
    finally:
        import os

        os.close(holder)


def test_a_build_killed_midway_leaves_only_its_folder_and_the_next_writer_removes_it(copy):
    """kill -9 a process rebuilding the missing on-disk index once its build folder has shards."""
    import os
    import signal
    import time

    (copy / "vectors.faiss").unlink()  # the next search rebuilds
    code = textwrap.dedent(f"""
        import time
        import searchlib.ondisk as ondisk
        real = ondisk._add_in_shards
        def slow(*args):
            out = real(*args)
            print("SHARDS", flush=True)
            time.sleep(600)  # killed here, between the shards and the merge
            return out
        ondisk._add_in_shards = slow
        from searchlib import open_index
        import numpy as np
        with open_index({str(copy)!r}) as index:
            index.search(np.ones(32, np.float32) / 32 ** 0.5, k=3)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 240
        while child.stdout.readline().strip() != "SHARDS":
            assert child.poll() is None and time.monotonic() < deadline, "the child never reached its shards"
        (work,) = copy.glob(".build-*")
        assert list(work.glob("shard-*.faiss"))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with open_index(copy) as index:
        with index.writer():
            pass
    assert not list(copy.glob(".build-*"))


def test_a_rebuild_trains_on_every_point_it_asked_for_and_prints_nothing(copy, capfd):
    """The sample drew ids with replacement: 3,000 asked for gave ~1,900 distinct vectors, under the
    2,496 IVF64 needs, and faiss printed its clustering warnings on stderr even under --quiet."""
    (copy / "vectors.faiss").unlink()
    with open_index(copy) as index:
        assert len(index.catalog.sample_vectors(3000)) == 3000
        assert len(index.search(QUERIES[0], k=5)) == 5  # rebuilt here
    assert "clustering" not in capfd.readouterr().err


def test_faiss_warnings_go_to_the_log_not_the_terminal(capfd, caplog):
    import logging

    import faiss

    from searchlib.vectors import faiss_warnings_logged

    with caplog.at_level(logging.INFO, logger="searchlib"), faiss_warnings_logged():
        faiss.Kmeans(8, 64, niter=2).train(np.random.default_rng(0).random((300, 8), dtype=np.float32))
    assert "clustering" not in capfd.readouterr().err
    assert any("faiss: WARNING clustering 300 points to 64 centroids" in r.getMessage() for r in caplog.records)
