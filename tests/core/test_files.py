"""Atomic writes leave nothing behind: staging folders are named after target, host and process, and those of
killed processes are removed by the next write; what is published carries the user's umask, not mkdtemp's 0700."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruneofa.core.files import (
    apply_umask,
    make_staging_dir,
    remove_stale_staging,
    write_json_atomic,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_of_dead_processes_is_removed_live_and_foreign_kept(tmp_path: Path) -> None:
    target = tmp_path / "export"
    host = socket.gethostname()
    dead = tmp_path / f".export.staging-{host}-{_dead_pid()}-abc"
    live = tmp_path / f".export.staging-{host}-{os.getpid()}-def"
    foreign = tmp_path / f".export.staging-otherhost-{_dead_pid()}-ghi"  # another node on a shared filesystem
    unrelated = tmp_path / ".other.staging-x"
    for folder in (dead, live, foreign, unrelated):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    assert remove_stale_staging(target) == [dead]
    assert not dead.exists() and live.exists() and foreign.exists() and unrelated.exists()
    fresh = make_staging_dir(target)
    assert fresh.name.startswith(f".export.staging-{host}-{os.getpid()}-") and fresh.is_dir()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_published_files_follow_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        folder = make_staging_dir(tmp_path / "out")
        (folder / "f.txt").write_text("x")
        apply_umask(folder)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (folder / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_killed_json_write_leftover_is_cleaned(tmp_path: Path) -> None:
    leftover = tmp_path / f".state.json.staging-{socket.gethostname()}-{_dead_pid()}-x.tmp"
    leftover.write_text("{")
    write_json_atomic(tmp_path / "state.json", {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.slow
def test_sigkilled_export_leaves_no_staging_after_the_next_run(tiny_exports: Path, tmp_path: Path) -> None:
    """The real thing: `pruneofa export` killed with SIGKILL mid-way, then run again into the same place."""
    out = tmp_path / "int8"
    cmd = [sys.executable, "-m", "pruneofa", "export", str(tiny_exports / "stage2"), "--output_dir", str(out)]
    cmd += ["--no_verify"]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if ".staging-" in p.name] and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert [p for p in tmp_path.iterdir() if ".staging-" in p.name], "the kill came after the staging folder went"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~mask
