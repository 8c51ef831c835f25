"""verify finds each kind of inconsistency and --repair fixes it."""

import json
import sqlite3

from click.testing import CliRunner

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.config import VECTORS_FILE
from searchlib.indexer import index_folder
from searchlib.verify import verify
from tests.conftest import TINY, write_images


def _indexed(tmp_path, n=6):
    folder = tmp_path / "p"
    files = write_images(folder, n)
    index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    return tmp_path / "i", files


def test_clean_index_is_ok(tmp_path):
    idx, _ = _indexed(tmp_path)
    with open_index(idx) as index:
        report = verify(index)
    assert report.ok and report.images == report.stored_vectors == 6 and report.faiss_file == "ok"


def test_problems_found_and_repaired(tmp_path):
    idx, files = _indexed(tmp_path)
    files[0].unlink()
    (idx / VECTORS_FILE).write_bytes(b"corrupt")
    with open_index(idx) as index:
        with sqlite3.connect(idx / "catalog.sqlite") as con:  # damage the catalog behind its back
            con.execute("DELETE FROM embeddings WHERE image_id = (SELECT max(id) FROM images)")
            con.execute("UPDATE embeddings SET vector = zeroblob(8) WHERE image_id = (SELECT min(id) + 1 FROM images)")
        report = verify(index)
        assert not report.ok
        assert report.missing_files == [str(files[0])]
        assert len(report.rows_without_vector) == 1 and len(report.bad_vectors) == 1
        assert report.faiss_file == "corrupt"
        fixed = verify(index, repair=True)
        assert fixed.repaired
    with open_index(idx) as index:
        again = verify(index)
        assert again.ok and again.images == 3 and index.vectors.ntotal == 3
    # The next index run brings back the files whose rows were dropped but still exist.
    report = index_folder(idx, files[1].parent, device="cpu", workers=0)
    assert report.added == 2


def test_cli_verify_exit_codes(tmp_path):
    idx, files = _indexed(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["--index", str(idx), "verify", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    (idx / VECTORS_FILE).unlink()  # heals by itself: a note, not a failure
    healing = runner.invoke(main, ["--index", str(idx), "verify"])
    assert healing.exit_code == 0 and "note: no FAISS file" in healing.stdout
    with open_index(idx) as index:
        assert index.vectors.ntotal == 6  # the next reader rebuilt it
    data = bytearray((idx / VECTORS_FILE).read_bytes())
    data[-40] ^= 0x01  # bit rot inside the stored vectors, stamp untouched
    (idx / VECTORS_FILE).write_bytes(bytes(data))
    bad = runner.invoke(main, ["--index", str(idx), "verify"])
    assert bad.exit_code == 1 and "--repair" in bad.stdout and "checksum" in bad.stdout
    fixed = runner.invoke(main, ["--index", str(idx), "verify", "--repair", "--json"])
    report = json.loads(fixed.stdout)
    assert fixed.exit_code == 0 and report["ok"] is True and "rebuilt the FAISS index (6 vectors)" in report["repaired"]


def test_verify_on_an_empty_index_is_ok(tmp_path):
    (tmp_path / "empty").mkdir()
    index_folder(tmp_path / "i", tmp_path / "empty", model=TINY, device="cpu", workers=0)
    result = CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "verify"])
    assert result.exit_code == 0, result.output


def _truncate_to_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_photo_unreadable_after_indexing_leaves_search_and_verify_tells(tmp_path):
    """Files truncated after indexing: the next run fails them and drops their old rows and vectors
    (they used to stay searchable, and verify said 'index re-embeds them', which it did not)."""
    idx, files = _indexed(tmp_path, n=6)
    with open_index(idx) as index:
        ids = {im["path"]: im["id"] for im in index.images()}
    broken = files[:2]
    for path in broken:
        _truncate_to_half(path)
    first = index_folder(idx, files[0].parent, device="cpu", workers=0)
    assert first.failed == 2
    again = index_folder(idx, files[0].parent, device="cpu", workers=0)
    assert again.failed_before == 2 and again.failed == 0
    with open_index(idx) as index:
        paths = {im["path"] for im in index.images()}
        assert paths == {str(f) for f in files[2:]}
        assert index.vectors.ntotal == 4
        hits = {h.id for h in index.search("a photo", k=10)}
        assert hits and not hits & {ids[str(p)] for p in broken}
        report = verify(index)
        assert report.ok and not report.changed_files and not report.unreadable_files


def test_verify_reports_and_repairs_rows_of_files_that_failed_as_they_are_now(tmp_path):
    """An index from before rows of unreadable files were dropped: the row stayed beside the failure."""
    idx, files = _indexed(tmp_path, n=4)
    st = files[1].stat()
    with sqlite3.connect(idx / "catalog.sqlite") as con:
        con.execute("INSERT INTO failures (path, size, mtime_ns, error, failed_at) VALUES (?, ?, ?, ?, "
                    "'2026-01-01 00:00:00')", (str(files[1]), st.st_size, st.st_mtime_ns, "truncated"))
    runner = CliRunner()
    found = runner.invoke(main, ["--index", str(idx), "verify"])
    assert found.exit_code == 1 and "indexed files that can no longer be read: 1" in found.stdout
    fixed = runner.invoke(main, ["--index", str(idx), "verify", "--repair"])
    assert fixed.exit_code == 0 and "removed 1 rows" in fixed.stdout, fixed.output
    with open_index(idx) as index:
        assert str(files[1]) not in {im["path"] for im in index.images()} and index.vectors.ntotal == 3
