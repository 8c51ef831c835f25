"""Distributed indexing on Ray: a local Ray with 2 CPUs, a killed worker, a lost node, a killed
driver. Each ends with every file indexed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from searchlib import open_index
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images

ray = pytest.importorskip("ray")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster per test session


def _by_path(index_dir, catalog=None) -> dict[str, np.ndarray]:
    with open_index(index_dir, catalog=catalog) as index:
        _, ids, vecs = index.catalog.snapshot_vectors()
        paths = {im["id"]: im["path"] for im in index.images()}
        assert index.vectors.ntotal == len(ids) == len(paths)
    return {paths[i]: v for i, v in zip(ids.tolist(), vecs)}


@pytest.fixture(scope="module")
def local_ray():
    from searchlib.indexer.distributed import connect

    started = connect(None)  # 2 CPUs here: one decode task and one model actor at a time
    yield
    if started:
        ray.shutdown()


def test_ray_gives_the_same_index_as_the_local_pipeline(local_ray, tmp_path):
    files = write_images(tmp_path / "p", 30, size=(80, 60))
    (tmp_path / "p" / "bad.jpg").write_bytes(b"not an image")
    report = index_folder(tmp_path / "ray", tmp_path / "p", model=TINY, device="cpu", ray="local")
    assert (report.added, report.failed) == (30, 1) and "bad.jpg" in report.failures[0]["path"]
    index_folder(tmp_path / "plain", tmp_path / "p", model=TINY, device="cpu", workers=0)
    a, b = _by_path(tmp_path / "ray"), _by_path(tmp_path / "plain")
    assert a.keys() == b.keys() == {str(f) for f in files}
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-5)
    # Moves are found on Ray too: the stored vector is reused, the row keeps its id.
    files[0].rename(tmp_path / "p" / "moved.jpg")
    again = index_folder(tmp_path / "ray", tmp_path / "p", device="cpu", ray="local")
    assert (again.moved, again.added, again.unchanged, again.failed_before) == (1, 0, 29, 1)


def test_a_killed_ray_worker_costs_nothing(local_ray, tmp_path):
    import sqlite3

    write_images(tmp_path / "p", 400, size=(200, 150))
    result: dict = {}

    def run():
        result["report"] = index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", ray="local",
                                        commit_seconds=0.1)

    thread = threading.Thread(target=run)
    thread.start()
    killed, rows_then = None, None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and thread.is_alive():
        try:
            with sqlite3.connect(f"file:{tmp_path / 'i' / 'catalog.sqlite'}?mode=ro", uri=True) as con:
                rows = con.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            rows = 0
        if rows > 0:  # mid-run: something is committed, more is to come
            for pid, name in _ray_workers():
                if "MapBatches" in name:  # the model actor
                    os.kill(pid, signal.SIGKILL)
                    killed, rows_then = name, rows
                    break
        time.sleep(0.05)
    thread.join(300)
    assert killed is not None and rows_then < 400, (killed, rows_then)
    assert result["report"].added == 400
    assert set(_by_path(tmp_path / "i")) == {str(p) for p in (tmp_path / "p").iterdir()}


def _ray_workers() -> list[tuple[int, str]]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                name = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if name.startswith("ray::"):
                found.append((int(pid), name))
    return found


DRIVER = """
import os, sys
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
from searchlib.indexer import index_folder
r = index_folder(sys.argv[1], sys.argv[2], model=sys.argv[3], device="cpu", ray="local", commit_seconds=0.2)
print("DONE", r.added, r.unchanged, flush=True)
"""


def test_a_killed_driver_keeps_committed_work_and_the_next_run_finishes(tmp_path):
    import sqlite3

    write_images(tmp_path / "p", 200, size=(160, 120))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "i"), str(tmp_path / "p"), TINY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    committed = 0
    while time.time() < deadline and proc.poll() is None and committed == 0:
        try:
            with sqlite3.connect(f"file:{tmp_path / 'i' / 'catalog.sqlite'}?mode=ro", uri=True) as con:
                committed = con.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    assert 0 < committed < 200, committed
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "i"), str(tmp_path / "p"), TINY], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done, added, unchanged = proc.stdout.split()
    assert int(added) + int(unchanged) == 200 and int(unchanged) >= committed
    assert set(_by_path(tmp_path / "i")) == {str(p) for p in (tmp_path / "p").iterdir()}


def test_losing_a_node_mid_run(postgres, tmp_path):
    from ray.cluster_utils import Cluster

    from searchlib.errors import IndexNotFoundError

    if ray.is_initialized():
        ray.shutdown()
    url = postgres.new_database()
    write_images(tmp_path / "p", 300, size=(160, 120))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    mine = ray._private.worker.global_worker.node.unique_id  # the driver's own node must stay
    doomed = next(n for n in workers if n.unique_id != mine)
    result: dict = {}

    def run():
        try:
            result["report"] = index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu",
                                            ray=cluster.address, catalog=url, commit_seconds=0.2)
        except BaseException as e:  # reported below
            result["error"] = e

    try:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.time() + 120
        while time.time() < deadline and thread.is_alive():
            try:
                with open_index(tmp_path / "probe", catalog=url) as index:
                    if index.info()["images"] > 0:
                        break
            except IndexNotFoundError:  # not created yet
                pass
            time.sleep(0.2)
        cluster.remove_node(doomed)
        thread.join(600)
        assert "error" not in result, result.get("error")
        assert not thread.is_alive() and result["report"].added == 300
        assert set(_by_path(tmp_path / "i", url)) == {str(p) for p in (tmp_path / "p").iterdir()}
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_cluster_address_needs_postgres(tmp_path):
    from click.testing import CliRunner

    from searchlib.cli.main import main

    write_images(tmp_path / "p", 1)
    r = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "index", str(tmp_path / "p"), "--ray=head:6379"])
    assert r.exit_code == 1 and "postgresql" in r.stderr
    r = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "index", "--ray", str(tmp_path / "p")])
    assert r.exit_code == 2 and "after the paths" in r.stderr
