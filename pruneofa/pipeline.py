"""`pruneofa pipeline`: teacher -> sparse student -> stage 1 -> stage 2 -> export -> eval -> bench -> gate -> report.

Each step has a fingerprint: a hash of its recipe section and the fingerprints of the steps it reads. A step whose
fingerprint is recorded in `pipeline.json` is skipped; a changed one is redone (and so is everything after it).
A run killed inside a training step continues from that step's last training checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.config import TrainConfig
from pruneofa.files import write_json_atomic
from pruneofa.recipe import Recipe, StageSection
from pruneofa.runtime import Runtime

STATE_FILE = "pipeline.json"


@dataclass
class Step:
    name: str
    inputs: dict[str, Any]  # what the step depends on: recipe values and earlier fingerprints
    output: Path
    run: Callable[[], dict[str, Any]]  # does the work, returns a summary for the report

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_args(recipe: Recipe) -> dict[str, Any]:
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
    from pruneofa.errors import ModelError
    from pruneofa.train import train
    from pruneofa.train_state import find_checkpoint

    try:
        checkpoint: Path | None = find_checkpoint(cfg.output_dir)
    except ModelError:
        checkpoint = None
    if checkpoint is not None:  # an interrupted run of this very step (the fingerprint matched)
        result = train(dataclasses.replace(cfg, resume_from_checkpoint=cfg.output_dir), rt)
    else:
        result = train(dataclasses.replace(cfg, overwrite_output_dir=True), rt)
    return {"best_epoch": result.best_epoch, "metrics": result.best_metrics}


def _stage_config(recipe: Recipe, stage: StageSection, out: Path, student: str, teacher: str) -> TrainConfig:
    return TrainConfig(
        output_dir=out,
        model_name_or_path=student,
        teacher_model_name_or_path=teacher,
        do_prune=True,
        do_distillation=True,
        learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs,
        temperature=stage.temperature,
        loss_weights=stage.loss_weights,
        pad_to_max_length=stage.pad_to_max_length,
        **_data_args(recipe),
    )


def teacher_step(recipe: Recipe, root: Path, rt: Runtime) -> Step:
    out = root / "teacher"
    t = recipe.teacher
    if t.path:  # a teacher fine-tuned elsewhere: imported as a scored training folder, so it can be exported
        from pruneofa.teacher_import import import_teacher

        return Step(
            "teacher",
            {"path": t.path, "data": _data_args(recipe)},
            out,
            lambda: import_teacher(t.path or "", recipe.data.task_name, out, _data_args(recipe), rt),
        )
    cfg = TrainConfig(
        output_dir=out,
        model_name_or_path=t.model,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        **_data_args(recipe),
    )
    return Step(
        "teacher",
        {"teacher": recipe.section_json("teacher"), "data": _data_args(recipe)},
        out,
        lambda: run_train_step(cfg, rt),
    )


def student_step(recipe: Recipe, root: Path) -> Step | None:
    s = recipe.student
    if s.path:
        return None

    def run() -> dict[str, Any]:
        from pruneofa.prune_once import GradualConfig
        from pruneofa.sparsify import sparsify

        gradual = GradualConfig(
            target=s.sparsity,
            steps=s.steps,
            prune_every=s.prune_every,
            learning_rate=s.learning_rate,
            batch_size=s.batch_size,
            max_seq_length=recipe.data.max_seq_length,
            seed=recipe.data.seed,
        )
        report = sparsify(
            s.dense_model,
            root / "student",
            s.sparsity,
            s.method,  # type: ignore[arg-type]  # validated by the recipe
            s.text_file,
            gradual,
            overwrite=True,
        )
        return {k: report.get(k) for k in ("method", "overall", "held_out_hidden_mse")}

    return Step("student", {"student": recipe.section_json("student")}, root / "student", run)


def plan(recipe: Recipe, root: Path, rt: Runtime) -> list[Step]:
    """Every step in order, with fingerprints chained through their inputs."""
    teacher = teacher_step(recipe, root, rt)
    student = student_step(recipe, root)
    student_ref = str(student.output) if student else recipe.student.path or ""
    upstream = {"teacher": teacher.fingerprint, "student": student.fingerprint if student else student_ref}
    s1_cfg = _stage_config(recipe, recipe.stage1, root / "stage1", student_ref, str(teacher.output))
    stage1 = Step(
        "stage1",
        {"stage1": recipe.section_json("stage1"), "data": _data_args(recipe), **upstream},
        s1_cfg.output_dir,
        lambda: run_train_step(s1_cfg, rt),
    )
    s2_cfg = dataclasses.replace(
        _stage_config(recipe, recipe.stage2, root / "stage2", student_ref, str(teacher.output)),
        do_quantization=True,
        resume=stage1.output,
    )
    stage2 = Step(
        "stage2",
        {"stage2": recipe.section_json("stage2"), "stage1": stage1.fingerprint, **upstream},
        s2_cfg.output_dir,
        lambda: run_train_step(s2_cfg, rt),
    )
    from pruneofa.pipeline_steps import bench_step, export_step, gate_step

    export_int8 = export_step(recipe, stage2, root / "export-int8", "int8")
    export_fp32 = export_step(recipe, teacher, root / "export-fp32", "fp32")
    bench = bench_step(recipe, export_int8, export_fp32, teacher, root / "bench")
    gate = gate_step(recipe, export_int8, teacher, bench, root / "gate")
    return [s for s in (teacher, student, stage1, stage2, export_int8, export_fp32, bench, gate) if s is not None]


def _load_state(root: Path) -> dict[str, Any]:
    path = root / STATE_FILE
    if not path.exists():
        return {"steps": {}}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"steps": {}}  # unreadable bookkeeping only costs re-running steps
    return state if isinstance(state, dict) and isinstance(state.get("steps"), dict) else {"steps": {}}


def _save_state(root: Path, state: dict[str, Any], recipe: Recipe, rt: Runtime) -> None:
    if rt.is_main:
        write_json_atomic(root / STATE_FILE, {**state, "recipe": recipe.name})


def run_pipeline(
    recipe: Recipe, root: Path, rt: Runtime, dry_run: bool = False, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or, with dry_run, only list) the steps; skip those whose fingerprint is already recorded as done.

    A step recorded as started with the same fingerprint was interrupted: it runs again over its own output, so a
    training step continues from its checkpoint. Any other step to run starts from an empty output folder.
    """
    steps = plan(recipe, root, rt)
    state = _load_state(root)
    for step in steps:
        record = state["steps"].get(step.name, {})
        same = record.get("fingerprint") == step.fingerprint and step.output.exists()
        # Fingerprints chain through the steps' inputs, so a changed step also changes everything downstream.
        skip = same and record.get("status") == "done"
        action = "done, skipped" if skip else "would run" if dry_run else "continuing" if same else "running"
        say(f"[pipeline] {step.name:<11} {action} -> {step.output}")
        if skip or dry_run:
            continue
        if not same and rt.is_main:
            shutil.rmtree(step.output, ignore_errors=True)  # stale output of another recipe must not be resumed
        rt.barrier()
        state["steps"][step.name] = {"fingerprint": step.fingerprint, "status": "started", "output": str(step.output)}
        _save_state(root, state, recipe, rt)
        started = time.perf_counter()
        summary = step.run()
        state["steps"][step.name].update(
            status="done", seconds=round(time.perf_counter() - started, 1), summary=summary
        )
        _save_state(root, state, recipe, rt)
    if not dry_run and rt.is_main:
        from pruneofa.pipeline_report import write_report

        write_report(recipe, root, state)
    return state
