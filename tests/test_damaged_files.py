"""Damage and contention: corrupt FAISS and text-encoder files, a garbled catalog, a read-only
index, two runs creating one index, a full disk and temp files left by kills.

Each test failed before its fix (most from a newcomer's pass, issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from searchlib import open_index
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images
from tests.helpers_cli import EXE, cli


def _brute_ids(index, text, k):
    _, ids, vecs = index.catalog.snapshot_vectors()
    q = index.embed_texts([text])[0]
    return ids[np.argsort(-(vecs @ q), kind="stable")[:k]].tolist()


def test_flipped_bytes_in_the_faiss_file_are_caught(tmp_path):
    write_images(tmp_path / "p", 12)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    path = tmp_path / "i" / "vectors.faiss"
    data = bytearray(path.read_bytes())
    for pos in range(len(data) - 300, len(data) - 100, 4):  # float exponents among the vectors
        data[pos + 3] ^= 0x7F
    path.write_bytes(bytes(data))
    assert cli("verify", index=tmp_path / "i").exit_code == 1
    with open_index(tmp_path / "i") as index:
        hits = index.search("a red circle", k=5)
        assert [h.id for h in hits] == _brute_ids(index, "a red circle", 5)
        assert all(-1.01 <= h.score <= 1.01 for h in hits)


def test_unverified_large_faiss_files_are_caught_by_score_checks(tmp_path, monkeypatch):
    from searchlib import vectors

    monkeypatch.setattr(vectors, "CHECKSUM_ON_LOAD_MAX", 0)  # as for a file too big to hash on load
    write_images(tmp_path / "p", 12)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    path = tmp_path / "i" / "vectors.faiss"
    data = bytearray(path.read_bytes())
    for pos in range(len(data) - 2000, len(data) - 100, 4):
        data[pos + 3] = 0x7E  # huge exponents: scores of 1e37
    path.write_bytes(bytes(data))
    with open_index(tmp_path / "i") as index:
        hits = index.search("a red circle", k=5)
        assert [h.id for h in hits] == _brute_ids(index, "a red circle", 5)


@pytest.mark.parametrize("name", ["text_encoder.onnx", "text_encoder.weights"])
def test_a_bit_rotted_text_encoder_is_not_used(tmp_path, monkeypatch, name):
    """The graph or its weights file (kept apart since export format 3)."""
    monkeypatch.setenv("SEARCHLIB_TEXT_INT8", "0")  # the fp32 tower answers (test_int8_tower: the int8 one)
    write_images(tmp_path / "p", 6)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        expected = [h.id for h in index.search("a red circle", k=5)]
    damaged = tmp_path / "i" / name
    data = bytearray(damaged.read_bytes())
    for pos in range(len(data) // 2, min(len(data), len(data) // 2 + 4000), 7):
        data[pos] ^= 0x10
    damaged.write_bytes(bytes(data))
    assert "text tower" in cli("verify", index=tmp_path / "i").stdout
    with open_index(tmp_path / "i") as index:
        assert [h.id for h in index.search("a red circle", k=5)] == expected
    assert cli("verify", index=tmp_path / "i").exit_code == 0  # the query exported it again


def test_a_text_encoder_note_with_wrong_json_heals(tmp_path):
    write_images(tmp_path / "p", 4)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    for note in ('{"arch": 3}', "[1, 2]", '{"context_length": "x"}'):
        (tmp_path / "i" / "text_encoder.json").write_text(note)
        with open_index(tmp_path / "i") as index:
            assert len(index.search("a red circle", k=3)) == 3
        with open_index(tmp_path / "i") as index:
            assert index.text_encoder() is not None  # rebuilt by the query before


def test_a_garbled_catalog_gives_one_line_errors_everywhere(tmp_path):
    write_images(tmp_path / "p", 30)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    catalog = tmp_path / "i" / "catalog.sqlite"
    with open_index(tmp_path / "i"):
        pass
    subprocess.run(["sqlite3", str(catalog), "PRAGMA wal_checkpoint(TRUNCATE)"], capture_output=True)
    data = bytearray(catalog.read_bytes())
    tail = len(data) // 2
    data[tail:] = os.urandom(len(data) - tail)
    catalog.write_bytes(bytes(data))
    for args in (["search", "x"], ["verify"], ["tag", "--labels", "a,b"], ["duplicates"], ["list"],
                 ["index", tmp_path / "p"]):
        result = cli(*args, index=tmp_path / "i")
        if args[0] == "verify":
            assert result.exit_code == 1 and "damaged" in result.stdout, (args, result.output)
            continue
        assert result.exit_code == 1, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, (args, result.output)
        assert "unexpected" not in result.stderr, (args, result.stderr)


def test_a_read_only_index_searches_and_lists_but_refuses_to_write(small, tmp_path):
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a read-only mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount --bind {small / 'i'} {ro} && mount -o remount,bind,ro {ro} && "
              f"{EXE} --index {ro} search 'a red circle' -k 2 --json && {EXE} --index {ro} list --paths >/dev/null && "
              f"{EXE} --index {ro} info >/dev/null && {EXE} --index {ro} index {small / 'p'}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    if "mount" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("mounts are not allowed here")
    assert proc.returncode == 1, proc.stderr
    assert len(json.loads(proc.stdout)) == 2
    assert "read-only" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


CREATE = """
import sys
from searchlib.indexer import index_folder
from searchlib.errors import IndexBusyError
try:
    index_folder(sys.argv[1], sys.argv[2], model=sys.argv[3], device="cpu", workers=0)
    print("DONE")
except IndexBusyError:
    print("BUSY")
"""


def test_two_runs_creating_the_same_index_at_once_are_done_or_busy(tmp_path):
    write_images(tmp_path / "p", 2)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for trial in range(4):
        target = tmp_path / f"i{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(target), str(tmp_path / "p"), TINY],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        words = sorted(o[0].strip() for o in outs)
        assert words in (["BUSY", "DONE"], ["DONE", "DONE"]), outs
        with open_index(target) as index:
            assert index.info()["images"] == 2


def test_a_full_disk_is_one_line_and_keeps_committed_work(tmp_path, monkeypatch):
    from sqlalchemy import event

    from searchlib.catalog import Catalog
    from searchlib.errors import StorageFullError

    write_images(tmp_path / "p", 4)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    write_images(tmp_path / "p", 300, seed=3, size=(32, 24))
    original = Catalog._engine

    def tiny_disk(self):
        engine = original(self)
        pages = os.path.getsize(self.path) // 4096 + 3

        @event.listens_for(engine, "connect")
        def limit(dbapi_conn, _record):
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")
        return engine

    monkeypatch.setattr(Catalog, "_engine", tiny_disk)
    with pytest.raises(StorageFullError, match="disk full.*images are committed"):
        index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0, commit_seconds=0.01, batch_size=8)
    monkeypatch.undo()
    with open_index(tmp_path / "i") as index:
        assert index.info()["images"] >= 4


def test_temp_files_left_by_kills_are_removed_by_the_next_writer(small):
    stale = [small / "i" / ".vectors.faiss.abc.tmp", small / "i" / ".text_encoder.onnx.123.tmp.opt"]
    for path in stale:
        path.write_bytes(b"x" * 100)
    index_folder(small / "i", small / "p", device="cpu", workers=0)
    assert not any(p.exists() for p in stale)
