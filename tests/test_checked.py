"""searchlib/checked.py: a file that matched its checksum is not hashed again until it changes, and
every kind of change (a write at the same size, times set back, a rename over it, a damaged memo)
makes it hashed again. Cold queries in new processes rely on the memo kept in the user cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from searchlib import checked
from searchlib.vectors import file_checksum


class Counting:
    """``file_checksum`` that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, path: Path) -> str:
        self.calls += 1
        return file_checksum(path)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_hashed_once_while_unchanged(tmp_path, cache):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(100_000))
    expected, compute = file_checksum(path), Counting()
    assert checked.matches(path, expected, compute) and compute.calls == 1
    assert checked.matches(path, expected, compute) and compute.calls == 1  # from the memo
    assert not checked.matches(path, "xxh3_128:" + "0" * 32, compute) and compute.calls == 2  # another checksum


def test_every_change_is_hashed_again(tmp_path, cache):
    path = tmp_path / "f.bin"
    data = os.urandom(100_000)
    path.write_bytes(data)
    expected, compute = file_checksum(path), Counting()
    assert checked.matches(path, expected, compute)
    st = path.stat()

    # Damaged in place at the same size, its modification time set back: ctime still moved.
    with open(path, "r+b") as f:
        f.seek(500)
        f.write(bytes(b ^ 0xFF for b in data[500:600]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert not checked.matches(path, expected, compute) and compute.calls == 2

    # The good bytes back through a rename over the path (another inode): hashed, then trusted.
    good = tmp_path / "good.bin"
    good.write_bytes(data)
    os.replace(good, path)
    assert checked.matches(path, expected, compute) and compute.calls == 3
    assert checked.matches(path, expected, compute) and compute.calls == 3

    # A damaged memo file is ignored.
    for memo in (cache / "checked").glob("*.json"):
        memo.write_text("{not json")
    assert checked.matches(path, expected, compute) and compute.calls == 4
    for memo in (cache / "checked").glob("*.json"):
        json.loads(memo.read_text())  # written anew, whole


def test_a_cache_that_cannot_be_written_only_costs_the_hashing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("SEARCHLIB_CACHE", str(blocker / "cache"))
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    expected, compute = file_checksum(path), Counting()
    assert checked.matches(path, expected, compute) and checked.matches(path, expected, compute)
    assert compute.calls == 2


def test_missing_file_raises_oserror(tmp_path, cache):
    with pytest.raises(OSError):
        checked.matches(tmp_path / "gone", "xxh3_128:0", Counting())


def test_checked_files_hash_each_file_once_until_it_changes(tmp_path):
    from searchlib.records import content_hash

    path = tmp_path / "photo.jpg"
    data = os.urandom(50_000)
    path.write_bytes(data)
    files = checked.CheckedFiles(capacity=2)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert files.same_bytes(fd, os.fstat(fd), str(path), content_hash(data))
        assert not files.same_bytes(fd, os.fstat(fd), str(path), content_hash(b"other"))
    finally:
        os.close(fd)
    path.write_bytes(data[::-1])  # the same size, other bytes
    fd = os.open(path, os.O_RDONLY)
    try:
        assert not files.same_bytes(fd, os.fstat(fd), str(path), content_hash(data))
    finally:
        os.close(fd)


def test_a_cold_search_does_not_hash_the_tower_and_vectors_again_but_finds_them_damaged(
        images_dir, index_dir, tmp_path):
    """Real processes: the second cold search does not hash the text tower again; a tower and a
    FAISS file damaged in place (same size and modification time) are still caught: the full
    model answers (and the tower is exported again), the vectors are read from the catalog, the
    hits are the same."""
    from searchlib.indexer import index_folder
    from searchlib.textenc import ONNX_FILE
    from tests.conftest import TINY

    env = {**os.environ, "SEARCHLIB_CACHE": str(tmp_path / "cache"), "SEARCHLIB_TEXT_INT8": "0"}
    index_folder(index_dir, images_dir, model=TINY, device="cpu", workers=0)
    code = ("import sys, json\n"
            "import searchlib.vectors as v\n"
            "seen = []\n"
            "real = v.file_checksum\n"
            "def counting(path, *a, **k):\n"
            "    seen.append(str(path)); return real(path, *a, **k)\n"
            "v.file_checksum = counting\n"
            "import searchlib.textenc as t, searchlib.ondisk as o\n"
            "t.file_checksum = o.file_checksum = counting\n"
            "from searchlib import open_index\n"
            f"with open_index({str(index_dir)!r}, device='cpu') as index:\n"
            "    hits = [h.id for h in index.search(sys.argv[1], k=5)]\n"
            "    tower = index.text_encoder() is not None\n"
            "print(json.dumps({'hashed': seen, 'hits': hits, 'tower': tower}))\n")

    def cold(text: str = "a red circle") -> dict:
        out = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, env=env,
                             check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = cold()
    assert any(p.endswith(ONNX_FILE) for p in first["hashed"]) and first["tower"]
    second = cold("a blue square")  # a new text: the tower loads
    assert not any(p.endswith(ONNX_FILE) for p in second["hashed"]) and second["tower"]

    faiss_files = [p for p in index_dir.iterdir() if p.suffix == ".faiss"]
    assert faiss_files, sorted(p.name for p in index_dir.iterdir())
    for path in faiss_files:  # damaged in place, the same size and modification time
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(st.st_size // 2)
            f.write(b"\xff" * 64)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    tower = index_dir / ONNX_FILE
    st = tower.stat()
    with open(tower, "r+b") as f:
        f.seek(st.st_size // 2)
        f.write(b"\x00" * 64)
    os.utime(tower, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = cold("a green triangle")
    # The damaged tower was hashed, found so and not used: the search healed it (exported again).
    assert any(p.endswith(ONNX_FILE) for p in third["hashed"]), third
    assert third["hits"] == cold("a green triangle")["hits"]
    assert cold()["hits"] == first["hits"]  # the damage was caught: rebuilt from the catalog, full model for text
