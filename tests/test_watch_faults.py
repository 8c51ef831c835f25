"""``searchlib watch`` through catalog faults that pass (issue 24 #2): a PostgreSQL catalog stopped
with ``-m immediate`` and started again, and a disk that fills up under a SQLite catalog and is
freed. The watcher says what happened and that it will try again, without a traceback; once the
fault is gone it catches up by itself, and every photo is in the catalog exactly once. A fault that
lasts past ``--retry-for`` ends the watch with the fault's one-line error, exit 1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, started_postgres, write_images

EXE = str(Path(sys.executable).with_name("searchlib"))


class Lines:
    """A process's output, read line by line in the background."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, seconds: float = 120) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            time.sleep(0.1)
        raise AssertionError(f"not seen in {seconds} s; output so far:\n" + "\n".join(self.lines[-30:]))


def _batches(lines: Lines) -> list[dict]:
    return [json.loads(line) for line in list(lines.lines) if line.startswith("{")]


@pytest.fixture
def own_postgres():
    server = started_postgres()  # a server of this test's own: the test stops it
    yield server
    server.stop()


def test_watch_waits_out_postgres_going_away(own_postgres, tmp_path):
    url = own_postgres.new_database()
    photos = tmp_path / "photos"
    write_images(photos, 4)
    args = [EXE, "--index", str(tmp_path / "cache"), "--catalog", url]
    proc = subprocess.Popen(args + ["watch", str(photos), "--model", TINY, "--workers", "0", "--json",
                                    "--debounce", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        out.wait_for(lambda line: '"catch_up": true' in line)
        own_postgres.halt()
        write_images(photos / "during", 6, seed=7)  # changes while the catalog is gone
        err.wait_for(lambda line: "trying again in" in line)
        assert proc.poll() is None
        time.sleep(1.5)  # at least one more failed try
        own_postgres.resume()
        deadline = time.monotonic() + 120
        while sum(b["added"] for b in _batches(out)) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        write_images(photos / "after", 2, seed=9)  # and it follows events again
        while sum(b["added"] for b in _batches(out)) < 12 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    text = "\n".join(err.lines)
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    notices = [line for line in err.lines if "trying again" in line]
    assert notices and all("127.0.0.1:" in n and "lost the connection" in n or "cannot connect" in n
                           for n in notices), notices
    listed = subprocess.run(args + ["list", "--paths"], capture_output=True, text=True, timeout=120)
    paths = listed.stdout.split()
    on_disk = sorted(str(p) for p in photos.rglob("*.png")) + sorted(str(p) for p in photos.rglob("*.jpg"))
    assert sorted(paths) == sorted(on_disk) and len(paths) == 12, (paths, listed.stderr)


def test_watch_gives_up_after_retry_for(own_postgres, tmp_path):
    url = own_postgres.new_database()
    photos = tmp_path / "photos"
    write_images(photos, 2)
    args = [EXE, "--index", str(tmp_path / "cache"), "--catalog", url]
    proc = subprocess.Popen(args + ["watch", str(photos), "--model", TINY, "--workers", "0", "--json",
                                    "--retry-for", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Lines(proc.stdout)
    try:
        out.wait_for(lambda line: '"catch_up": true' in line)
        own_postgres.halt()
        write_images(photos / "during", 2, seed=3)
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert lines[-1].startswith("Error: ") and "127.0.0.1:" in lines[-1], err
    assert sum("trying again" in line for line in lines) >= 1, err  # 1 s, then 2 s, then past 3 s


_FULL_DISK = r"""
set -e
D="$1"; P="$2"; SIG="$3"; MODEL="$4"; EXE="$5"
mount -t tmpfs -o size=6m tmpfs "$D"
"$EXE" --index "$D/index" watch "$P" --model "$MODEL" --workers 0 --json --debounce 0.2 --retry-for 120 &
W=$!
while [ ! -e "$SIG/filled" ]; do
  if [ -e "$SIG/fill" ]; then head -c 20000000 /dev/zero > "$D/filler" 2>/dev/null || true; touch "$SIG/filled"; fi
  sleep 0.1
done
while [ ! -e "$SIG/free" ]; do sleep 0.1; done
rm -f "$D/filler"
while [ ! -e "$SIG/stop" ]; do sleep 0.1; done
kill -TERM $W
wait $W || echo "watch exit $?" >&2
"$EXE" --index "$D/index" list --paths > "$SIG/listed"
"""


def test_watch_waits_out_a_full_disk(tmp_path):
    """A real full disk: the index on a 6 MiB tmpfs in a private mount namespace, filled up."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a real full disk needs root and unshare (a tmpfs in a private mount namespace)")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    photos, sig, mnt = tmp_path / "photos", tmp_path / "sig", tmp_path / "mnt"
    sig.mkdir()
    mnt.mkdir()
    write_images(photos, 4)
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", _FULL_DISK, "sh", str(mnt), str(photos), str(sig), TINY,
                             EXE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        out.wait_for(lambda line: '"catch_up": true' in line)
        (sig / "fill").touch()
        while not (sig / "filled").exists():
            time.sleep(0.1)
        write_images(photos / "during", 30, seed=5, size=(96, 72))
        err.wait_for(lambda line: "disk full" in line and "trying again" in line)
        (sig / "free").touch()
        deadline = time.monotonic() + 120
        while sum(b["added"] for b in _batches(out)) < 34 and time.monotonic() < deadline:
            time.sleep(0.2)
        (sig / "stop").touch()
        proc.wait(120)
    finally:
        for name in ("fill", "filled", "free", "stop"):
            (sig / name).touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "\n".join(err.lines)
    assert "Traceback" not in text and "watch exit" not in text, text
    listed = (sig / "listed").read_text().split()
    on_disk = [str(p) for p in photos.rglob("*.png")] + [str(p) for p in photos.rglob("*.jpg")]
    assert sorted(listed) == sorted(on_disk) and len(listed) == 34, text
