"""``searchlib watch`` and ``serve --watch`` as real processes on real folders: what the catalog
holds is checked against the files on disk after each change."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY, write_images

EXE = str(Path(sys.executable).with_name("searchlib"))
#: The machine is shared and slow at times: generous limits, quick when things work.
LIMIT = 90


def indexed(index_dir: Path) -> dict[str, int]:
    """path -> id of the catalog's rows, read with plain sqlite3 (not the code under test)."""
    try:
        with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return {os.fsdecode(bytes(p)): i for p, i in db.execute("select path, id from images")}
    except sqlite3.Error:
        return {}


def failures(index_dir: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return [os.fsdecode(bytes(p)) for (p,) in db.execute("select path from failures")]
    except sqlite3.Error:
        return []


def images_on_disk(folder: Path) -> set[str]:
    """The image files a scan should find: no dot-names, .jpg/.png only (what write_images makes)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out.update(os.path.join(dirpath, f) for f in filenames if not f.startswith(".")
                   and f.endswith((".jpg", ".png")))
    return out


def wait_for(predicate, timeout: float = LIMIT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


class Watcher:
    """``searchlib watch --json`` in its own process group, its output read as it comes."""

    def __init__(self, index_dir: Path, *args: str):
        self.proc = subprocess.Popen([EXE, "--index", str(index_dir), "watch", *args, "--json", "--device", "cpu",
                                      "--debounce", "0.4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.batches: list[dict] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.batches, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list, parse: bool) -> None:
        for line in stream:
            into.append(json.loads(line) if parse else line.rstrip("\n"))

    def caught_up(self) -> Watcher:
        wait_for(lambda: any(b["catch_up"] for b in self.batches) or self.proc.poll() is not None,
                 what="the catch-up")
        assert self.proc.poll() is None, "\n".join(self.err)
        return self

    def total(self, key: str) -> int:
        """The sum of ``key`` over the batch lines read so far. A batch's line is printed after its
        commit, so a test that has just seen rows in the catalog waits for the line (``wait_total``)."""
        return sum(b[key] for b in self.batches)

    def wait_total(self, key: str, value: int, what: str = "") -> None:
        wait_for(lambda: self.total(key) >= value, what=what or f"{key} to reach {value}")
        assert self.total(key) == value

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout)
            for reader in self.readers:  # the last lines may still be in the pipes
                reader.join(timeout)
            return code
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after the signal: " + "\n".join(self.err)) from None
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One watcher over a folder that the tests below change, each in a sub-folder of its own."""
    root = tmp_path_factory.mktemp("watch")
    folder, index_dir = root / "photos", root / "index"
    write_images(folder, 4, seed=1)
    watcher = Watcher(index_dir, str(folder), "--model", TINY, "--workers", "1",
                      "--exclude", "*.skip.jpg", "--exclude", "private").caught_up()
    yield folder, index_dir, watcher
    assert watcher.stop() == 0, "\n".join(watcher.err)


def test_catch_up_and_burst(live):
    folder, index_dir, w = live
    assert set(indexed(index_dir)) == images_on_disk(folder)
    write_images(folder / "burst", 40, seed=2)  # a phone sync: many files at once
    wait_for(lambda: images_on_disk(folder) <= set(indexed(index_dir)), what="the burst")
    assert set(indexed(index_dir)) == images_on_disk(folder)
    assert w.total("failed") == 0


def test_slow_chunked_write_is_indexed_once_when_complete(live):
    folder, index_dir, w = live
    source = write_images(folder.parent / "outside", 1, seed=3, size=(400, 300))[0]
    data = source.read_bytes()
    target = folder / "slow" / "slow.png"
    target.parent.mkdir()
    updated_before = w.total("updated")
    with open(target, "wb") as f:  # eight chunks over ~1.4 s; each gap shorter than the debounce
        for i in range(8):
            f.write(data[i * len(data) // 8:(i + 1) * len(data) // 8])
            f.flush()
            time.sleep(0.18)
    wait_for(lambda: str(target) in indexed(index_dir), what="the slow file")
    time.sleep(1.5)  # would a second pass (an update) follow?
    assert w.total("updated") == updated_before
    assert w.total("failed") == 0 and str(target) not in failures(index_dir)
    with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        size = db.execute("select size from images where path = ?", (os.fsencode(str(target)),)).fetchone()[0]
    assert size == len(data)


def test_deletions(live):
    folder, index_dir, w = live
    victims = write_images(folder / "del", 5, seed=4)
    wait_for(lambda: all(str(p) in indexed(index_dir) for p in victims), what="the new files")
    for p in victims[:3]:
        p.unlink()
    wait_for(lambda: not any(str(p) in indexed(index_dir) for p in victims[:3]), what="the deletions")
    assert set(indexed(index_dir)) == images_on_disk(folder)


def test_folder_rename_keeps_ids_and_vectors(live):
    folder, index_dir, w = live
    files = write_images(folder / "trip" / "day1", 6, seed=5)
    wait_for(lambda: all(str(p) in indexed(index_dir) for p in files), what="the trip")
    before = {os.path.relpath(p, folder / "trip"): i for p, i in indexed(index_dir).items()
              if p.startswith(str(folder / "trip") + os.sep)}
    moved_before = w.total("moved")
    (folder / "trip").rename(folder / "holiday")
    wait_for(lambda: str(folder / "holiday" / "day1" / files[0].name) in indexed(index_dir), what="the rename")
    wait_for(lambda: set(indexed(index_dir)) == images_on_disk(folder), what="the old paths to go")
    after = {os.path.relpath(p, folder / "holiday"): i for p, i in indexed(index_dir).items()
             if p.startswith(str(folder / "holiday") + os.sep)}
    assert after == before  # same rows: the stored vectors were reused, nothing embedded again
    w.wait_total("moved", moved_before + len(files), what="the moves' report line")


def test_exclusions_and_hidden_files(live):
    folder, index_dir, w = live
    write_images(folder / ".hidden", 2, seed=6)
    write_images(folder / "private", 2, seed=7)
    src = write_images(folder.parent / "outside2", 1, seed=8)[0]
    shutil.copy(src, folder / ".dotfile.jpg")
    shutil.copy(src, folder / "raw.skip.jpg")
    (folder / "notes.txt").write_text("not an image")
    shutil.copy(src, folder / "kept.jpg")  # the marker: once it is in, the others were seen too
    wait_for(lambda: str(folder / "kept.jpg") in indexed(index_dir), what="kept.jpg")
    time.sleep(1.0)
    paths = set(indexed(index_dir))
    assert not [p for p in paths if "/.hidden/" in p or "/private/" in p or p.endswith(("skip.jpg", "dotfile.jpg"))]
    assert w.total("failed") == 0


def test_a_second_watcher_is_refused(live):
    folder, index_dir, _ = live
    r = subprocess.run([EXE, "--index", str(index_dir), "watch", str(folder), "--device", "cpu"],
                       capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "another searchlib process" in lines[0] and "Traceback" not in r.stderr
    r = subprocess.run([EXE, "--index", str(index_dir), "serve", "--port", "0", "--watch", str(folder)],
                       capture_output=True, text=True, timeout=LIMIT)
    assert r.returncode == 1 and "another searchlib process" in r.stderr and "Traceback" not in r.stderr
    assert "serving" not in r.stdout  # refused before the server started


def test_kill_9_mid_burst_then_restart_indexes_every_file_once(tmp_path):
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    folder.mkdir()
    w = Watcher(index_dir, str(folder), "--model", TINY, "--workers", "1", "--batch-size", "2",
                "--commit-seconds", "0.1").caught_up()
    write_images(folder / "sync", 300, seed=9, size=(320, 240))
    wait_for(lambda: len(indexed(index_dir)) > 0 or w.proc.poll() is not None, what="a first commit")
    committed = len(indexed(index_dir))
    os.killpg(w.proc.pid, signal.SIGKILL)
    w.proc.wait()
    assert committed < 300, "the kill should land mid-burst"
    w2 = Watcher(index_dir, str(folder), "--workers", "1").caught_up()
    try:
        rows = indexed(index_dir)
        assert set(rows) == images_on_disk(folder) and len(set(rows.values())) == 300
        with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            assert db.execute("select count(*) from images").fetchone()[0] == 300
    finally:
        assert w2.stop(signal.SIGTERM) == 0


def test_sigint_mid_burst_commits_and_exits_0(tmp_path):
    """(SIGTERM is sent to the restarted watcher of the kill -9 test.)"""
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    folder.mkdir()
    w = Watcher(index_dir, str(folder), "--model", TINY, "--workers", "1", "--batch-size", "2",
                "--commit-seconds", "0.1").caught_up()
    write_images(folder, 120, seed=10, size=(320, 240))
    wait_for(lambda: len(indexed(index_dir)) > 0, what="a first commit")
    sent = time.monotonic()
    assert w.stop(signal.SIGINT) == 0, "\n".join(w.err)
    assert time.monotonic() - sent < 15
    assert not any("Traceback" in line for line in w.err)
    assert w.err[-1] == "searchlib: stopped; everything indexed is committed"
    rows = indexed(index_dir)
    assert set(rows) <= images_on_disk(folder)
    assert len(rows) == w.total("added")  # every batch it reported is in the catalog


def test_poll_mode(tmp_path):
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    write_images(folder, 2, seed=11)
    w = Watcher(index_dir, str(folder), "--model", TINY, "--workers", "0", "--poll", "0.3").caught_up()
    try:
        assert "searchlib: polling every 0.3 s (--poll)" in w.err
        added = write_images(folder / "new" / "deeper", 3, seed=12)
        wait_for(lambda: all(str(p) in indexed(index_dir) for p in added), what="polled new files")
        added[0].unlink()
        wait_for(lambda: str(added[0]) not in indexed(index_dir), what="a polled deletion")
        assert set(indexed(index_dir)) == images_on_disk(folder)
    finally:
        assert w.stop() == 0


def test_watch_limit_polls_the_rest(tmp_path):
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    for name in ("a", "b", "c", "d"):
        write_images(folder / name / "inner", 1, seed=ord(name))
    w = Watcher(index_dir, str(folder), "--model", TINY, "--workers", "0", "--max-watches", "3",
                "--poll-interval", "0.3").caught_up()
    try:
        limit_lines = [line for line in w.err if "watch limit" in line]
        assert len(limit_lines) == 1 and "fs.inotify.max_user_watches" in limit_lines[0]
        assert "3 folders follow events, 6 are polled" in limit_lines[0]
        # One file where events reach (the root), and one in each polled folder.
        added = [*write_images(folder, 1, seed=20)] + [p for n in "abcd" for p in
                                                      write_images(folder / n / "inner", 1, seed=30 + ord(n))]
        wait_for(lambda: all(str(p) in indexed(index_dir) for p in added), what="files in watched and polled folders")
        assert set(indexed(index_dir)) == images_on_disk(folder)
    finally:
        assert w.stop() == 0


def test_network_mount_is_polled(tmp_path):
    """A folder on an NFS mount (a mount table that says so) is polled, and the watcher says why."""
    from searchlib.indexer.watch import watch

    folder, index_dir = tmp_path / "nas", tmp_path / "index"
    write_images(folder, 1, seed=40)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/photos {folder} nfs4 rw,relatime 0 0\n")
    notices, batches, stop = [], [], threading.Event()
    thread = threading.Thread(target=watch, args=(index_dir, folder), daemon=True,
                              kwargs=dict(model=TINY, device="cpu", workers=0, on_batch=batches.append,
                                          on_notice=notices.append, stop=stop, poll_seconds=0.3, debounce=0.2,
                                          mounts_file=str(mounts)))
    thread.start()
    try:
        wait_for(lambda: batches, what="the catch-up")
        assert any(f"{folder} is a nfs4 mount" in n and "polled every 0.3 s" in n for n in notices), notices
        new = write_images(folder / "sub", 1, seed=41)[0]
        wait_for(lambda: str(new) in indexed(index_dir), what="a file on the mount")
    finally:
        stop.set()
        thread.join(LIMIT)
    assert not thread.is_alive()


def test_serve_watch_finds_a_copied_photo(tmp_path):
    from searchlib.indexer import index_folder

    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    write_images(folder, 3, seed=50)
    index_folder(index_dir, folder, model=TINY, device="cpu", workers=0)
    proc = subprocess.Popen([EXE, "--index", str(index_dir), "serve", "--port", "0", "--device", "cpu",
                             "--watch", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        match = re.search(r"http://\S+:\d+", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no URL"
        url = match.group(0).replace("127.0.0.1", "localhost")
        copied = folder / "copied-in.png"
        shutil.copy(write_images(tmp_path / "camera", 1, seed=51)[0], copied)

        def found() -> bool:
            query = urllib.parse.urlencode({"q": "a photo", "k": 50})
            with urllib.request.urlopen(f"{url}/api/v1/search?{query}", timeout=30) as r:
                return any(h["path"] == str(copied) for h in json.load(r)["hits"])

        wait_for(found, what="the copied photo in the API's hits")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(30)
    assert rc == 0
    assert str(copied) in indexed(index_dir)


def test_a_file_or_bad_option_is_one_line(tmp_path):
    from click.testing import CliRunner

    from searchlib.cli.main import main

    photo = write_images(tmp_path / "p", 1)[0]
    runner = CliRunner()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in a background job
    r = runner.invoke(main, ["--index", str(tmp_path / "i"), "watch", str(photo)])
    assert r.exit_code == 1 and "watch follows folders" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "i").exists()  # refused before anything was created
    r = runner.invoke(main, ["--index", str(tmp_path / "i"), "watch", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "path not found" in r.stderr
    assert runner.invoke(main, ["watch"]).exit_code == 2
    r = runner.invoke(main, ["serve", "--poll", "5"])
    assert r.exit_code == 2 and "go with --watch" in r.stderr
    assert signal.getsignal(signal.SIGINT) is before  # its handlers were put back
