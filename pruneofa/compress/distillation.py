"""Knowledge distillation: the loss, and the teacher's logits computed once and cached. No loop here."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import locked

HARD_LOSSES = ("CE",)
SOFT_LOSSES = ("KL", "CE", "MSE")
# Only these batch keys reach the model: `labels` would make HF models compute their own loss, and
# `example_id` is bookkeeping.
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_CACHE_TENSOR = "logits"
_CACHE_META = "pruneofa_cache_key"


@dataclass(frozen=True)
class DistillConfig:
    """Loss = w0 * hard(student, labels) + w1 * soft(student, teacher); soft KL/CE are scaled by T^2."""

    loss_types: tuple[str, str] = ("CE", "KL")
    loss_weights: tuple[float, float] = (0.5, 0.5)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if len(self.loss_types) != 2 or len(self.loss_weights) != 2:
            raise PruneofaError("loss_types and loss_weights take two values each: (hard, soft), e.g. CE KL / 0 1")
        hard, soft = self.loss_types
        if hard not in HARD_LOSSES:
            raise PruneofaError(f"loss_types[0] (hard-label loss) must be one of {HARD_LOSSES}, got {hard!r}")
        if soft not in SOFT_LOSSES:
            raise PruneofaError(f"loss_types[1] (teacher loss) must be one of {SOFT_LOSSES}, got {soft!r}")
        if any(w < 0 for w in self.loss_weights) or not any(w > 0 for w in self.loss_weights):
            raise PruneofaError(
                f"loss_weights must be >= 0 and not both 0, got {self.loss_weights}: e.g. 0 1 for pure KD"
            )
        if not self.temperature > 0:
            raise PruneofaError(f"temperature must be > 0, got {self.temperature}: e.g. 2")


def student_loss(logits: torch.Tensor, labels: torch.Tensor, is_regression: bool) -> torch.Tensor:
    """Plain task loss: cross-entropy for classification, MSE for regression (STS-B)."""
    if is_regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def _soft_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    if kind == "MSE":
        return F.mse_loss(student, teacher)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    if kind == "KL":
        # batchmean divides by the batch size only: the true KL per example. INC's reduction='mean' also
        # divides by the number of labels, silently shrinking the KD term by num_labels.
        return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return -(log_p_teacher.exp() * log_p_student).sum(dim=-1).mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: DistillConfig,
    is_regression: bool,
) -> torch.Tensor:
    """w0 * hard + w1 * T^2 * soft (KL / soft CE); w1 * soft for MSE. Regression: both parts are MSE.

    T^2 keeps the soft gradients' magnitude independent of the temperature (Hinton et al. 2015).
    With w0 == 0 (pure KD) labels are not needed and may be None.
    """
    w_hard, w_soft = cfg.loss_weights
    student = student_logits.float()
    teacher = teacher_logits.detach().float()
    loss = student.new_zeros(())
    if w_hard > 0:
        if labels is None:
            raise PruneofaError("labels are required when loss_weights[0] > 0; use loss weights 0 1 for pure KD")
        loss = loss + w_hard * student_loss(student, labels, is_regression)
    if w_soft > 0:
        if is_regression:
            loss = loss + w_soft * F.mse_loss(student, teacher)
        elif cfg.loss_types[1] == "MSE":
            loss = loss + w_soft * _soft_loss(student, teacher, "MSE", cfg.temperature)
        else:
            scale = cfg.temperature**2
            loss = loss + w_soft * scale * _soft_loss(student, teacher, cfg.loss_types[1], cfg.temperature)
    return loss


def _logits_of(output: object) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise PruneofaError(f"teacher returned {type(output).__name__}, expected logits")


def logits_by_example(
    teacher: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's logits for every batch: (example_ids int64 [N], logits float32 [N, C]) on the CPU.

    Used for the teacher's cached targets and for dev evaluation. Runs in eval mode (no dropout: the outputs
    must be deterministic) and restores the previous mode.
    """
    was_training = teacher.training
    teacher.eval()
    ids: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for batch in loader:
                if "example_id" not in batch:
                    raise PruneofaError("batches need an 'example_id' column to key the logits")
                inputs = {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}
                outs.append(_logits_of(teacher(**inputs)).float().cpu())
                ids.append(torch.as_tensor(batch["example_id"]).to(torch.int64).cpu())
    finally:
        teacher.train(was_training)
    if not outs:
        raise PruneofaError("no batches to score: the dataset is empty")
    return torch.cat(ids), torch.cat(outs)


def assemble_logits(example_ids: torch.Tensor, logits: torch.Tensor, num_examples: int) -> torch.Tensor:
    """Scatter per-example logits into a dense [num_examples, C] table, checking each example appears once."""
    ids = example_ids.to(torch.int64).cpu()
    if ids.numel() != logits.shape[0]:
        raise PruneofaError(f"{ids.numel()} example ids for {logits.shape[0]} rows of logits")
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_examples):
        raise PruneofaError(f"example ids must lie in [0, {num_examples}), got {ids.min()}..{ids.max()}")
    counts = torch.bincount(ids, minlength=num_examples)
    duplicated = int((counts > 1).sum())
    missing = int((counts == 0).sum())
    if duplicated or missing:
        raise PruneofaError(
            f"teacher logits cover {num_examples} examples badly: {missing} missing, {duplicated} duplicated"
        )
    table = torch.empty(num_examples, logits.shape[1], dtype=torch.float32)
    table[ids] = logits.float().cpu()
    return table


def cache_key(**parts: str) -> tuple[str, dict[str, str]]:
    """(sha256 of the sorted JSON, the parts): everything that changes the teacher's logits must be a part."""
    for name, value in parts.items():
        if not isinstance(value, str):
            raise TypeError(f"cache key part {name!r} must be a str, got {type(value).__name__}")
    key = dict(sorted(parts.items()))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return digest, key


def save_logits_cache(path: str | Path, logits: torch.Tensor, key: Mapping[str, str]) -> None:
    """Write the logits and their key (as JSON metadata) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {_CACHE_META: json.dumps(dict(key), sort_keys=True)}
    # Under a lock beside the cache folder (so it holds only entries): writers on nodes sharing the filesystem take
    # turns. A temp file in the same directory, then os.replace: readers never see a half-written cache.
    with locked(path.parent):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({_CACHE_TENSOR: logits.detach().float().cpu().contiguous()}, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load_logits_cache(path: str | Path, key: Mapping[str, str]) -> torch.Tensor | None:
    """The cached logits if the file exists and was written for exactly this key, else None.

    An unreadable file also gives None: a cache miss only costs recomputing the logits.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get(_CACHE_META)
            if stored is None or json.loads(stored) != dict(key):
                return None
            tensor: torch.Tensor = f.get_tensor(_CACHE_TENSOR)
            return tensor
    except (SafetensorError, OSError, ValueError, KeyError):
        return None
