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
