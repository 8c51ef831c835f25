"""Real processes: SIGKILL at random moments loses nothing; readers work while an indexer writes."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from searchlib import open_index
from searchlib.errors import IndexBusyError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images

CHILD = """
import sys
from searchlib.indexer import index_folder
r = index_folder(sys.argv[1], sys.argv[2], model=sys.argv[3], device="cpu", workers=1, batch_size=4,
                 commit_seconds=0.05)
print("DONE", r.added, flush=True)
"""


def _start_indexer(index_dir, folder):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(index_dir), str(folder), TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)


def _check_consistent(index_dir, expected_paths):
    with open_index(index_dir) as index:
        rows = list(index.images())
        paths = [r["path"] for r in rows]
        assert len(paths) == len(set(paths)), "duplicated rows"
        assert set(paths) == expected_paths, "lost or foreign rows"
        assert index.vectors.ntotal == len(rows)
        _, ids, vecs = index.catalog.snapshot_vectors()
        assert sorted(ids.tolist()) == sorted(r["id"] for r in rows)
        for image_id, vec in zip(ids.tolist(), vecs):  # every row is searchable and finds itself
            hit = index.search(vec, k=1)[0]
            assert hit.id == image_id and hit.score == pytest.approx(1.0, abs=1e-4)


def _rows(index_dir) -> int:
    try:
        with sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 400, size=(480, 360))
    expected = {str(p) for p in folder.iterdir()}
    index_dir = tmp_path / "i"
    rng = random.Random(1234)
    counts = []
    for _ in range(4):
        before = _rows(index_dir)
        proc = _start_indexer(index_dir, folder)
        # Kill mid-run: once this run has committed something, after a random extra moment.
        deadline = time.time() + 60
        while proc.poll() is None and _rows(index_dir) <= before and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (index_dir / "catalog.sqlite").exists():
            with open_index(index_dir) as index:
                counts.append(index.catalog.count())
    print("rows after each kill:", counts)
    assert counts and max(counts) > 0, "no batch was ever committed before a kill"
    assert min(counts) < len(expected), "no kill interrupted a run"
    proc = _start_indexer(index_dir, folder)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.startswith("DONE")
    _check_consistent(index_dir, expected)
    assert int(out.split()[1]) == len(expected) - counts[-1]  # the last run added only what was missing


def test_readers_work_while_an_indexer_writes_and_a_second_writer_is_refused(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 600, size=(96, 72))
    index_dir = tmp_path / "i"
    index_folder(index_dir, folder / "img_0_000.jpg", model=TINY, device="cpu", workers=0)
    proc = _start_indexer(index_dir, folder)
    seen, refused = [], False
    deadline = time.time() + 120
    try:
        while proc.poll() is None and time.time() < deadline:
            with open_index(index_dir) as index:
                info = index.info()
                hits = index.search("a photo", k=5)
                listed = list(index.images())
            seen.append(info["images"])
            assert min(5, info["vectors"]) <= len(hits) <= 5 and len(listed) >= 1  # commits go on meanwhile
            if not refused and info["images"] > 1:  # the child has committed: it holds the lock
                try:
                    index_folder(index_dir, folder, device="cpu", workers=0)
                except IndexBusyError as e:
                    refused = "another searchlib process" in str(e)
                else:
                    assert proc.poll() is not None, "a second indexer ran concurrently"
            time.sleep(0.05)
    finally:
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert len(seen) >= 3 and seen == sorted(seen)  # readers see committed progress, never less
    assert refused
    _check_consistent(index_dir, {str(p) for p in folder.iterdir()})


def test_cli_second_indexer_message(tmp_path):
    from click.testing import CliRunner

    from searchlib.cli.main import main
    from searchlib.index import Index

    folder = tmp_path / "p"
    write_images(folder, 1)
    index = Index.open_or_create(tmp_path / "i")
    with index.writer():
        result = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "index", str(folder), "--model", TINY])
    assert result.exit_code == 1 and "is indexing into" in result.stderr


def test_threads_making_the_same_thumbnail_at_once_each_get_it_whole(tmp_path):
    """The server's threads can make one thumbnail at once: each must write its own temporary file
    (with one per process, one thread renamed the file away while another was still writing it,
    and the thumbnail was served short or kept out of the index)."""
    import io
    import threading

    from PIL import Image

    from searchlib.records import content_hash
    from searchlib.thumbnails import thumbnail

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (900, 600), (200, 40, 90)).save(photo, quality=90)
    digest = content_hash(photo.read_bytes())
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    first = thumbnail(index_dir, str(photo), digest, 256)
    expected = first.path.read_bytes()
    start, ready = threading.Barrier(8), threading.Barrier(8)
    problems: list[str] = []

    def worker() -> None:
        try:
            for _ in range(40):
                if start.wait(timeout=60) == 0:
                    first.path.unlink(missing_ok=True)  # every round makes it again, all threads at once
                ready.wait(timeout=60)
                got = thumbnail(index_dir, str(photo), digest, 256)
                if got.path != first.path:
                    problems.append(f"kept outside the index: {got.path}")
                if got.data is not None and got.data != expected:
                    problems.append("different bytes")
                Image.open(io.BytesIO(got.data if got.data is not None else got.path.read_bytes())).load()
        except threading.BrokenBarrierError:
            pass  # another worker failed: its error is the one reported
        except Exception as e:
            problems.append(f"{type(e).__name__}: {e}")
            start.abort()
            ready.abort()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems[:5]
    assert first.path.read_bytes() == expected
    assert not list(first.path.parent.glob(".*.tmp"))
