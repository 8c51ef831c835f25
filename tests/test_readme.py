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
    for n, code in enumerate(blocks):
        script = tmp_path / f"example_{n}.py"  # as a user saves it: a plain script, no __main__ guard
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stderr == "", result.stderr[-2000:]  # the library never prints, not even a warning
        assert "40 0" in result.stdout  # every photo indexed, none failed


def test_every_documented_command_exists():
    from searchlib.cli.main import load_all_commands, main

    load_all_commands()
    documented = set(re.findall(r"`searchlib ([a-z-]+)", README.read_text()))
    assert documented <= set(main.commands), documented - set(main.commands)
    assert set(main.commands) <= documented, set(main.commands) - documented
