"""On-disk caches that several processes (the local rank 0 of every node, on one shared filesystem) may build at
the same moment: built under a file lock, published with one rename, so builders never interleave."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

# Two hosts on one shared filesystem can run builders with the same pid: a staging name made of the pid alone
# would then be shared by both. Every builder here claims pid 4242 and writes slowly, to force the overlap.
TINY_BUILDER = r"""
import os, sys, time
from pathlib import Path
cache, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
os.getpid = lambda: 4242
import pruneofa.models.loading as loading
real_save = loading.save_file
def slow_save(*args, **kwargs):
    with log.open("a") as f:
        f.write("start\n")
    time.sleep(1.0)
    real_save(*args, **kwargs)
    with log.open("a") as f:
        f.write("end\n")
loading.save_file = slow_save
Path(f"{go}.ready{sys.argv[-1]}").touch()
while not go.exists():
    time.sleep(0.01)
print(loading.resolve_model("tiny-bert", cache))
"""


def run_concurrently(code: str, *args: str, copies: int = 2, go: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start `copies` processes running `code`, release them together (by creating `go`), wait for all."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(copies)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(copies)):  # every one has imported and waits
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a builder did not start"
        time.sleep(0.05)
    go.touch()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.slow
def test_tiny_bert_built_once_by_concurrent_builders(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    done = run_concurrently(TINY_BUILDER, str(cache), str(log), str(tmp_path / "go"), go=tmp_path / "go")
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    paths = {proc.stdout.strip().splitlines()[-1] for proc in done}
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert log.read_text().split() == ["start", "end"]  # one build; the other process waited and reused it
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == [folder.name]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert load_file(folder / "model.safetensors")


LOCK_HOLDER = r"""
import sys, time
from pathlib import Path
from pruneofa.core.files import locked
target, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
Path(f"{go}.ready{sys.argv[-1]}").touch()
while not go.exists():
    time.sleep(0.01)
with locked(target):
    with log.open("a") as f:
        f.write("in\n")
    time.sleep(0.5)
    with log.open("a") as f:
        f.write("out\n")
"""


def test_locked_admits_one_process_at_a_time(tmp_path: Path) -> None:
    from pruneofa.core.files import locked

    target, log = tmp_path / "entry", tmp_path / "log"
    done = run_concurrently(LOCK_HOLDER, str(target), str(log), str(tmp_path / "go"), copies=3, go=tmp_path / "go")
    assert all(proc.returncode == 0 for proc in done), [proc.stderr[-2000:] for proc in done]
    assert log.read_text().split() == ["in", "out"] * 3
    assert not target.exists()  # the lock lives beside the entry, never in its place
    with locked(target):  # and is free again once every holder left
        pass
