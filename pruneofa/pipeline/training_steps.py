"""The pipeline's training steps: dense teacher, sparse student (prune-once), stage 1 and stage 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pruneofa.pipeline.recipe import Recipe, StageSection, build
from pruneofa.pipeline.step import Step
from pruneofa.training.config import TrainConfig
from pruneofa.training.distributed import Runtime

if TYPE_CHECKING:
    from pruneofa.compress.sparsify import SparsifyConfig


def data_args(recipe: Recipe) -> dict[str, Any]:
    d = recipe.data
    return {
        "task_name": d.task_name,
        "max_seq_length": d.max_seq_length,
        "batch_size": d.batch_size,
        "seed": d.seed,
        "max_train_samples": d.max_train_samples,
        "max_eval_samples": d.max_eval_samples,
        "train_file": Path(d.train_file) if d.train_file else None,
        "validation_file": Path(d.validation_file) if d.validation_file else None,
    }


def run_train_step(cfg: TrainConfig, rt: Runtime) -> dict[str, Any]:
    """Train, continuing from the step's own checkpoint when a killed run left one for the same arguments."""
    from pruneofa.core.errors import ModelError
    from pruneofa.training.stage import train
    from pruneofa.training.state import find_checkpoint

    try:
        checkpoint: Path | None = find_checkpoint(cfg.output_dir)
    except ModelError:
        checkpoint = None
    if checkpoint is not None:  # an interrupted run of this very step (the fingerprint matched)
        result = train(dataclasses.replace(cfg, resume_from_checkpoint=cfg.output_dir), rt)
    else:
        result = train(dataclasses.replace(cfg, overwrite_output_dir=True), rt)
    return {"best_epoch": result.best_epoch, "metrics": result.best_metrics}


def stage_config(recipe: Recipe, stage: StageSection, out: Path, student: str, teacher: str) -> TrainConfig:
    """A training stage's config, built (and so checked) when the pipeline is planned, `--dry_run` included."""

    def make() -> TrainConfig:
        from pruneofa.compress.distillation import DistillConfig

        cfg = TrainConfig(
            output_dir=out,
            model_name_or_path=student,
            teacher_model_name_or_path=teacher,
            do_prune=True,
            do_distillation=True,
            learning_rate=stage.learning_rate,
            num_train_epochs=stage.epochs,
            temperature=stage.temperature,
            loss_weights=stage.loss_weights,
            hidden_distill_weight=stage.hidden_distill_weight,
            attention_distill_weight=stage.attention_distill_weight,
            pad_to_max_length=stage.pad_to_max_length,
            **data_args(recipe),
        )
        DistillConfig(loss_types=cfg.loss_types, loss_weights=cfg.loss_weights, temperature=cfg.temperature)
        return cfg

    return build(recipe, out.name, f"[{out.name}], [data]", make)


def teacher_step(recipe: Recipe, root: Path, rt: Runtime) -> Step:
    out = root / "teacher"
    t = recipe.teacher
    if t.path:  # a teacher fine-tuned elsewhere: imported as a scored training folder, so it can be exported
        from pruneofa.training.teacher_import import import_teacher

        return Step(
            "teacher",
            {"path": t.path, "data": data_args(recipe)},
            out,
            lambda: import_teacher(t.path or "", recipe.data.task_name, out, data_args(recipe), rt),
        )
    cfg = build(
        recipe,
        "teacher",
        "[teacher], [data]",
        lambda: TrainConfig(
            output_dir=out,
            model_name_or_path=t.model,
            learning_rate=t.learning_rate,
            num_train_epochs=t.epochs,
            **data_args(recipe),
        ),
    )
    return Step(
        "teacher",
        {"teacher": recipe.section_json("teacher"), "data": data_args(recipe)},
        out,
        lambda: run_train_step(cfg, rt),
    )


def student_step(recipe: Recipe, root: Path, teacher: Step) -> Step | None:
    """The sparse student made by `sparsify`; with method "task" from the teacher step's output (so it depends on
    that step: its fingerprint is in this one's inputs) on the recipe's [data]."""
    s = recipe.student
    if s.path:
        return None
    task_aware = s.method == "task"

    def make() -> SparsifyConfig:
        from pruneofa.compress.prune_once import GradualConfig
        from pruneofa.compress.sparsify import SparsifyConfig
        from pruneofa.compress.task_prune import TaskPruneConfig

        gradual = GradualConfig(
            target=s.sparsity,
            steps=s.steps,
            prune_every=s.prune_every,
            learning_rate=s.learning_rate,
            batch_size=s.batch_size,
            max_seq_length=recipe.data.max_seq_length,
            seed=recipe.data.seed,
        )
        d = recipe.data
        task = (
            TaskPruneConfig(
                teacher=str(teacher.output),
                task_name=d.task_name,
                train_file=Path(d.train_file) if d.train_file else None,
                validation_file=Path(d.validation_file) if d.validation_file else None,
                max_train_samples=d.max_train_samples,
                max_eval_samples=d.max_eval_samples,
                transfer_set=s.transfer_set,
                pruner=s.pruner,  # type: ignore[arg-type]  # validated by TaskPruneConfig
                temperature=s.temperature,
                hidden_weight=s.hidden_weight,
                allocation=s.allocation,  # type: ignore[arg-type]  # validated by TaskPruneConfig
            )
            if task_aware
            else None
        )
        return SparsifyConfig(
            output_dir=root / "student",
            sparsity=s.sparsity,
            method=s.method,  # type: ignore[arg-type]  # validated by the recipe
            text_file=None if task_aware else s.text_file,
            schedule=gradual,
            overwrite_output_dir=True,
            task=task,
            block=s.block,
            block_rows=s.block_rows,
        )

    cfg = build(recipe, "student", "[student], [data]", make)  # at plan time, so --dry_run checks it too

    def run() -> dict[str, Any]:
        from pruneofa.compress.sparsify import sparsify

        report = sparsify(None if task_aware else s.dense_model, cfg)
        keys = ("method", "overall", "held_out_hidden_mse", "held_out_kd_loss", "held_out_agreement", "dev")
        return {k: report[k] for k in keys if k in report}

    inputs: dict[str, Any] = {"student": s.fingerprint_json()}
    if task_aware:
        inputs.update(data=data_args(recipe), teacher=teacher.fingerprint)
    return Step("student", inputs, root / "student", run)
