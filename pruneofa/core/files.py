"""File helpers with no heavy imports (the torch-free predict path uses them): JSON objects read with a one-line
error, JSON written atomically, sha256 of a file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
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
