"""`pruneofa bundle`: one file to ship. An export folder -> model.tar.gz with the model (ONNX, its sparse int8
weights packed; OpenVINO IR on request), tokenizer, labels (config.json), the export's manifest.json, a
bundle.json with the sha256 of every member (and of the unpacked model.onnx and, for int8 exports, of the sparse
form model.sparse.onnx, which unpacking rebuilds from model.onnx: no extra bytes), and a README of how to run it.

The export is checked against its own manifest first: a bundle is only ever made of verified, unchanged files.
Members are written in a fixed order with fixed metadata, so the same export gives the same bundle bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.files import apply_umask, make_staging_dir, sha256_file
from pruneofa.runtime import packed
from pruneofa.runtime.bundle import BUNDLE_FORMAT, BUNDLE_MANIFEST, BUNDLE_SUFFIXES, bytes_sha256
from pruneofa.runtime.engines import IR_BIN, IR_XML, ONNX_FILE, SPARSE_ONNX
from pruneofa.runtime.manifest import MANIFEST, read_manifest

SUPPORT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
README = """# {name}

A `pruneofa` bundle: {precision} {task} classifier ({sparsity:.0%} sparse), labels {labels}.

Run it (needs `pip install pruneofa`, or just onnxruntime + tokenizers for the unpacked model):

    pruneofa predict {name} "a gorgeous, witty, seductive movie"
    echo '{{"text": "a dull mess"}}' | pruneofa predict {name}
    pruneofa eval {name} --task_name {task}
{sparse_line}
`predict` and `eval` verify every member against bundle.json once, unpack into $PRUNEOFA_CACHE/bundles
(model.onnx is rebuilt from model.skeleton.onnx + model.packed.npz and checked against its sha256) and reuse it.
manifest.json is the export's record: dev-set verification, per-layer sparsity, file hashes.
"""
SPARSE_LINE = """    pruneofa predict {name} --engine openvino-sparse "a gorgeous movie"   # the zero-skipping kernel
"""


def check_export(folder: Path) -> dict[str, Any]:
    """The export's manifest, after checking every file it lists is present and unchanged."""
    if not folder.is_dir():
        raise PruneofaError(f"EXPORT_DIR {folder}: no such folder; pass a folder written by `pruneofa export`")
    manifest = read_manifest(folder)
    if manifest is None:
        raise ModelError(f"{folder}: no {MANIFEST}; bundle only folders written by `pruneofa export`")
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            raise ModelError(f"{path}: missing or changed since export (sha256 differs from {MANIFEST}); re-export")
    if ONNX_FILE not in manifest.get("files", {}):
        raise ModelError(f"{folder}: has no {ONNX_FILE}; export with --format onnx (the bundle ships ONNX)")
    return manifest


def bundle_members(folder: Path, manifest: dict[str, Any], with_openvino: bool) -> dict[str, bytes]:
    """Member name -> bytes, in the order they are written."""
    members: dict[str, bytes] = {}
    for name in SUPPORT_FILES:
        if (folder / name).is_file():
            members[name] = (folder / name).read_bytes()
    members[MANIFEST] = (folder / MANIFEST).read_bytes()
    skeleton, arrays, _ = packed.pack((folder / ONNX_FILE).read_bytes())
    members[packed.SKELETON_FILE], members[packed.ARRAYS_FILE] = skeleton, arrays
    if with_openvino:
        if IR_XML not in manifest.get("files", {}):
            raise ModelError(f"{folder}: has no OpenVINO IR; export with --format onnx,openvino or drop --openvino")
        members[IR_XML], members[IR_BIN] = (folder / IR_XML).read_bytes(), (folder / IR_BIN).read_bytes()
    return members


def unpacked_files(manifest: dict[str, Any]) -> dict[str, Any]:
    """The files the unpacking rebuilds, with the export's sha256 each must match: model.onnx from its packed
    parts and, for int8 exports that have one, the sparse form rebuilt from model.onnx (it is a deterministic
    rewrite of it, so it costs the bundle no bytes)."""
    files = manifest["files"]
    return {name: files[name] for name in (ONNX_FILE, SPARSE_ONNX) if name in files}


@dataclass(frozen=True)
class BundleConfig:
    """Where the bundle goes (a .tar.gz file), whether it also carries the OpenVINO IR (the ONNX model runs on
    both engines; the IR only saves OpenVINO's conversion at start-up), and whether to replace an existing file."""

    output: Path
    with_openvino: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.output.name.endswith(BUNDLE_SUFFIXES):
            raise PruneofaError(f"--output {self.output}: name the bundle file *.tar.gz (e.g. model.tar.gz)")


def _is_bundle(path: Path) -> bool:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            return BUNDLE_MANIFEST in tar.getnames()
    except (tarfile.TarError, OSError, EOFError):
        return False


def write_bundle(folder: Path, cfg: BundleConfig) -> dict[str, Any]:
    """Write the bundle of export `folder` to `cfg.output` (atomically); returns its bundle.json document."""
    output, with_openvino, overwrite = cfg.output, cfg.with_openvino, cfg.overwrite
    if output.exists() and not overwrite:
        raise PruneofaError(f"--output {output}: already exists; pass --overwrite to replace it")
    if output.is_dir():
        raise PruneofaError(f"--output {output}: is a folder; name the bundle file, e.g. {output / 'model.tar.gz'}")
    if output.exists() and not _is_bundle(output):
        raise PruneofaError(
            f"--output {output}: exists and is not a pruneofa bundle; --overwrite only replaces a bundle, choose "
            "another file name"
        )
    manifest = check_export(folder)
    members = bundle_members(folder, manifest, with_openvino)
    members["README.md"] = README.format(
        name=output.name,
        precision=manifest.get("precision"),
        task=manifest.get("task_name"),
        sparsity=(manifest.get("sparsity") or {}).get("overall") or 0.0,
        labels=", ".join((manifest.get("labels") or {}).values()),
        sparse_line=SPARSE_LINE.format(name=output.name) if SPARSE_ONNX in manifest.get("files", {}) else "",
    ).encode()
    doc = {
        "format": BUNDLE_FORMAT,
        "task_name": manifest.get("task_name"),
        "precision": manifest.get("precision"),
        "members": {name: {"sha256": bytes_sha256(data), "bytes": len(data)} for name, data in members.items()},
        "unpacked": unpacked_files(manifest),
    }
    members[BUNDLE_MANIFEST] = (json.dumps(doc, indent=2) + "\n").encode()
    staging = make_staging_dir(output)
    tmp = staging / output.name
    try:
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in [BUNDLE_MANIFEST, *(n for n in members if n != BUNDLE_MANIFEST)]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
                tar.addfile(info, io.BytesIO(members[name]))
        apply_umask(tmp)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**doc, "file": str(output), "bytes": output.stat().st_size}
