"""`pruneofa pipeline`: teacher -> sparse student -> stage 1 -> stage 2 -> export -> eval -> bench -> gate -> report.

Each step has a fingerprint: a hash of its recipe section, the content of the steps' outputs it reads and the
user's files it reads. A step whose fingerprint is recorded in `pipeline.json` as done, and whose output still
has the recorded content, is skipped; a changed or corrupt one is redone (and so is everything after it). A run
killed inside a training step continues from that step's last training checkpoint. The pipeline only ever
deletes folders it made itself (recorded in `pipeline.json`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import folder_digest, write_json_atomic
from pruneofa.pipeline.deploy_steps import bench_step, bundle_step, export_step, gate_step
from pruneofa.pipeline.recipe import Recipe
from pruneofa.pipeline.step import Step
from pruneofa.pipeline.training_steps import data_args, run_train_step, stage_config, student_step, teacher_step
from pruneofa.training.distributed import Runtime

STATE_FILE = "pipeline.json"


def plan(recipe: Recipe, root: Path, rt: Runtime) -> list[Step]:
    """Every step in order, with fingerprints chained through their inputs."""
    teacher = teacher_step(recipe, root, rt)
    student = student_step(recipe, root, teacher)
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


def _recorded_output(root: Path, step: Step) -> str:
    """How pipeline.json names a step's folder: relative to the pipeline's folder, so a moved one stays ours."""
    return step.output.relative_to(root).as_posix() if step.output.is_relative_to(root) else str(step.output)


def _foreign_outputs(root: Path, steps: list[Step], state: dict[str, Any]) -> list[Step]:
    """Steps whose output folder exists but was not made by this pipeline (no record of it in pipeline.json)."""
    made = {name: record.get("output") for name, record in state["steps"].items()}
    return [
        step
        for step in steps
        if step.output.exists() and made.get(step.name) not in (_recorded_output(root, step), str(step.output))
    ]


def _content_fingerprint(step: Step, steps: list[Step], state: dict[str, Any], external: dict[str, str]) -> str:
    """The step's recipe fingerprint plus the content of what it reads: the recorded output digest of every
    upstream step (found by the upstream fingerprints its inputs carry) and the user's own files."""
    inputs_text = json.dumps(step.inputs, sort_keys=True, default=str)
    upstream = {
        other.name: state["steps"].get(other.name, {}).get("digest")
        for other in steps
        if other is not step and other.fingerprint in inputs_text
    }
    doc = {"recipe": step.fingerprint, "upstream": upstream, "external": external}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _external_inputs(recipe: Recipe) -> dict[str, str]:
    """Digests of the local files and folders a recipe names (data files, a given teacher or student)."""
    named = [recipe.data.train_file, recipe.data.validation_file, recipe.teacher.path, recipe.student.path]
    return {ref: folder_digest(Path(ref)) for ref in named if ref and Path(ref).exists()}


def run_pipeline(
    recipe: Recipe,
    root: Path,
    rt: Runtime,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
    overwrite_output_dir: bool = False,
) -> dict[str, Any]:
    """Run (or, with dry_run, only list) the steps; skip those recorded as done with the same fingerprint whose
    output is intact.

    A fingerprint covers the step's recipe section, the content of every upstream output (so a re-made upstream
    step re-makes what follows) and the user's files. A step recorded as started with the same fingerprint was
    interrupted: it runs again over its own output, so a training step continues from its checkpoint. Any other
    step to run starts from an empty folder. Only folders this pipeline made are ever emptied: a step folder that
    exists without a record in pipeline.json is the user's, and the run refuses unless `overwrite_output_dir`.
    """
    if root.exists() and not root.is_dir():
        raise PruneofaError(f"--output_dir {root}: is a file; pass a folder for the pipeline's steps")
    steps = plan(recipe, root, rt)
    state = _load_state(root)
    foreign = [] if overwrite_output_dir else _foreign_outputs(root, steps, state)
    if foreign and not dry_run:
        names = ", ".join(str(step.output) for step in foreign)
        raise PruneofaError(
            f"--output_dir {root}: {names} already exist{'s' if len(foreign) == 1 else ''} and were not made by this "
            "pipeline; move them away, choose another --output_dir, or pass --overwrite_output_dir to replace them"
        )
    external = _external_inputs(recipe)
    for step in steps:
        record = state["steps"].get(step.name, {})
        fingerprint = _content_fingerprint(step, steps, state, external)
        same = record.get("fingerprint") == fingerprint and step.output.exists()
        intact = same and record.get("digest") == folder_digest(step.output)
        skip = same and record.get("status") == "done" and intact
        if step in foreign:
            action = "would refuse: exists, not made by this pipeline (--overwrite_output_dir replaces it)"
        elif skip:
            action = "done, skipped"
        elif dry_run:
            action = "would run" + (" (its output changed since it was made)" if same and not intact else "")
        else:
            action = "continuing" if same and record.get("status") != "done" else "running"
        say(f"[pipeline] {step.name:<11} {action} -> {step.output}")
        if skip or dry_run:
            continue
        restart = not same or record.get("status") == "done"  # changed, or done but its output is corrupt
        if restart and rt.is_main:
            shutil.rmtree(step.output, ignore_errors=True)  # ours (checked above): stale output is never resumed
        rt.barrier()
        record = {"fingerprint": fingerprint, "status": "started", "output": _recorded_output(root, step)}
        state["steps"][step.name] = record
        _save_state(root, state, recipe, rt)
        started = time.perf_counter()
        summary = step.run()
        state["steps"][step.name].update(
            status="done",
            seconds=round(time.perf_counter() - started, 1),
            summary=summary,
            digest=folder_digest(step.output),
        )
        _save_state(root, state, recipe, rt)
    if not dry_run and rt.is_main:
        from pruneofa.pipeline.report import write_report

        write_report(recipe, root, state)
    return state
