"""Frozen, validated run configurations. Errors name the flag and say how to fix it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.core.errors import PruneofaError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one `pruneofa train` run needs; the flag names follow the reference script."""

    task_name: str
    output_dir: Path
    model_name_or_path: str
    train_file: Path | None = None
    validation_file: Path | None = None
    max_seq_length: int = 128
    pad_to_max_length: bool = False
    use_slow_tokenizer: bool = False
    batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    num_train_epochs: int = 3
    max_train_steps: int | None = None
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    num_warmup_steps: int = 0
    resume: Path | None = None
    seed: int | None = None
    do_prune: bool = False
    do_eval: bool = True
    do_quantization: bool = False
    do_distillation: bool = False
    teacher_model_name_or_path: str | None = None
    temperature: float = 1.0
    loss_types: tuple[str, str] = ("CE", "KL")
    loss_weights: tuple[float, float] = (0.5, 0.5)
    no_cuda: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    overwrite_output_dir: bool = False
    cache_dir: Path | None = None
    checkpointing_steps: int | None = None
    resume_from_checkpoint: Path | None = None

    def __post_init__(self) -> None:
        positive = {
            "--max_seq_length": self.max_seq_length,
            "--batch_size": self.batch_size,
            "--num_train_epochs": self.num_train_epochs,
            "--gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        for flag, value in positive.items():
            if value < 1:
                raise PruneofaError(f"{flag} {value}: must be at least 1")
        for flag, opt in {
            "--max_train_steps": self.max_train_steps,
            "--max_train_samples": self.max_train_samples,
            "--max_eval_samples": self.max_eval_samples,
            "--checkpointing_steps": self.checkpointing_steps,
        }.items():
            if opt is not None and opt < 1:
                raise PruneofaError(f"{flag} {opt}: must be at least 1 (or left out for no limit)")
        if self.learning_rate <= 0:
            raise PruneofaError(f"--learning_rate {self.learning_rate}: must be > 0, e.g. 1e-4 for stage 1")
        if self.weight_decay < 0:
            raise PruneofaError(f"--weight_decay {self.weight_decay}: must be >= 0")
        if self.num_warmup_steps < 0:
            raise PruneofaError(f"--num_warmup_steps {self.num_warmup_steps}: must be >= 0")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise PruneofaError(
                f"--lr_scheduler_type {self.lr_scheduler_type!r}: unknown; choose one of {', '.join(SCHEDULERS)}"
            )
        if self.do_distillation and not self.teacher_model_name_or_path:
            raise PruneofaError(
                "--do_distillation needs --teacher_model_name_or_path: a dense model fine-tuned on the task "
                "(make one with `pruneofa train` and no --do_* flag)"
            )
        if self.max_seq_length > 4096:
            raise PruneofaError(f"--max_seq_length {self.max_seq_length}: too long; BERT-class models take <= 512")

    @property
    def stage(self) -> str:
        """What kind of run this is, for reports: the reference's two stages or plain fine-tuning."""
        if self.do_quantization:
            return "stage2-qat"
        if self.do_prune or self.do_distillation:
            return "stage1-prune-distill"
        return "finetune"

    def to_json(self) -> dict[str, Any]:
        """Arguments as plain JSON values (paths as strings), recorded in pruneofa.json."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out
