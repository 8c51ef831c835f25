"""CLI contract: commands, JSON fields, help texts, one-line errors and exit codes."""

import json

import pytest
from click.testing import CliRunner

from searchlib.cli.main import COMMAND_MODULES, load_all_commands, main
from tests.conftest import TINY

load_all_commands()


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, index_dir, *args):
    return runner.invoke(main, ["--index", str(index_dir), *args], catch_exceptions=False)


@pytest.fixture
def indexed(runner, images_dir, index_dir):
    result = run(runner, index_dir, "index", str(images_dir), "--model", TINY, "--device", "cpu",
                 "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_command_is_loaded_from_the_module_the_map_names():
    """A command line imports only its command's module (cli.main.COMMAND_MODULES): the map must
    name every command, and the right module for each."""
    assert set(COMMAND_MODULES) == set(main.commands)
    for name, command in main.commands.items():
        assert command.callback.__module__.rsplit(".", 1)[-1] == COMMAND_MODULES[name], name


def test_a_search_imports_no_other_commands_module():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from searchlib.cli.main import main; "
            "CliRunner().invoke(main, ['search', '--help']); "
            "print(sorted(m.rsplit('.', 1)[-1] for m in sys.modules if m.startswith('searchlib.cli.cmd_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cmd_search']"
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("searchlib"))
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert all(name in helped.stdout for name in COMMAND_MODULES), helped.stdout + helped.stderr


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert main.commands[command].help and len(main.commands[command].help) > 30
    assert "Usage:" in result.output


def test_index_json_report(indexed):
    assert set(indexed) >= {"added", "updated", "unchanged", "removed", "failed", "failures", "seconds"}
    assert indexed["added"] == 12 and indexed["failures"] == [] and isinstance(indexed["seconds"], float)


def test_index_reports_bad_files_and_goes_on(runner, images_dir, index_dir):
    (images_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (images_dir / "empty.png").write_bytes(b"")
    result = run(runner, index_dir, "index", str(images_dir), "--model", TINY, "--device", "cpu",
                 "--workers", "0", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["added"] == 12 and report["failed"] == 2
    assert {f["path"].rsplit("/", 1)[1] for f in report["failures"]} == {"broken.jpg", "empty.png"}
    assert "skipped" in result.stderr


def test_search_table_and_json(runner, indexed, index_dir):
    result = run(runner, index_dir, "search", "a red circle", "-k", "3", "--json")
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits == sorted(hits, key=lambda h: -h["score"])
    assert {"rank", "id", "path", "score", "width", "height", "taken_at", "content_hash"} <= set(hits[0])
    table = run(runner, index_dir, "search", "a red circle", "-k", "2").stdout.splitlines()
    assert table[0].split() == ["rank", "score", "relevance", "date", "path"] and len(table) == 3


def test_info_and_list(runner, indexed, index_dir):
    info = json.loads(run(runner, index_dir, "info", "--json").stdout)
    assert info["images"] == info["vectors"] == 12
    assert info["model"]["name"] == TINY and info["index_type"] == "Flat"
    assert info["bytes_on_disk"]["catalog.sqlite"] > 0
    assert "images:      12" in run(runner, index_dir, "info").stdout
    listed = json.loads(run(runner, index_dir, "list", "--json").stdout)
    assert len(listed) == 12 and all("path" in x and "width" in x for x in listed)


def test_models_json(runner):
    rows = json.loads(runner.invoke(main, ["models", "--json"]).stdout)
    assert rows[0]["name"] == "bundled"
    assert {"name", "available_offline", "note", "languages"} == set(rows[0])


def test_search_without_index_is_one_line_exit_1(runner, tmp_path):
    result = run(runner, tmp_path / "none", "search", "cat")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "no index at" in result.stderr
    assert "Traceback" not in result.output


def test_model_mismatch_exit_1(runner, indexed, images_dir, index_dir):
    result = run(runner, index_dir, "index", str(images_dir), "--model", "ViT-B-32/random")
    assert result.exit_code == 1 and "searchlib-tiny/random" in result.stderr and "ViT-B-32/random" in result.stderr


def test_bad_path_and_bad_model_exit_1(runner, index_dir, tmp_path):
    result = run(runner, index_dir, "index", str(tmp_path / "missing"))
    assert result.exit_code == 1 and "path not found" in result.stderr
    result = run(runner, index_dir, "index", str(tmp_path), "--model", "NoSuch/thing")
    assert result.exit_code == 1 and "unknown model architecture" in result.stderr


def test_usage_errors_exit_2(runner, index_dir):
    assert run(runner, index_dir, "search").exit_code == 2
    assert run(runner, index_dir, "search", "x", "-k", "0").exit_code == 2
    assert runner.invoke(main, ["nosuchcommand"]).exit_code == 2


def test_index_dir_from_environment(runner, indexed, index_dir):
    result = runner.invoke(main, ["info", "--json"], env={"SEARCHLIB_INDEX": str(index_dir)})
    assert json.loads(result.stdout)["images"] == 12


def test_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from searchlib.cli.main import main; "
            "assert 'torch' not in sys.modules and 'faiss' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_corrupt_catalog_is_one_line_exit_1(runner, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "catalog.sqlite").write_bytes(b"this is not sqlite" * 300)
    result = run(runner, tmp_path / "bad", "info")
    assert result.exit_code == 1 and "cannot be read" in result.stderr and "Traceback" not in result.output


def test_index_option_after_the_command_name(runner, indexed, index_dir):
    result = runner.invoke(main, ["info", "--index", str(index_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["images"] == 12
    result = runner.invoke(main, ["search", "a cat", "--index", str(index_dir), "-k", "2", "--json"])
    assert len(json.loads(result.stdout)) == 2
