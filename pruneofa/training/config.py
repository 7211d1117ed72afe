"""Frozen, validated run configurations. Errors name the flag and say how to fix it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pruneofa.core.errors import PruneofaError

if TYPE_CHECKING:
    from pruneofa.compress.intermediate import LayerDistillConfig

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
    hidden_distill_weight: float = 0.0
    attention_distill_weight: float = 0.0
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
        if self.do_distillation:
            self._check_distillation_flags()
        self._check_layer_distillation_flags()
        if self.max_seq_length > 4096:
            raise PruneofaError(f"--max_seq_length {self.max_seq_length}: too long; BERT-class models take <= 512")

    def _check_distillation_flags(self) -> None:
        """The loss flags, checked with the run's arguments: a bad combination must fail before any work."""
        from pruneofa.compress.distillation import HARD_LOSSES, SOFT_LOSSES

        hard, soft = self.loss_types
        if hard not in HARD_LOSSES:
            raise PruneofaError(
                f"--loss_types {hard} {soft}: the first (hard-label) loss must be {' or '.join(HARD_LOSSES)}; "
                "e.g. --loss_types CE KL"
            )
        if soft not in SOFT_LOSSES:
            raise PruneofaError(
                f"--loss_types {hard} {soft}: the second (teacher) loss must be one of {', '.join(SOFT_LOSSES)}; "
                "e.g. --loss_types CE KL"
            )
        weights = " ".join(f"{w:g}" for w in self.loss_weights)
        if not all(math.isfinite(w) and w >= 0 for w in self.loss_weights):
            raise PruneofaError(
                f"--loss_weights {weights}: both weights must be numbers >= 0; e.g. --loss_weights 0 1 for pure "
                "distillation, 0.5 0.5 to mix in the labels"
            )
        if not any(w > 0 for w in self.loss_weights):
            raise PruneofaError(
                f"--loss_weights {weights}: at least one weight must be > 0; e.g. --loss_weights 0 1 for pure "
                "distillation"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise PruneofaError(f"--temperature {self.temperature:g}: the distillation temperature must be > 0, e.g. 2")

    def _check_layer_distillation_flags(self) -> None:
        weights = {
            "--hidden_distill_weight": self.hidden_distill_weight,
            "--attention_distill_weight": self.attention_distill_weight,
        }
        for flag, value in weights.items():
            if not (math.isfinite(value) and value >= 0):
                raise PruneofaError(f"{flag} {value:g}: must be a number >= 0 (0 turns it off), e.g. 1")
            if value > 0 and not self.do_distillation:
                raise PruneofaError(
                    f"{flag} {value:g}: distills the teacher's layers into the student; add --do_distillation and "
                    "--teacher_model_name_or_path (a dense model of the student's shape), or leave it at 0"
                )

    @property
    def layer_distillation(self) -> LayerDistillConfig:
        """The intermediate-layer distillation weights (both 0: logits only, from the cached teacher logits)."""
        from pruneofa.compress.intermediate import LayerDistillConfig

        return LayerDistillConfig(self.hidden_distill_weight, self.attention_distill_weight)

    @property
    def stage(self) -> str:
        """What kind of run this is, for reports: the reference's two stages or plain fine-tuning."""
        if self.do_quantization:
            return "stage2-qat"
        if self.do_prune or self.do_distillation:
            return "stage1-prune-distill"
        return "finetune"

    def to_json(self) -> dict[str, Any]:
        """Arguments as plain JSON values, recorded in pruneofa.json and the training state: local paths resolved
        and absolute (see `recorded_arg`), so what a run records does not depend on the directory it ran from."""
        return {f.name: recorded_arg(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)}


MODEL_FIELDS = ("model_name_or_path", "teacher_model_name_or_path")


def recorded_arg(name: str, value: Any) -> Any:
    """An argument as runs record and compare it. A local model folder or file is its resolved absolute path (the
    same folder spelled `student`, `./work/student` or through a symlink is one value, from whatever directory);
    a built-in model name or Hub id stays as given; `--resume DIR/best_model.pt` is DIR; tuples become lists.
    Also applied to values recorded by older runs (relative ones then resolve against the current directory)."""
    if value is None:
        return None
    if name in MODEL_FIELDS:
        from pruneofa.models.loading import model_ref

        return model_ref(str(value))
    if name == "resume":
        from pruneofa.models.folder import resume_folder

        return str(resume_folder(Path(value)).resolve())
    if isinstance(value, Path) or (name in _PATH_FIELDS and isinstance(value, str)):
        return str(Path(value).expanduser().resolve())
    return list(value) if isinstance(value, tuple) else value


_PATH_FIELDS = ("train_file", "validation_file", "output_dir", "cache_dir", "resume_from_checkpoint")
