"""searchlib demo: offline, on a fresh directory, with the bundled model."""

import json

import pytest
from click.testing import CliRunner

from searchlib.cli.main import main
from searchlib.models import BUNDLED_WEIGHTS

pytestmark = pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")


def test_demo_generates_indexes_and_searches(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--count", "40", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["report"]["added"] == 40 and out["report"]["failed"] == 0
    assert len(out["queries"]) >= 5 and all(len(q["hits"]) == 3 for q in out["queries"])
    assert all(h["true_caption"] for q in out["queries"] for h in q["hits"])
    assert any(not q["query"].isascii() for q in out["queries"])  # one query in Chinese
    assert out["relevant_only"]["query"] == "a cat" and out["relevant_only"]["hits"] == []
    assert (tmp_path / "demo" / "photos" / "captions.csv").is_file()
    again = runner.invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--count", "40"])
    assert again.exit_code == 0 and "40 unchanged" in again.stdout and "Try next" in again.stdout
