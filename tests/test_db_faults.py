"""The catalog's database going away: PostgreSQL killed (``pg_ctl -m immediate``) during an index
run, then restarted. The run ends with one line and exit 1; what it committed stays; the next run
completes with every file exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, started_postgres, write_images

EXE = str(Path(sys.executable).with_name("searchlib"))


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, since the test kills it."""
    server = started_postgres()
    yield server
    server.stop()


def _committed(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3) as conn:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
    except psycopg.Error:
        return 0


def test_postgres_killed_mid_run_is_one_line_and_the_next_run_completes(own_postgres, tmp_path):
    url = own_postgres.new_database()
    photos = write_images(tmp_path / "p", 240, size=(64, 48))
    args = [EXE, "--index", str(tmp_path / "cache"), "--catalog", url]
    proc = subprocess.Popen(args + ["index", str(tmp_path / "p"), "--model", TINY, "--workers", "0",
                                    "--commit-seconds", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _committed(url) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the database could be killed; make it longer"
        own_postgres.halt()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "127.0.0.1:" in lines[0], err
    assert "postgres@" not in lines[0] or ":" not in lines[0].split("postgres@")[0]  # no password shown
    own_postgres.resume()
    done = _committed(url)
    assert 0 < done <= len(photos)  # a fast machine may have committed everything before the kill landed
    rerun = subprocess.run(args + ["index", str(tmp_path / "p")], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    listed = subprocess.run(args + ["list", "--paths"], capture_output=True, text=True, timeout=120).stdout.split("\n")
    listed = [p for p in listed if p]
    assert sorted(listed) == sorted(map(str, photos)) and len(set(listed)) == len(listed)
    assert os.path.isdir(tmp_path / "cache")


def test_postgres_unreachable_at_start_is_one_line(own_postgres, tmp_path):
    """index: one line naming host and port, exit 1; the same command works once the server is up."""
    url = own_postgres.new_database()
    write_images(tmp_path / "p", 2)
    own_postgres.halt()
    try:
        run = subprocess.run([EXE, "--index", str(tmp_path / "cache"), "--catalog", url, "index", str(tmp_path / "p"),
                              "--model", TINY, "--workers", "0"], capture_output=True, text=True, timeout=120)
    finally:
        own_postgres.resume()
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("Error: ") and f"127.0.0.1:{own_postgres.port}" in lines[0], run.stderr
    again = subprocess.run([EXE, "--index", str(tmp_path / "cache"), "--catalog", url, "index", str(tmp_path / "p"),
                            "--model", TINY, "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
