"""Task-aware pruning (`sparsify --method task`): prune the fine-tuned teacher itself, distilling from its frozen copy.

The student starts as a copy of the dense teacher fine-tuned on the task (classification head included) and is
pruned on the same cubic schedule as the prune-once step (the shared loop in prune_once.py), magnitude or OBS at
each pruning event, while it learns the teacher's outputs on the task's training text plus the transfer set
(data/transfer.py: unlabeled rows and augmented copies, never a dev/test text):

  loss = T^2 * KL(student logits / T || teacher logits / T) + hidden_weight * hidden-state MSE

The teacher's logits are computed live per batch (no labels are read). The output is a sequence-classification
folder: `pruneofa train --model_name_or_path DIR` keeps its trained head (same number of labels) and pattern-locks
it as stage 1.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from pruneofa.compress import sparsity
from pruneofa.compress.distillation import DistillConfig, distillation_loss
from pruneofa.compress.importance import ALLOCATIONS, Allocation, TaylorImportance
from pruneofa.compress.obs import CALIBRATION_TEXTS, obs_prune_
from pruneofa.compress.prune_once import (
    Example,
    GradualConfig,
    encode,
    hidden_state_loss,
    prune_on_schedule,
    text_batches,
)
from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.data.metrics import compute_metrics
from pruneofa.data.tasks import TaskSpec, get_task
from pruneofa.data.transfer import TransferConfig, build_transfer_set, load_task_texts
from pruneofa.models.folder import META_FILE, QUANT_FILE, read_meta, verify_files
from pruneofa.models.loading import from_pretrained_checked, load_teacher, load_tokenizer, resolve_model

Pruner = Literal["magnitude", "obs", "taylor"]
HELD_OUT_FRACTION = 0.05  # of the distillation texts, kept out to measure how far the student drifted
HELD_OUT_MAX = 512
SPARSIFY_REPORT = "sparsity.json"  # a `sparsify` output: a sparse encoder, not a fine-tuned teacher


@dataclass(frozen=True)
class TaskPruneConfig:
    """What `--method task` distills from and on. `task_name` defaults to the task the teacher was trained on."""

    teacher: str
    task_name: str | None = None
    train_file: Path | None = None
    validation_file: Path | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    transfer_set: bool = True
    transfer: TransferConfig = field(default_factory=TransferConfig)
    pruner: Pruner = "magnitude"
    allocation: Allocation = "layer"  # taylor only: "global" lets the layers' shares differ (importance.py)
    temperature: float = 2.0
    hidden_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.teacher:
            raise PruneofaError("--method task needs --teacher DIR: the output folder of the dense teacher's training")
        if self.pruner not in ("magnitude", "obs", "taylor"):
            raise PruneofaError(f"--pruner {self.pruner!r}: unknown; use magnitude, obs or taylor")
        if self.allocation not in ALLOCATIONS:
            raise PruneofaError(f"--allocation {self.allocation!r}: unknown; use layer or global")
        if self.allocation == "global" and self.pruner != "taylor":
            raise PruneofaError(
                f"--allocation global ranks weights of different layers against each other, which needs --pruner "
                f"taylor (|w| and OBS scores are not comparable across layers); got --pruner {self.pruner}"
            )
        if not self.temperature > 0:
            raise PruneofaError(f"--temperature {self.temperature}: must be > 0, e.g. 2")
        if not self.hidden_weight >= 0:
            raise PruneofaError(f"--hidden_weight {self.hidden_weight}: must be >= 0 (0: logits only)")
        limits = {"--max_train_samples": self.max_train_samples, "--max_eval_samples": self.max_eval_samples}
        for flag, value in limits.items():
            if value is not None and value < 1:
                raise PruneofaError(f"{flag} {value}: must be at least 1 (leave it out to use every row)")
        if self.task_name is not None:
            get_task(self.task_name)


def load_task_teacher(ref: str, task_name: str | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, TaskSpec]:
    """The dense fine-tuned teacher with its head, its tokenizer and task; a `pruneofa train` folder is checked
    against its pruneofa.json first (file hashes; a dense run, not stage 2; the task it was trained on)."""
    folder = Path(ref).expanduser()
    fix = "pass the --output_dir of the `pruneofa train` run that fine-tuned the dense teacher"
    if not folder.is_dir() and (folder.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1):
        raise ModelError(f"--teacher {ref}: no such folder; {fix}")
    recorded: str | None = None
    if folder.is_dir():
        if (folder / SPARSIFY_REPORT).is_file():
            raise ModelError(f"--teacher {ref}: is a sparse model made by `pruneofa sparsify`, not a teacher; {fix}")
        if (folder / META_FILE).is_file():
            meta = read_meta(folder)
            verify_files(folder, meta)
            if (folder / QUANT_FILE).is_file() or meta.get("quantization"):
                raise ModelError(f"--teacher {ref}: is a quantization-aware (stage 2) model; {fix}")
            recorded = meta.get("task_name") if isinstance(meta.get("task_name"), str) else None
    if task_name is None and recorded is None:
        if not folder.is_dir() and "/" in ref:  # a Hub id, or a mistyped folder: say both
            raise ModelError(f"--teacher {ref}: no such folder; {fix} (for a Hub id, also pass --task_name)")
        raise PruneofaError(f"--teacher {ref}: records no task (not a `pruneofa train` folder); pass --task_name")
    task = get_task(task_name or str(recorded))
    if recorded is not None and recorded != task.name:
        raise PruneofaError(
            f"--task_name {task_name}: the teacher {ref} was fine-tuned on {recorded!r}; pass --task_name {recorded} "
            f"or a teacher fine-tuned on {task.name}"
        )
    path = resolve_model(ref)
    config = from_pretrained_checked(AutoConfig, path, "teacher config")
    if not any(str(a).endswith("ForSequenceClassification") for a in config.architectures or []):
        raise ModelError(f"--teacher {ref}: has no classification head ({config.architectures}); {fix}")
    return load_teacher(path, task), load_tokenizer(path), task


def _split_held_out(examples: Sequence[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """(distilled on, held out): a seeded random HELD_OUT_FRACTION of the texts (at most HELD_OUT_MAX) kept out."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    count = min(HELD_OUT_MAX, max(1, int(len(examples) * HELD_OUT_FRACTION)))
    return [examples[i] for i in order[count:]], [examples[i] for i in order[:count]]


def compare(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_seq_length: int,
    kd: DistillConfig,
    is_regression: bool,
) -> dict[str, Any]:
    """Student vs teacher on `examples`: hidden-state MSE, KD loss (per example) and agreement (the same class;
    regression: mean |score difference|), plus both models' logits."""
    student.eval()
    teacher.eval()
    hidden, kd_loss = 0.0, 0.0
    logits: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    with torch.inference_mode():
        for i in range(0, len(examples), 32):
            batch = encode(tokenizer, examples[i : i + 32], max_seq_length)
            s = student(**batch, output_hidden_states=True)
            t = teacher(**batch, output_hidden_states=True)
            n = batch["input_ids"].shape[0]
            hidden += hidden_state_loss(s.hidden_states, t.hidden_states, batch["attention_mask"]).item() * n
            kd_loss += distillation_loss(s.logits, t.logits, None, kd, is_regression).item() * n
            logits["student"].append(s.logits.float())
            logits["teacher"].append(t.logits.float())
    count = max(len(examples), 1)
    s_all, t_all = (torch.cat(logits[k]) for k in ("student", "teacher"))
    if is_regression:
        agreement = {"mean_abs_diff": float((s_all - t_all).abs().mean())}
    else:
        agreement = {"agreement": float((s_all.argmax(-1) == t_all.argmax(-1)).float().mean())}
    return {"hidden_mse": hidden / count, "kd_loss": kd_loss / count, **agreement, "logits": (s_all, t_all)}


def task_prune(
    cfg: TaskPruneConfig, schedule: GradualConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Prune a copy of the teacher to schedule.target while distilling it; returns (student, tokenizer, report)."""
    teacher, tokenizer, task = load_task_teacher(cfg.teacher, cfg.task_name)
    teacher.eval().requires_grad_(False)
    texts = load_task_texts(task, cfg.train_file, cfg.validation_file, default_cache_dir(), cfg.max_train_samples,
                            cfg.max_eval_samples)  # fmt: skip
    mask_token = str(tokenizer.mask_token or tokenizer.unk_token)
    transfer = dataclasses.replace(cfg.transfer, seed=schedule.seed)
    if not cfg.transfer_set:  # the training text only (still never a held-out text)
        transfer = dataclasses.replace(transfer, copies=0, unlabeled=False)
    pool = build_transfer_set(texts, mask_token, transfer)
    distill_on, held_out = _split_held_out(pool.examples, schedule.seed)
    if len(distill_on) < schedule.batch_size:
        raise PruneofaError(
            f"--task_name {task.name}: {len(distill_on)} texts to distill on, fewer than one batch "
            f"({schedule.batch_size}); give more training rows (--max_train_samples, --train_file) or a smaller "
            "--batch_size"
        )
    student = copy.deepcopy(teacher).requires_grad_(True)
    names = sparsity.prunable_weight_names(student)
    kd = DistillConfig(loss_types=("CE", "KL"), loss_weights=(0.0, 1.0), temperature=cfg.temperature)

    def loss_of(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            t = teacher(**batch, output_hidden_states=True)
        s = student(**batch, output_hidden_states=True)
        soft = distillation_loss(s.logits, t.logits, None, kd, task.is_regression)
        hidden = hidden_state_loss(s.hidden_states, t.hidden_states, batch["attention_mask"])
        return {"loss": soft + cfg.hidden_weight * hidden, "kd": soft.detach(), "hidden": hidden.detach()}

    calibration = distill_on[:CALIBRATION_TEXTS]

    importance = (
        TaylorImportance(student, names, block=schedule.block, block_rows=schedule.block_rows)
        if cfg.pruner == "taylor"
        else None
    )

    def prune_to(target: float) -> dict[str, torch.Tensor]:
        if cfg.pruner == "obs":
            return obs_prune_(student, tokenizer, calibration, target, names, max_length=schedule.max_seq_length)
        if importance is not None:
            return importance.prune_(target, cfg.allocation)
        return sparsity.magnitude_prune_(student, target, names, schedule.block, schedule.block_rows)

    batches = text_batches(distill_on, tokenizer, schedule)
    log = prune_on_schedule(student, batches, loss_of, prune_to, schedule, desc="task prune",
                            after_backward=importance.accumulate if importance is not None else None)  # fmt: skip
    held = compare(student, teacher, tokenizer, held_out, schedule.max_seq_length, kd, task.is_regression)
    report: dict[str, Any] = {
        "task_name": task.name,
        "teacher": cfg.teacher,
        "pruner": cfg.pruner,
        "allocation": cfg.allocation,
        "temperature": cfg.temperature,
        "hidden_weight": cfg.hidden_weight,
        "transfer_set": {"enabled": cfg.transfer_set, **pool.counts, "config": dataclasses.asdict(transfer)},
        "distilled_on": len(distill_on),
        "held_out_texts": len(held_out),
        **{f"held_out_{k}": v for k, v in held.items() if k != "logits"},
        "dev": _dev_report(student, teacher, tokenizer, texts.dev, texts.dev_labels, task, schedule, kd),
        "log": log,
    }
    return student, tokenizer, report


def _dev_report(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dev: Sequence[Example],
    labels: list[float],
    task: TaskSpec,
    schedule: GradualConfig,
    kd: DistillConfig,
) -> dict[str, Any] | None:
    """The task's metrics for teacher and student on the dev split (reported only: nothing is selected on it)."""
    if not dev:
        return None
    found = compare(student, teacher, tokenizer, dev, schedule.max_seq_length, kd, task.is_regression)
    s_logits, t_logits = found.pop("logits")
    refs = np.asarray(labels)
    return {
        "split": task.eval_splits[0],
        "examples": len(dev),
        "teacher": compute_metrics(task, t_logits.numpy(), refs),
        "student": compute_metrics(task, s_logits.numpy(), refs),
        **{k: v for k, v in found.items() if k not in ("hidden_mse", "kd_loss")},
    }
