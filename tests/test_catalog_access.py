"""Reaching a catalog: a newer schema, an unreachable or refusing server, a password in the URL.

Each failure is one line, exit 1, leaves no index directory behind, and never shows a password.
"""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from searchlib.cli.main import main
from searchlib.index import Index


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://u@127.0.0.1:5/db?password=s3cret",
    "postgresql://u:s3cret@h/db?PassWord=s3cret&sslmode=require&password=s3cret",
    "postgresql+psycopg://u@h/db?sslpassword=s3cret",
    "postgresql://u:s3cret@h:notaport/db?password=s3cret",  # not a URL SQLAlchemy reads
])
def test_masked_url_hides_every_form_of_password(url):
    from searchlib.catalog.engine import masked_url

    shown = masked_url(url)
    assert "s3cret" not in shown and "***" in shown
    assert "sslmode=require" in shown or "sslmode" not in url  # the rest is kept


@pytest.mark.parametrize("command", [["search", "red"], ["info"], ["list"], ["verify"], ["info", "--json"]])
def test_a_catalog_from_a_newer_searchlib_is_one_line_for_every_command(tmp_path, command):
    Index.open_or_create(tmp_path / "i").close()
    with sqlite3.connect(tmp_path / "i" / "catalog.sqlite") as con:
        con.execute("UPDATE alembic_version SET version_num = '0099'")
    line = _one_line_error(CliRunner().invoke(main, ["--index", str(tmp_path / "i"), *command]))
    assert "written by a newer searchlib (schema 0099" in line and "upgrade searchlib" in line
    with sqlite3.connect(tmp_path / "i" / "catalog.sqlite") as con:  # nothing was migrated or written
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]


def test_a_newer_catalog_refuses_an_index_run_too(tmp_path):
    from tests.conftest import TINY, write_images

    write_images(tmp_path / "p", 2)
    Index.open_or_create(tmp_path / "i").close()
    with sqlite3.connect(tmp_path / "i" / "catalog.sqlite") as con:
        con.execute("UPDATE alembic_version SET version_num = '0099'")
    line = _one_line_error(CliRunner().invoke(main, ["--index", str(tmp_path / "i"), "index", str(tmp_path / "p"),
                                                     "--model", TINY]))
    assert "newer searchlib (schema 0099" in line


@pytest.mark.parametrize("command", [["search", "red"], ["info"], ["index", "."]])
def test_nothing_listening_is_cannot_connect_and_leaves_no_directory(tmp_path, command):
    url = "postgresql://someone@127.0.0.1:1/photos?password=s3cret"
    result = CliRunner().invoke(main, ["--index", str(tmp_path / "new" / "cache"), "--catalog", url, *command])
    line = _one_line_error(result)
    assert line.startswith("Error: cannot connect to the catalog at 127.0.0.1:1: ") and "refused" in line
    assert "s3cret" not in result.output
    assert not (tmp_path / "new").exists()


def test_a_bad_catalog_url_is_a_one_line_error_without_the_password(tmp_path):
    url = "postgresql://someone:s3cret@host:notaport/photos?password=s3cret"
    result = CliRunner().invoke(main, ["--index", str(tmp_path / "c"), "--catalog", url, "info"])
    line = _one_line_error(result)
    assert "cannot use the catalog URL" in line and "s3cret" not in result.output


def test_a_password_in_the_url_query_is_masked_everywhere_and_a_wrong_one_is_said_plainly(postgres, tmp_path):
    user = postgres.password_user("right-pw-123")
    database = postgres.new_database().rsplit("/", 1)[1]
    base = f"postgresql://{user}@127.0.0.1:{postgres.port}/{database}"
    good = base + "?password=right-pw-123"
    Index.open_or_create(tmp_path / "cache", catalog=good).close()
    runner = CliRunner()
    for command in (["info"], ["info", "--json"], ["-vv", "info"], ["verify"], ["search", "red"]):
        result = runner.invoke(main, ["--index", str(tmp_path / "cache"), "--catalog", good, *command])
        assert "right-pw-123" not in result.output, (command, result.output)
    info = runner.invoke(main, ["--index", str(tmp_path / "cache"), "--catalog", good, "info"])
    assert info.exit_code == 0 and "password=***" in info.output
    wrong = runner.invoke(main, ["--index", str(tmp_path / "fresh"), "--catalog", base + "?password=wrong-pw-456",
                                 "search", "red"])
    line = _one_line_error(wrong)
    assert line.startswith(f"Error: cannot connect to the catalog at 127.0.0.1:{postgres.port}: ")
    assert "password authentication failed" in line and "wrong-pw-456" not in wrong.output
    assert not (tmp_path / "fresh").exists()
