"""The README's Python example runs as written; its documented commands exist."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from searchlib.models import BUNDLED_WEIGHTS

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not built")
def test_library_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    for code in blocks:
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]


def test_every_documented_command_exists():
    from cli.main import main

    documented = set(re.findall(r"`searchlib ([a-z-]+)", README.read_text()))
    assert documented <= set(main.commands), documented - set(main.commands)
    assert set(main.commands) <= documented, set(main.commands) - documented
