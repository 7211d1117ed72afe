"""How the tests drive the CLI: the real entry point in a fresh process, or in-process for error lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pruneofa.cli import main


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pruneofa", *args], capture_output=True, text=True, timeout=600, input=stdin
    )


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run in-process, expect exit code 2 and a single error line with no traceback; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]
