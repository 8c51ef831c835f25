"""Unit tests of the concurrency building blocks: Batcher, the readers/writer lock of the vector
cache, and the index directory's file locks (with real processes holding and dying with them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from searchlib.batching import Batcher
from searchlib.config import LOCK_FILE
from searchlib.errors import IndexBusyError
from searchlib.locks import cache_lock, remove_stale_temp_files, try_lock, writer_lock
from searchlib.vectorcache import SharedLock


# -- Batcher ------------------------------------------------------------------------------------
def test_batcher_returns_each_caller_its_own_results_in_order():
    batcher = Batcher(lambda items: [x * x for x in items], max_batch=4)
    try:
        assert batcher.submit([1, 2, 3]) == [1, 4, 9]
        results: dict[int, list] = {}

        def call(n):
            results[n] = batcher.submit(list(range(n, n + 5)))

        threads = [threading.Thread(target=call, args=(n,)) for n in range(0, 100, 10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {n: [x * x for x in range(n, n + 5)] for n in range(0, 100, 10)}
        assert batcher.items == 3 + 50
    finally:
        batcher.close()


def test_batcher_batches_what_queued_meanwhile_up_to_max_batch():
    gate = threading.Event()
    sizes = []

    def fn(items):
        gate.wait(5)  # the first call holds the worker while the others queue up
        sizes.append(len(items))
        return items

    batcher = Batcher(fn, max_batch=8)
    try:
        threads = [threading.Thread(target=batcher.submit, args=([i],)) for i in range(20)]
        threads[0].start()
        time.sleep(0.1)
        for t in threads[1:]:
            t.start()
        time.sleep(0.2)
        gate.set()
        for t in threads:
            t.join(5)
        assert sum(sizes) == 20 and max(sizes) == 8 and len(sizes) <= 4, sizes
        assert batcher.calls == len(sizes)
    finally:
        batcher.close()


def test_batcher_hands_an_error_to_every_waiting_caller_and_keeps_working():
    def fn(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [s.upper() for s in items]

    batcher = Batcher(fn)
    try:
        with pytest.raises(ValueError, match="bad item"):
            batcher.submit(["a", "bad"])
        assert batcher.submit(["ok"]) == ["OK"]
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(["late"])


# -- the readers/writer lock of the vector cache -------------------------------------------------
def test_shared_lock_lets_readers_share_and_a_writer_be_alone():
    lock = SharedLock()
    state = {"readers": 0, "max_readers": 0, "writer": False, "overlap": False}
    mutex = threading.Lock()

    def read():
        with lock.shared():
            with mutex:
                state["readers"] += 1
                state["max_readers"] = max(state["max_readers"], state["readers"])
                state["overlap"] |= state["writer"]
            time.sleep(0.05)
            with mutex:
                state["readers"] -= 1

    def write():
        with lock.exclusive():
            with mutex:
                state["overlap"] |= state["readers"] > 0 or state["writer"]
                state["writer"] = True
            time.sleep(0.03)
            with mutex:
                state["writer"] = False

    threads = [threading.Thread(target=read) for _ in range(6)] + [threading.Thread(target=write) for _ in range(3)]
    threads += [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert state["max_readers"] >= 2 and not state["overlap"]


# -- file locks ---------------------------------------------------------------------------------
HOLDER = """
import sys, time
from pathlib import Path
from searchlib.locks import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_writer_lock_refuses_a_second_writer_naming_its_pid_and_dies_with_its_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=f"pid {proc.pid}"):
            with writer_lock(tmp_path):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with writer_lock(tmp_path):  # the kernel released it with the process: no stale lock
            assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cache_lock_waits_then_gives_up_and_cleans_temp_files(tmp_path):
    fd = try_lock(tmp_path / "cache.lock")
    assert fd is not None
    try:
        started = time.monotonic()
        with cache_lock(tmp_path, wait=0.2) as held:
            assert held is False
        assert 0.2 <= time.monotonic() - started < 2
    finally:
        os.close(fd)
    (tmp_path / ".vectors.faiss.123.tmp").write_bytes(b"x")
    (tmp_path / "vectors.faiss").write_bytes(b"keep")
    with cache_lock(tmp_path, wait=0.2) as held:
        assert held is True
        assert remove_stale_temp_files(tmp_path) == 1
    assert (tmp_path / "vectors.faiss").read_bytes() == b"keep"
