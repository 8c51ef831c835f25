"""What a new user (and an attacker) tripped over: each test failed before its fix (issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from searchlib import open_index
from searchlib.cli.main import main
from searchlib.errors import ImageDecodeError, QueryError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images

EXE = str(Path(sys.executable).with_name("searchlib"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """An index of 6 images (plus odd names added by the tests that need them)."""
    root = tmp_path_factory.mktemp("small")
    write_images(root / "p", 6)
    index_folder(root / "i", root / "p", model=TINY, device="cpu", workers=0)
    return root


def cli(*args, index=None):
    runner = CliRunner()
    return runner.invoke(main, (["--index", str(index)] if index else []) + [str(a) for a in args])


def _png_claiming(width: int, height: int, bit_depth: int = 8) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0 if bit_depth == 16 else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -- 3. pipes ------------------------------------------------------------------------------------
def test_a_closed_pipe_ends_quietly(small):
    proc = subprocess.run(f"{EXE} --index {small / 'i'} info | head -1; "
                          f"{EXE} --index {small / 'i'} list | head -1; echo codes ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert "rror" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("index:")
    assert proc.stdout.strip().endswith("codes 0")


BROKEN_HELPER = """
from searchlib.cli.main import main, run

@main.command("boom")
def boom():
    raise BrokenPipeError(32, "Broken pipe")  # as a pipe to a dead worker process would

run()
"""


def test_a_broken_pipe_that_is_not_stdout_is_an_error_not_a_silent_success():
    # Before: every BrokenPipeError was taken for a closed stdout and ended with exit code 0.
    proc = subprocess.run([sys.executable, "-c", BROKEN_HELPER, "boom"], capture_output=True, text=True)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "a pipe to a helper process broke" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_piped_tables_keep_whole_paths_and_escape_names(small, tmp_path):
    folder = tmp_path / ("a" * 120)
    write_images(folder, 1)
    odd = folder / "line\nbreak \u202egnp.jpg"
    shutil.copy(next(folder.iterdir()), odd)
    index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    out = cli("list", index=tmp_path / "i").stdout
    rows = out.splitlines()
    assert len(rows) == 3  # a header and one row per image: the newline did not split a row
    assert any(str(folder) + "/img_0_000.jpg" in r for r in rows)  # not shortened when piped
    assert "line\\nbreak \\u202egnp.jpg" in out and "\u202e" not in out
    lines = cli("list", "--nl", index=tmp_path / "i").stdout.splitlines()
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(str(p) for p in folder.iterdir())
    raw = cli("list", "--paths", "-0", index=tmp_path / "i").stdout_bytes.split(b"\0")
    assert os.fsencode(str(odd)) in raw
    assert cli("list", "-0", index=tmp_path / "i").exit_code == 2


def test_jq_and_a_strict_parser_read_json_with_non_utf8_names(tmp_path):
    folder = tmp_path / "p"
    write_images(folder, 1)
    raw = os.fsencode(str(folder)) + b"/\xff\xfe.png"
    shutil.copy(next(folder.iterdir()), raw)
    index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    out = subprocess.run([EXE, "--index", str(tmp_path / "i"), "search", "x", "--json"], capture_output=True,
                         check=True).stdout
    out.decode("utf-8", "strict")  # valid UTF-8
    if shutil.which("jq"):
        got = subprocess.run(["jq", "-r", ".[] | select(.path_bytes) | .path_bytes"], input=out,
                             capture_output=True, check=True).stdout.decode().split()
        import base64

        assert [base64.b64decode(g) for g in got] == [raw]
    pq = pytest.importorskip("pyarrow.parquet")
    result = cli("export", tmp_path / "v.parquet", index=tmp_path / "i")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "v.parquet").to_pydict()
    assert raw in table["path_bytes"] and all(isinstance(p, str) for p in table["path"])


# -- 5, 6. offline first run, models ------------------------------------------------------------
def test_offline_first_run_fails_fast_creates_nothing_and_names_the_fix(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    write_images(tmp_path / "p", 1)
    proc = subprocess.run([EXE, "--index", str(tmp_path / "new"), "index", str(tmp_path / "p")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "--model ViT-B-32 --checkpoint FILE" in proc.stderr and "not cached" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_models_lists_everything_without_torch():
    code = ("import sys, json; from click.testing import CliRunner; from searchlib.cli.main import main\n"
            "r = CliRunner().invoke(main, ['models', '--all', '--json']); assert r.exit_code == 0, r.output\n"
            "rows = json.loads(r.stdout); assert len(rows) > 100 and rows[0]['name'] == 'bundled'\n"
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- 7. failures remembered ---------------------------------------------------------------------
def test_an_unchanged_bad_file_is_not_retried_and_the_model_not_loaded(tmp_path, monkeypatch):
    folder = tmp_path / "p"
    write_images(folder, 2)
    (folder / "bad.jpg").write_bytes(b"not an image at all")
    first = index_folder(tmp_path / "i", folder, model=TINY, device="cpu", workers=0)
    assert first.failed == 1
    from searchlib import embedding

    loads = []
    monkeypatch.setattr(embedding.Embedder, "_load", lambda self: loads.append(1) or (_ for _ in ()).throw(
        AssertionError("the model was loaded")))
    second = index_folder(tmp_path / "i", folder, device="cpu", workers=0)
    assert (second.failed, second.failed_before, second.unchanged) == (0, 1, 2) and not loads
    monkeypatch.undo()
    third = index_folder(tmp_path / "i", folder, device="cpu", workers=0, retry_failed=True)
    assert third.failed == 1
    (folder / "bad.jpg").unlink()
    write_images(folder, 1, seed=4)[0].rename(folder / "bad.jpg")  # fixed: an image now
    fourth = index_folder(tmp_path / "i", folder, device="cpu", workers=0)
    assert (fourth.added, fourth.failed, fourth.failed_before) == (1, 0, 0)


def test_progress_starts_with_scanning(tmp_path):
    write_images(tmp_path / "p", 3)
    phases = []
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0,
                 progress=lambda p: phases.append(p.phase))
    assert phases[0] == "scanning" and "loading model" in phases and phases[-1] == "finishing"


# -- 8. a query is text -------------------------------------------------------------------------
def test_a_query_naming_a_file_in_the_current_folder_stays_text(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("sun").write_text("not an image")
    result = cli("search", "sun", "--json", index=small / "i")
    assert result.exit_code == 0, result.output
    with open_index(small / "i") as index:
        text = index.search("sun", k=3)
        probe = next((small / "p").iterdir())
    shutil.copy(probe, tmp_path / "probe.jpg")
    as_image = cli("search", "./probe.jpg", "-k", "1", "--json", index=small / "i")  # clearly a path: an image
    assert [h["id"] for h in json.loads(result.stdout)][:3] == [h.id for h in text]
    best = json.loads(as_image.stdout)[0]
    assert best["path"] == str(probe) and best["score"] == pytest.approx(1.0, abs=1e-5)


# -- 9. the library ------------------------------------------------------------------------------
def test_pil_images_bytes_and_paths_are_all_accepted(small):
    import searchlib

    probe = next((small / "p").iterdir())
    with open_index(small / "i") as index:
        by_path = index.search(probe, k=1)[0]
        by_pil = index.search(Image.open(probe), k=1)[0]
        by_bytes = index.search(probe.read_bytes(), k=1)[0]
    assert by_path.id == by_pil.id == by_bytes.id and by_pil.score > 0.99
    vecs = searchlib.embed_images([Image.open(probe), probe.read_bytes(), str(probe)], model=TINY, device="cpu")
    assert vecs.shape[0] == 3 and np.allclose(vecs[1], vecs[2], atol=1e-5)


def test_cancel_keeps_committed_work(tmp_path):
    import searchlib

    write_images(tmp_path / "p", 40)
    stop = threading.Event()

    def progress(p):
        if p.phase == "embedding" and p.done >= 8:
            stop.set()

    report = searchlib.index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0,
                                    batch_size=4, progress=progress, cancel=stop)
    assert report.cancelled and 8 <= report.added < 40
    with open_index(tmp_path / "i") as index:
        assert index.info()["images"] == report.added == index.vectors.ntotal
    again = searchlib.index_folder(tmp_path / "i", tmp_path / "p", device="cpu", workers=0)
    assert again.added == 40 - report.added and again.unchanged == report.added


def test_a_raising_progress_callback_keeps_what_was_embedded(tmp_path):
    write_images(tmp_path / "p", 20)

    def progress(p):
        if p.phase == "embedding" and p.done >= 12:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError):
        index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0, batch_size=4,
                     progress=progress)
    with open_index(tmp_path / "i") as index:
        assert index.info()["images"] >= 8


def test_remove_and_thread_safe_search(tmp_path):
    files = write_images(tmp_path / "p", 8)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        assert index.remove([files[0], files[1], tmp_path / "not-indexed.jpg"]) == 2
        assert index.info()["images"] == index.vectors.ntotal == 6
        expected = [h.id for h in index.search("a red circle", k=5)]
        errors, results = [], []

        def work():
            try:
                for _ in range(50):
                    results.append([h.id for h in index.search("a red circle", k=5)])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 200 and all(r == expected for r in results)


def test_index_help_hides_internals():
    import searchlib

    public = {name for name in dir(searchlib.Index) if not name.startswith("_")}
    assert not public & {"adopt_vectors", "finish_writing", "save_vectors", "invalidate_vectors"}


# -- 10. papercuts -------------------------------------------------------------------------------
def test_root_help_shows_whole_descriptions_and_the_default_index():
    from searchlib.config import default_index_dir

    out = cli("--help").stdout
    commands = out.split("Commands:")[1]
    assert "..." not in commands and str(default_index_dir()) in " ".join(out.split())


def test_list_shows_file_size_and_date_source(small):
    out = cli("list", index=small / "i").stdout
    header = out.splitlines()[0].split()
    assert header == ["date", "pixels", "size", "path"] and "(file)" in out and "KiB" in out


# -- 12. decompression bombs everywhere ----------------------------------------------------------
def test_search_image_classify_and_embed_images_refuse_bombs(small, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(20000, 20000, bit_depth=16))
    result = cli("search", "--image", bomb, index=small / "i")
    assert result.exit_code == 1 and "too large" in result.stderr
    result = cli("classify", bomb, "--labels", "a,b", index=small / "i")
    assert result.exit_code == 1 and "too large" in result.stderr
    import searchlib

    with pytest.raises(ImageDecodeError, match="too large"):
        searchlib.embed_images([bomb.read_bytes()], model=TINY, device="cpu")


def test_the_pixel_limit_counts_bytes_per_pixel(tmp_path):
    from searchlib.imaging import check_decoded_size

    check_decoded_size(10000, 10000, "RGB", 100_000_000)  # 100 MP RGB: allowed
    with pytest.raises(ImageDecodeError, match="too large"):
        check_decoded_size(9000, 9000, "F", 100_000_000)  # 81 MP but 324 MB as float


# -- 13. the same file twice ---------------------------------------------------------------------
def test_a_file_inside_a_given_folder_and_a_file_given_twice_are_indexed_once(tmp_path):
    files = write_images(tmp_path / "p", 3)
    report = index_folder(tmp_path / "i", tmp_path / "p", files[0], files[0], model=TINY, device="cpu", workers=0)
    assert (report.added, report.failed) == (3, 0)
    again = index_folder(tmp_path / "i", tmp_path / "p", files[1], device="cpu", workers=0)
    assert (again.unchanged, again.added) == (3, 0)


# -- 14. corrupt derived files -------------------------------------------------------------------
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


def test_a_bit_rotted_text_encoder_is_not_used(tmp_path):
    write_images(tmp_path / "p", 6)
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0)
    with open_index(tmp_path / "i") as index:
        expected = [h.id for h in index.search("a red circle", k=5)]
    onnx = tmp_path / "i" / "text_encoder.onnx"
    data = bytearray(onnx.read_bytes())
    for pos in range(len(data) // 2, len(data) // 2 + 4000, 7):
        data[pos] ^= 0x10
    onnx.write_bytes(bytes(data))
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


# -- 15. a damaged catalog -----------------------------------------------------------------------
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


# -- 16. a read-only index -----------------------------------------------------------------------
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


# -- 17. two runs creating one index -------------------------------------------------------------
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


# -- 18. disk full -------------------------------------------------------------------------------
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


# -- 19. temp files ------------------------------------------------------------------------------
def test_temp_files_left_by_kills_are_removed_by_the_next_writer(small):
    stale = [small / "i" / ".vectors.faiss.abc.tmp", small / "i" / ".text_encoder.onnx.123.tmp.opt"]
    for path in stale:
        path.write_bytes(b"x" * 100)
    index_folder(small / "i", small / "p", device="cpu", workers=0)
    assert not any(p.exists() for p in stale)


# -- 20. validation ------------------------------------------------------------------------------
def test_input_validation_messages(small, tmp_path):
    idx = small / "i"
    far = cli("search", "x", "--before", "9999", "--after", "9998", index=idx)
    assert far.exit_code == 0, far.output
    for bad in (["--min-score", "nan"], ["--relative", "nan"], ["--relative", "-1"]):
        result = cli("search", "x", *bad, index=idx)
        assert result.exit_code in (1, 2) and "must be" in result.stderr, (bad, result.output)
    locked = tmp_path / "locked"
    locked.mkdir()
    result = cli("export", "/proc/version.npy", index=idx)
    assert result.exit_code == 1 and "cannot write" in result.stderr
    result = cli("export", tmp_path / "new-dir" / "v.csv", index=idx)
    assert result.exit_code == 1 and not (tmp_path / "new-dir").exists()
    os.mkfifo(tmp_path / "fifo.jpg")
    result = cli("search", "--image", tmp_path / "fifo.jpg", index=idx)
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    with pytest.raises(QueryError):
        with open_index(idx) as index:
            index.search("x", k=0)


# -- 21. long queries ----------------------------------------------------------------------------
def test_a_huge_word_costs_bounded_work():
    from searchlib.tokenizing import MAX_WORD, ClipTokenizer

    tok = ClipTokenizer(77)
    word = "abcdefghij" * 1000
    np.testing.assert_array_equal(tok([word]), tok([word[:MAX_WORD]]))
    assert tok(["a red circle"])[0][:5].tolist() == [49406, 320, 736, 7117, 49407]


# -- 2. the library never prints -----------------------------------------------------------------
def test_loading_a_random_init_model_prints_nothing():
    code = ("from searchlib.embedding import Embedder\nfrom searchlib.models import parse_model_spec\n"
            f"Embedder(parse_model_spec({TINY!r}), device='cpu').embed_texts(['a'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr == "" and proc.stdout == ""
