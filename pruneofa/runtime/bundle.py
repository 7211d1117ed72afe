"""Open a `pruneofa bundle` file (model.tar.gz) for predict and eval: verified once, unpacked into the cache.

Nothing is ever extracted by tarfile's own path handling: every member is read as bytes, must be a regular file
listed in bundle.json with a plain name, and must match its sha256 before it is written into a staging folder
under $PRUNEOFA_CACHE/bundles; model.onnx is rebuilt from its packed parts and checked against the export's
sha256 (and so is the sparse form model.sparse.onnx, rebuilt from model.onnx where the export had one); the
folder is renamed into place last, so a folder there is a verified one (the cached verdict). The cache key is
the bundle file's sha256, so a changed bundle is never served from an old unpacking.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError
from pruneofa.core.files import apply_umask, make_staging_dir, sha256_file
from pruneofa.runtime.engines import ONNX_FILE, SPARSE_ONNX

BUNDLE_FORMAT = "pruneofa-bundle/1"
BUNDLE_MANIFEST = "bundle.json"
BUNDLE_SUFFIXES = (".tar.gz", ".tgz")


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_bundle_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(BUNDLE_SUFFIXES)


def _read_members(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            for info in tar:
                if not info.isreg() or "/" in info.name or info.name.startswith("."):
                    raise ModelError(f"{path}: member {info.name!r} is not a plain file; not a pruneofa bundle")
                fh = tar.extractfile(info)
                members[info.name] = fh.read() if fh else b""
            return members
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"{path}: not a readable .tar.gz ({exc}); re-create it with `pruneofa bundle`") from None


def _verified(path: Path, members: dict[str, bytes]) -> dict[str, Any]:
    if BUNDLE_MANIFEST not in members:
        raise ModelError(f"{path}: has no {BUNDLE_MANIFEST}; not a pruneofa bundle (make one with `pruneofa bundle`)")
    try:
        doc = json.loads(members[BUNDLE_MANIFEST])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: {BUNDLE_MANIFEST} is not JSON; the bundle is corrupt, re-create it") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{path}: {BUNDLE_MANIFEST} is not a {BUNDLE_FORMAT} document; re-create the bundle")
    listed = doc.get("members") or {}
    extra = set(members) - set(listed) - {BUNDLE_MANIFEST}
    if extra:
        raise ModelError(f"{path}: members not listed in {BUNDLE_MANIFEST}: {sorted(extra)}; re-create the bundle")
    for name, entry in listed.items():
        if name not in members:
            raise ModelError(f"{path}: member {name} is missing; the bundle is incomplete, re-create it")
        if bytes_sha256(members[name]) != entry.get("sha256"):
            raise ModelError(f"{path}: member {name} does not match its sha256; the bundle is corrupt, re-create it")
    return doc


def _unpack_into(folder: Path, path: Path, members: dict[str, bytes], doc: dict[str, Any]) -> None:
    from pruneofa.runtime import packed

    for name, data in members.items():
        if name not in (packed.SKELETON_FILE, packed.ARRAYS_FILE):
            (folder / name).write_bytes(data)
    unpacked = doc.get("unpacked") or {}
    model = packed.unpack(members[packed.SKELETON_FILE], members[packed.ARRAYS_FILE])
    if bytes_sha256(model) != (unpacked.get(ONNX_FILE) or {}).get("sha256"):
        raise ModelError(f"{path}: unpacked {ONNX_FILE} does not match the export's sha256; re-create the bundle")
    (folder / ONNX_FILE).write_bytes(model)
    if SPARSE_ONNX in unpacked:
        _rebuild_sparse_form(folder, model, unpacked[SPARSE_ONNX])


def _rebuild_sparse_form(folder: Path, model: bytes, entry: dict[str, Any]) -> None:
    """Write the sparse form the export verified, rebuilt from model.onnx. Where the rebuild differs from it (an
    onnx version that serializes differently), it is left out rather than run unverified: the
    openvino-sparse engine then says it is missing, every other engine is unaffected."""
    import onnx

    from pruneofa.kernels.sparse_form import rewrite

    proto = onnx.load_from_string(model)
    rewrite(proto)
    data = proto.SerializeToString()
    if bytes_sha256(data) == entry.get("sha256"):
        (folder / SPARSE_ONNX).write_bytes(data)


def open_bundle(path: Path, cache_dir: Path | None = None) -> Path:
    """The verified, unpacked folder of bundle file `path` (made on first use, then reused)."""
    key = sha256_file(path)[:32]
    root = (cache_dir or default_cache_dir()) / "bundles"
    folder = root / key
    if folder.is_dir():
        return folder
    members = _read_members(path)
    doc = _verified(path, members)
    root.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(folder)
    try:
        _unpack_into(staging, path, members, doc)
        apply_umask(staging)
        try:
            os.replace(staging, folder)
        except OSError:  # another process unpacked the same bundle first: theirs is as good
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
