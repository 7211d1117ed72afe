"""File helpers with no heavy imports (the torch-free predict path uses them): JSON objects read with a one-line
error, JSON written atomically, sha256 of a file, and the staging folders every atomic folder write goes through
(named after their target, host and process, so the leftovers of a killed run are recognised and removed), with
the user's umask applied to what is published."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pruneofa.core.errors import ModelError


def read_json(path: Path, fix: str = "the file is corrupt, re-create it") -> dict[str, Any]:
    """A JSON object from `path`; anything else is a ModelError naming the file and `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not readable JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object; {fix}")
    return data


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_staging_prefix(path)}{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        apply_umask(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digest(path: Path) -> str:
    """sha256 over the relative path and sha256 of every file under `path` (or of the file itself)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for entry in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{entry.relative_to(path).as_posix()}\0{sha256_file(entry)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- staging folders and permissions

STAGING_MARK = ".staging-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path` (and, for a folder, everything under it) the modes a plain mkdir / open would under the user's
    umask: mkdtemp and mkstemp create owner-only entries, which would make shared outputs unreadable to others."""
    mask = _umask()
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for entry in entries:
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~mask)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}{STAGING_MARK}{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging folders of `target` left by killed processes of this host (a live process's, or another
    host's on a shared filesystem, are kept); returns what was removed."""
    removed: list[Path] = []
    prefix = _staging_prefix(target)
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def make_staging_dir(target: Path) -> Path:
    """A new hidden folder beside `target` to build it in (`.NAME.staging-HOST-PID-XXXX`), after removing stale
    ones of earlier killed runs. Publish it with `os.replace` once complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{_staging_prefix(target)}{os.getpid()}-"))


# ---------------------------------------------------------------- cache locks


@contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock for building `target` (a cache entry): `fcntl.flock` on `.NAME.lock` beside it, so
    builders in other processes, or on other nodes sharing the filesystem, wait here instead of interleaving. The
    lock file stays (removing it would let a waiter and a newcomer both hold a lock); it is empty."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
