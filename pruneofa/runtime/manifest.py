"""An export folder's manifest.json: what `pruneofa export` recorded (files with sha256 and sizes, labels, task,
precision, verification). Read by eval, bench and predict; written by the export step (export/layout.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruneofa.core.files import read_json

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none (a folder not written by `pruneofa export`)."""
    path = folder / MANIFEST
    return read_json(path) if path.is_file() else None
