"""A recipe with `[student] method = "task"`: the student is pruned from the pipeline's own teacher on [data], so the
student step depends on the teacher step; other methods keep the fingerprints they had."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_error
from tiny_task import write_task

from pruneofa.pipeline.recipe import parse_recipe
from pruneofa.pipeline.runner import plan
from pruneofa.training.distributed import Runtime

RECIPE = """
name = "tiny-task"
[data]
task_name = "sst2"
train_file = "{train}"
validation_file = "{dev}"
max_seq_length = 32
batch_size = 16
seed = 3
[teacher]
model = "tiny-bert"
epochs = {teacher_epochs}
learning_rate = 2e-3
[student]
method = "task"
sparsity = 0.8
steps = 24
prune_every = 3
batch_size = 16
learning_rate = 1e-3
[stage1]
epochs = 1
learning_rate = 1e-3
[stage2]
epochs = 1
learning_rate = 1e-4
[bench]
batch_sizes = [1]
seq_len = 32
duration = 0.3
iterations = 5
[gate.accuracy]
min = 0.0
"""
RT = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


def write_recipe(folder: Path, teacher_epochs: int = 4, extra: str = "") -> Path:
    train, dev = write_task(folder / "data")
    path = folder / "task.toml"
    text = RECIPE.format(train=train, dev=dev, teacher_epochs=teacher_epochs)
    path.write_text(text.replace("[student]\n", "[student]\n" + extra))
    return path


def steps_of(recipe_path: Path, root: Path) -> dict[str, object]:
    return {step.name: step for step in plan(parse_recipe(recipe_path.read_text(), str(recipe_path)), root, RT)}


def test_the_task_student_depends_on_the_teacher(tmp_path: Path) -> None:
    root = tmp_path / "out"
    steps = steps_of(write_recipe(tmp_path), root)
    teacher, student = steps["teacher"], steps["student"]
    assert student.inputs["teacher"] == teacher.fingerprint  # type: ignore[attr-defined]
    assert student.inputs["data"]["train_file"] == tmp_path / "data" / "train.jsonl"  # type: ignore[attr-defined]
    longer = steps_of(write_recipe(tmp_path / "b", teacher_epochs=5), root)
    assert longer["student"].fingerprint != student.fingerprint  # type: ignore[attr-defined]


def test_other_methods_keep_their_student_fingerprint(tmp_path: Path) -> None:
    """Adding the task-only keys must not re-make the students of existing gradual/obs/magnitude pipelines."""
    recipe = parse_recipe("[student]\nmethod = 'gradual'\nsteps = 8", "r.toml")
    student = next(s for s in plan(recipe, tmp_path, RT) if s.name == "student")
    added_later = (*recipe.student.TASK_ONLY, "block", "block_rows")  # keys added since, at their defaults
    old_section = {k: v for k, v in recipe.section_json("student").items() if k not in added_later}
    assert student.inputs == {"student": old_section}
    tweaked = parse_recipe("[student]\nmethod = 'gradual'\nsteps = 8\nhidden_weight = 3.0", "r.toml")
    assert next(s for s in plan(tweaked, tmp_path, RT) if s.name == "student").fingerprint == student.fingerprint
    blocked = parse_recipe("[student]\nmethod = 'gradual'\nsteps = 8\nblock = 4", "r.toml")
    assert next(s for s in plan(blocked, tmp_path, RT) if s.name == "student").fingerprint != student.fingerprint
    tiles = parse_recipe("[student]\nmethod = 'gradual'\nsteps = 8\nblock = 4\nblock_rows = 16", "r.toml")
    fingerprints = {next(s for s in plan(r, tmp_path, RT) if s.name == "student").fingerprint for r in (blocked, tiles)}
    assert len(fingerprints) == 2


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('pruner = "best"\n', ["[student]", "--pruner 'best'", "magnitude, obs or taylor"]),
        ('allocation = "global"\n', ["[student]", "--allocation global", "--pruner taylor"]),
        ("temperature = 0.0\n", ["[student]", "--temperature"]),
        ('text_file = "missing.txt"\n', None),  # not read by method task: no error
    ],
)
def test_dry_run_checks_the_task_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, words: list[str] | None
) -> None:
    from pruneofa.cli import main

    recipe = write_recipe(tmp_path, extra=extra)
    args = ["pipeline", "--recipe", str(recipe), "--dry_run", "--output_dir", str(tmp_path / "out")]
    if words is None:
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code in (0, None)
        return
    line = cli_error(capsys, *args)
    for word in words:
        assert word in line, (word, line)


def test_bad_method_is_named() -> None:
    from pruneofa.core.errors import PruneofaError

    with pytest.raises(PruneofaError, match="use magnitude, gradual, obs or task"):
        parse_recipe("[student]\nmethod = 'tsak'", "r.toml")


@pytest.mark.slow
def test_task_recipe_runs_end_to_end(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pruneofa", "pipeline", "--recipe", str(recipe), "--output_dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "student" / "sparsity.json").read_text())
    assert report["method"] == "task" and report["teacher"] == str(out / "teacher")
    assert report["overall"] == pytest.approx(0.8, abs=0.01) and report["dev"]["student"]["accuracy"] >= 0.9
    stage1 = json.loads((out / "stage1" / "pruneofa.json").read_text())
    assert stage1["sparsity"]["overall_start"] == pytest.approx(0.8, abs=0.01)
    assert stage1["metrics"]["validation"]["accuracy"] >= 0.9  # stage 1 went on from the student's trained head
    state = json.loads((out / "pipeline.json").read_text())["steps"]
    assert state["student"]["summary"]["held_out_agreement"] >= 0.9
    assert "agreement with the teacher" in (out / "report.md").read_text()
