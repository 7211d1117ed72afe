"""Resumable training state: model, optimizer, scheduler, RNG streams, position, masks and QAT observers.

Written by rank 0 into `<output_dir>/checkpoints/last` through a staging folder and one rename, so a kill at any
moment leaves either the previous complete checkpoint or the new one, never a half-written folder. Tensors go to
safetensors, everything else to JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pruneofa.core.errors import ModelError
from pruneofa.core.files import apply_umask, make_staging_dir, read_json, write_json_atomic
from pruneofa.models.loading import same_model
from pruneofa.training.config import MODEL_FIELDS, recorded_arg

CHECKPOINTS_DIR = "checkpoints"
LAST = "last"
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
# Arguments that must match for a continued run to be the same run.
MUST_MATCH = (
    "task_name",
    "model_name_or_path",
    "teacher_model_name_or_path",
    "train_file",
    "validation_file",
    "max_seq_length",
    "pad_to_max_length",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "num_train_epochs",
    "max_train_steps",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "num_warmup_steps",
    "resume",
    "seed",
    "do_prune",
    "do_quantization",
    "do_distillation",
    "temperature",
    "loss_types",
    "loss_weights",
    "hidden_distill_weight",
    "attention_distill_weight",
    "max_train_samples",
    "max_eval_samples",
)
# Arguments added after runs were already recorded: a checkpoint without them was written with this value.
_ADDED_LATER = {"hidden_distill_weight": 0.0, "attention_distill_weight": 0.0}


@dataclass
class Position:
    """Where training stands: the epoch, micro-batches consumed in it, and optimizer steps overall."""

    epoch: int = 0
    micro_in_epoch: int = 0
    step: int = 0


def rng_state() -> dict[str, Any]:
    """This process's RNG streams: torch CPU (+ CUDA), Python and NumPy."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))


def _flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in opt_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_to_parts(per_rank: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    json_parts = []
    for rank, state in enumerate(per_rank):
        tensors[f"rng.{rank}.torch"] = state["torch"]
        for i, cuda_state in enumerate(state["cuda"]):
            tensors[f"rng.{rank}.cuda.{i}"] = cuda_state
        json_parts.append({"python": state["python"], "numpy": state["numpy"], "cuda_devices": len(state["cuda"])})
    return tensors, json_parts


def save_training_state(
    output_dir: Path,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    masks: dict[str, torch.Tensor] | None,
    rng_per_rank: list[dict[str, Any]],
    position: Position,
    extra: dict[str, Any],
) -> Path:
    """Write the state atomically into output_dir/checkpoints/last; returns that folder."""
    root = output_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    rng_tensors, rng_json = _rng_to_parts(rng_per_rank)
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    for name, mask in (masks or {}).items():
        tensors[f"mask.{name}"] = mask.to(torch.uint8)
    for stale in root.glob(".staging-*"):  # left by a run killed mid-write; never read
        shutil.rmtree(stale, ignore_errors=True)
    staging = make_staging_dir(root / LAST)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / TENSORS_FILE)
        write_json_atomic(
            staging / STATE_FILE,
            {
                "position": position.__dict__,
                "optimizer": opt_meta,
                "scheduler": scheduler.state_dict(),
                "rng": rng_json,
                "has_masks": masks is not None,
                **extra,
            },
        )
        apply_umask(staging)
        final = root / LAST
        previous = root / ".previous"
        shutil.rmtree(previous, ignore_errors=True)
        if final.exists():
            os.replace(final, previous)
        os.replace(staging, final)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / LAST


@dataclass
class TrainingState:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    masks: dict[str, torch.Tensor] | None
    rng: dict[str, Any]
    position: Position
    meta: dict[str, Any]


def find_checkpoint(path: Path) -> Path:
    """Accept the checkpoint folder itself, its `checkpoints/` parent or the run's --output_dir."""
    for candidate in (path, path / LAST, path / CHECKPOINTS_DIR / LAST):
        if (candidate / STATE_FILE).exists():
            return candidate
    # A kill between the two renames leaves only `.previous`: it is complete, so use it.
    for candidate in (path / ".previous", path / CHECKPOINTS_DIR / ".previous"):
        if (candidate / STATE_FILE).exists():
            return candidate
    raise ModelError(
        f"--resume_from_checkpoint {path}: no training checkpoint there; pass the run's --output_dir "
        "(it holds checkpoints/last once an epoch or --checkpointing_steps interval has finished)"
    )


def load_training_state(folder: Path, rank: int, world_size: int) -> TrainingState:
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
        tensors = load_file(folder / TENSORS_FILE)
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise ModelError(f"checkpoint {folder}: unreadable ({exc}); it is corrupt, start the run again") from None
    ranks = len(meta["rng"])
    if ranks != world_size:
        # Each rank's data shard and RNG stream depend on the world size: another one is another run.
        raise ModelError(
            f"checkpoint {folder}: written by {ranks} processes, this run has {world_size}; continue with the "
            "same number of processes (--nproc_per_node x --nnodes)"
        )
    rng_json = meta["rng"][rank]
    rng = {
        "torch": tensors[f"rng.{rank}.torch"],
        "cuda": [tensors[f"rng.{rank}.cuda.{i}"] for i in range(rng_json["cuda_devices"])],
        "python": rng_json["python"],
        "numpy": rng_json["numpy"],
    }
    masks = {k.removeprefix("mask."): v.bool() for k, v in tensors.items() if k.startswith("mask.")}
    return TrainingState(
        model={k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
        optimizer=_unflatten_optimizer(tensors, meta["optimizer"]),
        scheduler=meta["scheduler"],
        masks=masks if meta["has_masks"] else None,
        rng=rng,
        position=Position(**meta["position"]),
        meta=meta,
    )


def read_checkpoint_meta(folder: Path) -> dict[str, Any]:
    """The JSON half of a checkpoint (position, arguments, best epoch so far), without loading any tensor."""
    return read_json(folder / STATE_FILE, "the checkpoint is corrupt, start the run again")


def _same_arg(key: str, saved: Any, current: Any) -> bool:
    """Equal as recorded: paths by resolved location, not spelling (a run continued from another directory, or
    with `student` for `./student`, is the same run); models also by built-in alias."""
    if key in MODEL_FIELDS and saved is not None and current is not None:
        return same_model(str(saved), str(current))
    return bool(recorded_arg(key, saved) == recorded_arg(key, current))


def check_same_run(saved_args: dict[str, Any], args: dict[str, Any], folder: Path) -> None:
    """A checkpoint continues only the run that wrote it: refuse changed training arguments."""
    for key in MUST_MATCH:
        saved = saved_args.get(key, _ADDED_LATER.get(key))
        if not _same_arg(key, saved, args.get(key)):
            raise ModelError(
                f"--resume_from_checkpoint {folder}: written with --{key} {saved!r}, this run has "
                f"{args.get(key)!r}; continue with the original arguments or start a new --output_dir"
            )
