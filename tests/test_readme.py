"""The README's "From Python" script runs as written (in a fresh process, in a scratch folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_python_api_script_runs(tmp_path: Path) -> None:
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python block under 'From Python'"
    done = subprocess.run(
        [sys.executable, "-c", match.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs/api/int8/manifest.json").is_file()
    assert '"label"' in done.stdout or "'label'" in done.stdout
