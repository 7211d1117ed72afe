"""`pruneofa sparsify`: make a sparse starting point for stage 1 from a dense model.

Task-agnostic methods, on a dense pre-trained encoder: `magnitude` (one shot, per layer), `obs` (one shot,
reconstruction-based: each layer pruned and updated to keep its outputs on calibration text, see obs.py) and
`gradual` (the prune-once step: cubic schedule with hidden-state distillation from the dense model on unlabeled
text, see prune_once.py). Their output is a plain Hugging Face folder (the encoder without a task head, like the
Intel sparse checkpoints) plus `sparsity.json`; `pruneofa train --model_name_or_path DIR` adds a fresh classifier
and pattern-locks it.

Task-aware, on the dense teacher fine-tuned on the task: `task` (the same cubic schedule, distilling the teacher's
logits and hidden states on the task's text + a transfer set, see task_prune.py). Its output keeps the teacher's
classification head, which `pruneofa train` keeps too (same number of labels).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from transformers import AutoModel

from pruneofa.compress import sparsity
from pruneofa.compress.obs import CALIBRATION_TEXTS, obs_prune_
from pruneofa.compress.prune_once import GradualConfig, distillation_gap, gradual_prune
from pruneofa.compress.task_prune import TaskPruneConfig, task_prune
from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import apply_umask, make_staging_dir, write_json_atomic
from pruneofa.core.outputs import check_not_an_input, claim_output_dir
from pruneofa.core.versions import package_versions
from pruneofa.data.builtin import rotten_tomatoes_unlabeled_texts
from pruneofa.models.loading import from_pretrained_checked, load_tokenizer, resolve_model, same_model

REPORT_FILE = "sparsity.json"
BUILTIN_TEXTS = "rotten_tomatoes"
Method = Literal["magnitude", "gradual", "obs", "task"]
METHODS = ("magnitude", "gradual", "obs", "task")
OBS_CALIBRATION_TEXTS = CALIBRATION_TEXTS  # calibration texts for --method obs (H = X^T X per layer)
HELD_OUT_FRACTION = 0.05  # texts kept out of pruning to measure how far the student drifted from the dense model


@dataclass(frozen=True)
class SparsifyConfig:
    """How `sparsify` prunes: to `sparsity` zeros per layer, one shot (`magnitude`, `obs`), `gradual` (prune-once)
    or `task` (gradual, distilling the fine-tuned teacher `task.teacher` on the task's text + transfer set).

    `gradual` and `obs` need `text_file` (one text per line, or 'rotten_tomatoes'); `schedule` sets the steps and
    learning rate of `gradual` and `task` (its `target` is replaced by `sparsity`). `text_file` with `magnitude`
    only measures the drift. `task` needs `task` (the teacher, the task's data, the transfer set, the pruner).
    """

    output_dir: Path
    sparsity: float = 0.9
    method: Method = "magnitude"
    text_file: str | None = None
    schedule: GradualConfig | None = None
    overwrite_output_dir: bool = False
    task: TaskPruneConfig | None = None
    block: int = 1  # pruning units of N consecutive input features (1 = unstructured); replaces schedule.block
    block_rows: int = 1  # ... of M consecutive outputs (16 with block 4: the AMX kernel skips whole blocks)

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise PruneofaError(f"--sparsity {self.sparsity}: must be in [0, 1), e.g. 0.9 for 90% zeros")
        if self.method not in METHODS:
            raise PruneofaError(f"--method {self.method!r}: unknown; use magnitude, gradual, obs or task")
        if self.method == "task" and self.task is None:
            raise PruneofaError(
                "--method task needs --teacher DIR: the output folder of the dense teacher's `pruneofa train` run "
                "(the student starts as its copy)"
            )
        if self.method != "task" and self.task is not None:
            raise PruneofaError(
                f"--teacher: only --method task distills from a fine-tuned teacher, not --method {self.method}; "
                "pass --method task or leave --teacher out"
            )
        if self.method == "task" and self.text_file is not None:
            raise PruneofaError(
                "--text_file: --method task distills on the task's own text and transfer set (--task_name, "
                "--train_file); leave --text_file out"
            )
        sparsity.check_block_shape(self.block, self.block_rows)
        single = self.method == "obs" or (self.task is not None and self.task.pruner == "obs")
        if (self.block > 1 or self.block_rows > 1) and single:
            raise PruneofaError(
                f"--block {self.block} --block_rows {self.block_rows}: OBS prunes single weights; use --block 1 "
                "--block_rows 1 with it, or the taylor or magnitude pruner"
            )
        if self.method in ("gradual", "obs") and self.text_file is None:
            raise PruneofaError(f"--method {self.method} needs --text_file (one text per line, or '{BUILTIN_TEXTS}')")


def load_texts(text_file: str, flag: str = "--text_file") -> list[str]:
    """Unlabeled text: one text per line of a file, or the built-in rotten_tomatoes set (plots + train snippets)."""
    if text_file == BUILTIN_TEXTS:
        return rotten_tomatoes_unlabeled_texts(default_cache_dir())
    path = Path(text_file)
    if not path.is_file():
        raise PruneofaError(
            f"{flag} {text_file}: no such file; give a text file (one text per line) or "
            f"'{BUILTIN_TEXTS}' for the built-in unlabeled text"
        )
    try:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise PruneofaError(f"{flag} {text_file}: not UTF-8 text; convert it to UTF-8") from None
    if not texts:
        raise PruneofaError(f"{flag} {text_file}: no non-empty lines")
    return texts


def _claim_output_dir(output_dir: Path, overwrite: bool, inputs: dict[str, str | Path | None]) -> None:
    """Only an earlier sparse model may be replaced (with --overwrite_output_dir), never an input of this run."""
    check_not_an_input(output_dir, "--output_dir", inputs)
    claim_output_dir(output_dir, "--output_dir", "sparse model", overwrite, "--overwrite_output_dir")


def _write_folder(output_dir: Path, model: Any, tokenizer: Any, report: dict[str, Any]) -> None:
    staging = make_staging_dir(output_dir)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json_atomic(staging / REPORT_FILE, report)
        apply_umask(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sparsify(model_ref: str | None, cfg: SparsifyConfig) -> dict[str, Any]:
    """Prune every encoder Linear and the pooler to `cfg.sparsity`; write the folder atomically.

    `model_ref` is the dense model to prune; with method `task` it may be None (the student is the teacher's copy)."""
    if cfg.method == "task":
        assert cfg.task is not None  # checked by SparsifyConfig
        teacher = cfg.task.teacher
        if model_ref and not same_model(model_ref, teacher):
            raise PruneofaError(
                f"MODEL {model_ref}: --method task prunes the teacher itself ({teacher}); leave MODEL out or make it "
                "the same as --teacher"
            )
        inputs: dict[str, str | Path | None] = {
            "--teacher": teacher,
            "--train_file": cfg.task.train_file,
            "--validation_file": cfg.task.validation_file,
        }
        _claim_output_dir(cfg.output_dir, cfg.overwrite_output_dir, inputs)
        schedule = dataclasses.replace(
            cfg.schedule or GradualConfig(), target=cfg.sparsity, block=cfg.block, block_rows=cfg.block_rows
        )
        model, tokenizer, details = task_prune(cfg.task, schedule)
        details = {"method": "task", "schedule": asdict(schedule), **details}
        source = teacher
    else:
        if not model_ref:
            raise PruneofaError(
                f"MODEL: missing; --method {cfg.method} prunes a dense model: pass its folder, Hub id or built-in name"
            )
        _claim_output_dir(cfg.output_dir, cfg.overwrite_output_dir, {"MODEL": model_ref, "--text_file": cfg.text_file})
        model, tokenizer, details = _prune_pretrained(model_ref, cfg)
        source = model_ref
    names = sparsity.prunable_weight_names(model)
    layers = sparsity.sparsity_report(model, names)
    report = {
        "source": source,
        "target": cfg.sparsity,
        "block": cfg.block,
        "block_rows": cfg.block_rows,
        "overall": sparsity.overall_sparsity(layers),
        "layers": layers,
        "versions": package_versions(),
        **details,
    }
    _write_folder(cfg.output_dir, model, tokenizer, report)
    return report


def _prune_pretrained(model_ref: str, cfg: SparsifyConfig) -> tuple[Any, Any, dict[str, Any]]:
    """The task-agnostic methods on a dense pre-trained encoder: (pruned model, tokenizer, report details)."""
    target, method, text_file = cfg.sparsity, cfg.method, cfg.text_file
    base = cfg.schedule or GradualConfig(target=target)
    gradual = dataclasses.replace(base, target=target, block=cfg.block, block_rows=cfg.block_rows)
    path = resolve_model(model_ref)
    model = from_pretrained_checked(AutoModel, path, "model")
    tokenizer = load_tokenizer(path)
    names = sparsity.prunable_weight_names(model)
    if not names:
        raise PruneofaError(f"model {model_ref!r}: no encoder Linear layers found; pass a BERT-family encoder")
    texts = load_texts(text_file) if text_file else []
    held_out = texts[len(texts) - max(1, int(len(texts) * HELD_OUT_FRACTION)) :] if texts else []
    dense = copy.deepcopy(model) if texts else None
    details: dict[str, Any] = {"method": method}
    if method == "gradual":
        details.update(
            schedule=asdict(gradual), **gradual_prune(model, tokenizer, texts[: len(texts) - len(held_out)], gradual)
        )
    elif method == "obs":
        calibration = texts[: min(OBS_CALIBRATION_TEXTS, len(texts) - len(held_out))]
        obs_prune_(model, tokenizer, calibration, target, names)
        details["calibration_texts"] = len(calibration)
    else:
        sparsity.magnitude_prune_(model, target, names, cfg.block, cfg.block_rows)
    if dense is not None:
        details["held_out_hidden_mse"] = distillation_gap(model, dense, tokenizer, held_out, 128)
    return model, tokenizer, details
