"""The export folder as other tools load it: HF config + tokenizer beside model.onnx / openvino_model.xml, and a
manifest of every file (sha256, size raw and gzipped).

Layout rules (see reference/stack.md): config.json keeps model_type/id2label/label2id; tokenizer.json has no
padding or truncation baked in; tokenizer_config.json sets model_max_length (else truncation silently does
nothing in transformers); no model.safetensors (optimum-intel would silently re-export fp32 from it).
The folder is built in a staging directory beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pruneofa.core.errors import ModelError
from pruneofa.core.files import apply_umask, make_staging_dir, read_json, sha256_file, write_json_atomic
from pruneofa.core.outputs import claim_output_dir
from pruneofa.runtime.manifest import MANIFEST

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_CONFIG_KEYS = ("model_type", "id2label", "label2id")
GZIP_LEVEL = 9


def check_sources(src: Path) -> None:
    """Refuse early what the bundle cannot be built from: a config without labels, a missing fast tokenizer."""
    config = read_json(src / "config.json")
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise ModelError(f"{src / 'config.json'}: lacks {', '.join(missing)}; re-save it with save_pretrained")
    if not (src / "tokenizer.json").is_file():
        raise ModelError(
            f"{src}: no tokenizer.json (missing tokenizer); the runtime needs the fast tokenizer's file, save it "
            "next to the model with tokenizer.save_pretrained"
        )
    read_json(src / "tokenizer.json")


def write_config_and_tokenizer(src: Path, dst: Path, max_length: int) -> None:
    shutil.copyfile(src / "config.json", dst / "config.json")
    tokenizer = read_json(src / "tokenizer.json")
    # A saved fast tokenizer remembers the last padding/truncation it was called with (e.g. Fixed(128)):
    # raw `tokenizers` users would inherit it, so the runtime sets them per call instead.
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    (dst / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    tok_config = read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    tok_config["model_max_length"] = max_length
    for key in ("max_length", "is_local", "local_files_only"):  # call-time leftovers, not tokenizer settings
        tok_config.pop(key, None)
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    for name in ("special_tokens_map.json", "vocab.txt"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def gzip_size(path: Path) -> int:
    """Bytes of `gzip -9` of the file: what a download of the file costs compressed."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256, size and gzip size of every file in `folder` except the manifest itself."""
    return {
        path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size, "gzip_bytes": gzip_size(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(folder / MANIFEST, manifest)


@contextlib.contextmanager
def staged_folder(output_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder beside `output_dir` that replaces it only if the block finishes without error.

    An error (a failed verification included) removes the staging folder: nothing half-made or unverified is
    ever left at `output_dir`, and an existing good export there is kept.
    """
    claim_output_dir(output_dir, "--output_dir", "export", overwrite, "--overwrite")
    staging = make_staging_dir(output_dir)
    try:
        yield staging
        apply_umask(staging)  # mkdtemp makes owner-only folders; an export is meant to be shared and served
        old = None
        if output_dir.exists():
            old = make_staging_dir(output_dir)
            os.replace(output_dir, old / "previous")
        os.replace(staging, output_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
