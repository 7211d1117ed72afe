"""Atomic model folders (safetensors + JSON) that `transformers` loads; nothing is ever unpickled.

A model folder is `config.json`, `model.safetensors` (float weights, the ones transformers loads), the tokenizer
files, `quantization.safetensors` for a QAT model (observer state), and `pruneofa.json` last. `pruneofa.json` is
the commit marker: it records the sha256 of the weight files, so a folder whose files do not match it (an
interrupted write, a corrupt or swapped file) is refused on load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pruneofa.core.errors import ModelError
from pruneofa.core.files import make_staging_dir, read_json, sha256_file, write_json_atomic

META_FILE = "pruneofa.json"
WEIGHTS_FILE = "model.safetensors"
QUANT_FILE = "quantization.safetensors"
# The reference's stage-2 command resumes from `<stage1_dir>/best_model.pt`; we accept that spelling.
LEGACY_RESUME_NAME = "best_model.pt"


def save_model_dir(
    out_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    meta: dict[str, Any],
    float_state: dict[str, torch.Tensor],
    quant_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Stage every file in a temp folder, move them in, and write pruneofa.json (with their hashes) last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(out_dir / "files")
    try:
        # Only float weights go to model.safetensors, so `from_pretrained` sees no unexpected keys.
        model.save_pretrained(staging, state_dict=float_state)
        tokenizer.save_pretrained(staging)
        if quant_state:
            save_file({k: v.detach().cpu().contiguous() for k, v in quant_state.items()}, staging / QUANT_FILE)
        hashes = {p.name: sha256_file(p) for p in (staging / WEIGHTS_FILE, staging / QUANT_FILE) if p.exists()}
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
        if not quant_state:
            (out_dir / QUANT_FILE).unlink(missing_ok=True)  # a stale one from an earlier QAT run would lie
        write_json_atomic(out_dir / META_FILE, {**meta, "files_sha256": hashes})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resume_folder(path: Path) -> Path:
    """The folder `--resume` names: DIR for `DIR` and for the reference's `DIR/best_model.pt` (unchecked)."""
    path = path.expanduser()
    return path.parent if path.name == LEGACY_RESUME_NAME and not path.exists() else path


def resolve_resume(path: Path) -> Path:
    """A pruneofa model folder from `--resume DIR` or the reference's `--resume DIR/best_model.pt`."""
    folder = resume_folder(path)
    if path.is_file() and path.suffix in (".pt", ".pth", ".bin"):
        raise ModelError(
            f"--resume {path}: pickled checkpoints are never loaded (unsafe); pass the output folder of a "
            "`pruneofa train` run"
        )
    if not folder.is_dir():
        raise ModelError(f"--resume {path}: no such folder; pass the --output_dir of the previous stage")
    if not (folder / META_FILE).exists():
        raise ModelError(
            f"--resume {path}: {folder} has no {META_FILE}, so it is not a finished `pruneofa train` output; "
            "check the path or re-run the previous stage"
        )
    return folder


def read_meta(folder: Path) -> dict[str, Any]:
    return read_json(folder / META_FILE, "the checkpoint is corrupt, re-run that stage")


def verify_files(folder: Path, meta: dict[str, Any]) -> None:
    """Refuse a folder whose weight files are not the ones pruneofa.json recorded."""
    for name, expected in meta.get("files_sha256", {}).items():
        file = folder / name
        if not file.exists():
            raise ModelError(f"{file}: missing; the checkpoint is incomplete, re-run that stage")
        if sha256_file(file) != expected:
            raise ModelError(f"{file}: contents do not match {META_FILE} (corrupt or replaced); re-run that stage")


def load_quant_state(folder: Path) -> dict[str, torch.Tensor] | None:
    file = folder / QUANT_FILE
    if not file.exists():
        return None
    try:
        return load_file(file)
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{file}: unreadable ({exc}); the checkpoint is corrupt, re-run that stage") from None
