"""`pruneofa pipeline`: teacher -> sparse student -> stage 1 -> stage 2 -> export -> eval -> bench -> gate -> report.

Each step has a fingerprint: a hash of its recipe section and the fingerprints of the steps it reads. A step whose
fingerprint is recorded in `pipeline.json` is skipped; a changed one is redone (and so is everything after it).
A run killed inside a training step continues from that step's last training checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pruneofa.core.files import write_json_atomic
from pruneofa.pipeline.deploy_steps import bench_step, bundle_step, export_step, gate_step
from pruneofa.pipeline.recipe import Recipe
from pruneofa.pipeline.step import Step
from pruneofa.pipeline.training_steps import data_args, run_train_step, stage_config, student_step, teacher_step
from pruneofa.training.distributed import Runtime

STATE_FILE = "pipeline.json"


def plan(recipe: Recipe, root: Path, rt: Runtime) -> list[Step]:
    """Every step in order, with fingerprints chained through their inputs."""
    teacher = teacher_step(recipe, root, rt)
    student = student_step(recipe, root)
    student_ref = str(student.output) if student else recipe.student.path or ""
    upstream = {"teacher": teacher.fingerprint, "student": student.fingerprint if student else student_ref}
    s1_cfg = stage_config(recipe, recipe.stage1, root / "stage1", student_ref, str(teacher.output))
    stage1 = Step(
        "stage1",
        {"stage1": recipe.section_json("stage1"), "data": data_args(recipe), **upstream},
        s1_cfg.output_dir,
        lambda: run_train_step(s1_cfg, rt),
    )
    s2_cfg = dataclasses.replace(
        stage_config(recipe, recipe.stage2, root / "stage2", student_ref, str(teacher.output)),
        do_quantization=True,
        resume=stage1.output,
    )
    stage2 = Step(
        "stage2",
        {"stage2": recipe.section_json("stage2"), "stage1": stage1.fingerprint, **upstream},
        s2_cfg.output_dir,
        lambda: run_train_step(s2_cfg, rt),
    )
    export_int8 = export_step(recipe, stage2, root / "export-int8", "int8")
    export_fp32 = export_step(recipe, teacher, root / "export-fp32", "fp32")
    bundle = bundle_step(export_int8, root / "bundle")
    bench = bench_step(recipe, export_int8, export_fp32, teacher, root / "bench")
    gate = gate_step(recipe, export_int8, teacher, bench, root / "gate")
    return [
        s for s in (teacher, student, stage1, stage2, export_int8, export_fp32, bundle, bench, gate) if s is not None
    ]


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
        from pruneofa.pipeline.report import write_report

        write_report(recipe, root, state)
    return state
