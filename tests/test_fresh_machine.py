"""The README's test command on a fresh machine: without PostgreSQL or Chromium the tests that need
them skip with how to get them, and under CI=true they fail instead.

A fresh machine is simulated for real: a private mount namespace (``unshare -m``, root only) hides
/usr/lib/postgresql and /usr/bin/chromium from a child pytest, which runs the suite's own fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = '''
from tests.conftest import postgres  # noqa: F401  (the suite's fixtures, unchanged)
from tests.test_serve_browser import browser  # noqa: F401


def test_needs_postgres(postgres):
    assert postgres.new_database()


def test_needs_chromium(browser):
    assert browser.version
'''


def _hidden_run(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    mounts = []
    if os.path.isdir("/usr/lib/postgresql"):
        mounts.append(f"mount --bind {empty} /usr/lib/postgresql")
    if os.path.exists("/usr/bin/chromium"):
        mounts.append("mount --bind /dev/null /usr/bin/chromium")
    script = " && ".join(mounts + [f'exec "{sys.executable}" -m pytest -q -rs -p no:cacheprovider '
                                   f'--rootdir "{tmp_path}" -c /dev/null "{probe}"'])
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def can_hide():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("simulating a fresh machine needs root and unshare (a private mount namespace)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")


def test_without_services_their_tests_skip_saying_how_to_get_them(can_hide, tmp_path):
    run = _hidden_run(tmp_path, ci=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout, run.stdout
    assert "PostgreSQL is not available here: apt-get install" in run.stdout
    assert "Chromium is not installed here: apt-get install -y chromium" in run.stdout


def test_under_ci_missing_services_fail(can_hide, tmp_path):
    run = _hidden_run(tmp_path, ci=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "CI=true requires it" in run.stdout and "skipped" not in run.stdout, run.stdout
