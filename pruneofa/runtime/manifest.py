"""An export folder's manifest.json: what `pruneofa export` recorded (files with sha256 and sizes, labels, task,
precision, verification). eval, bench and predict run only a folder whose files are the ones recorded there.

Hashing a model on every `predict` would cost its start-up, so a verdict is cached: under
$PRUNEOFA_CACHE/verified, keyed by the folder's path and the size and modification time of every file it
lists; any change to a file (or to the manifest) changes the key, and the files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError
from pruneofa.core.files import read_json, sha256_file

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none (a folder not written by `pruneofa export`)."""
    path = folder / MANIFEST
    return read_json(path) if path.is_file() else None


def _verdict_key(folder: Path, names: list[str]) -> str:
    stats = []
    for name in [MANIFEST, *names]:
        stat = (folder / name).stat()
        stats.append([name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps([str(folder.resolve()), stats]).encode()).hexdigest()


def verify_export(folder: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """The manifest of export `folder` after checking that every file it lists that is there has its recorded
    sha256."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise ModelError(
            f"{folder}: has no {MANIFEST}, so its files cannot be checked; use a folder written by `pruneofa export` "
            "(or re-export it)"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{folder / MANIFEST}: lists no files; re-export the model")
    # A file that is gone cannot lie: the engine that needs it says so; every file that is there must be the one
    # the export recorded.
    present = [name for name in files if (folder / name).is_file()]
    marker = (cache_dir or default_cache_dir()) / "verified" / _verdict_key(folder, present)
    if marker.is_file():
        return manifest
    for name in present:
        entry = files[name]
        if sha256_file(folder / name) != (entry or {}).get("sha256"):
            raise ModelError(
                f"{folder / name}: does not match the sha256 in {MANIFEST} (changed since export); re-export the model"
            )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(folder.resolve()) + "\n")
    return manifest
