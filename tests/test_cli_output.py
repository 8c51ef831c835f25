"""The command line as pipes, jq and people meet it: closed pipes, escaped names, JSON with
non-UTF-8 names, help texts, listings and one-line validation messages.

Each test failed before its fix (most from a newcomer's pass, issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchlib import open_index
from searchlib.errors import QueryError
from searchlib.indexer import index_folder
from tests.conftest import TINY, write_images
from tests.helpers_cli import EXE, cli


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


def test_progress_starts_with_scanning(tmp_path):
    write_images(tmp_path / "p", 3)
    phases = []
    index_folder(tmp_path / "i", tmp_path / "p", model=TINY, device="cpu", workers=0,
                 progress=lambda p: phases.append(p.phase))
    assert phases[0] == "scanning" and "loading model" in phases and phases[-1] == "finishing"


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


def test_index_help_hides_internals():
    import searchlib

    public = {name for name in dir(searchlib.Index) if not name.startswith("_")}
    assert not public & {"adopt_vectors", "finish_writing", "save_vectors", "invalidate_vectors"}


def test_root_help_shows_whole_descriptions_and_the_default_index():
    from searchlib.config import default_index_dir

    out = cli("--help").stdout
    commands = out.split("Commands:")[1]
    assert "..." not in commands and str(default_index_dir()) in " ".join(out.split())


def test_list_shows_file_size_and_date_source(small):
    out = cli("list", index=small / "i").stdout
    header = out.splitlines()[0].split()
    assert header == ["date", "pixels", "size", "path"] and "(file)" in out and "KiB" in out


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


def test_a_huge_word_costs_bounded_work():
    from searchlib.tokenizing import MAX_WORD, ClipTokenizer

    tok = ClipTokenizer(77)
    word = "abcdefghij" * 1000
    np.testing.assert_array_equal(tok([word]), tok([word[:MAX_WORD]]))
    assert tok(["a red circle"])[0][:5].tolist() == [49406, 320, 736, 7117, 49407]
