"""`sparsify --method task`: the fine-tuned teacher pruned on the cubic schedule while distilled into itself; its head
is kept, and stage 1 starts from it. Errors name the input and the fix."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_error
from safetensors.torch import load_file
from tiny_task import train_teacher, write_task

from pruneofa.compress import sparsity
from pruneofa.compress.distillation import DistillConfig
from pruneofa.compress.prune_once import GradualConfig
from pruneofa.compress.sparsify import SparsifyConfig, sparsify
from pruneofa.compress.task_prune import TaskPruneConfig, compare, task_prune
from pruneofa.core.errors import PruneofaError
from pruneofa.data.loading import make_collator
from pruneofa.data.tasks import get_task
from pruneofa.models.loading import load_classifier, load_tokenizer, resolve_model
from pruneofa.training.config import TrainConfig
from pruneofa.training.distributed import runtime
from pruneofa.training.evaluation import evaluate
from pruneofa.training.inputs import load_data, load_student

SCHEDULE = GradualConfig(target=0.8, steps=24, prune_every=3, batch_size=16, max_seq_length=32, learning_rate=1e-3)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(teacher folder, train file, dev file): tiny-bert fine-tuned to ~100% dev accuracy on the tiny task."""
    root = tmp_path_factory.mktemp("task-prune")
    train, dev = write_task(root / "data")
    teacher = train_teacher(root, train, dev)
    assert json.loads((teacher / "pruneofa.json").read_text())["metrics"]["validation"]["accuracy"] >= 0.9
    return teacher, train, dev


@pytest.fixture(scope="module")
def tiny_student(tiny_teacher: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    teacher, train, dev = tiny_teacher
    out = tmp_path_factory.mktemp("student") / "student"
    task = TaskPruneConfig(teacher=str(teacher), train_file=train, validation_file=dev)
    sparsify(None, SparsifyConfig(output_dir=out, sparsity=0.8, method="task", schedule=SCHEDULE, task=task))
    return out


def test_compare_is_zero_when_student_is_teacher() -> None:
    path = resolve_model("tiny-bert")
    model = load_classifier(path, get_task("sst2"))
    kd = DistillConfig(loss_types=("CE", "KL"), loss_weights=(0.0, 1.0), temperature=2.0)
    found = compare(model, model, load_tokenizer(path), [("a good film",), ("a bad one",)], 16, kd, False)
    assert found["hidden_mse"] == 0.0 and abs(found["kd_loss"]) < 1e-6 and found["agreement"] == 1.0
    pairs = compare(model, model, load_tokenizer(path), [("a premise", "a hypothesis")], 16, kd, False)
    assert pairs["agreement"] == 1.0


@pytest.mark.slow  # the module's teacher + student take ~25 s on 2 shared cores
def test_student_keeps_its_head_and_stage_one_starts_from_it(
    tiny_teacher: tuple[Path, Path, Path], tiny_student: Path
) -> None:
    _, train, dev = tiny_teacher
    report = json.loads((tiny_student / "sparsity.json").read_text())
    assert report["method"] == "task" and report["overall"] == pytest.approx(0.8, abs=0.01)
    assert report["transfer_set"]["augmented"] > 0 and report["transfer_set"]["train_dropped_held_out"] == 0
    assert report["held_out_agreement"] >= 0.9 and report["dev"]["student"]["accuracy"] >= 0.9
    logged = [entry["sparsity"] for entry in report["log"]]
    assert logged == sorted(logged) and {"kd", "hidden", "loss"} <= set(report["log"][0])
    # What stage 1 does with --model_name_or_path DIR: the saved head is loaded, not a fresh one.
    task = get_task("sst2")
    cfg = TrainConfig(task_name="sst2", output_dir=tiny_student.parent / "stage1", model_name_or_path=str(tiny_student),
                      train_file=train, validation_file=dev, max_seq_length=32, batch_size=16)  # fmt: skip
    model, tokenizer, _ = load_student(cfg, task)
    saved = load_file(tiny_student / "model.safetensors")
    assert torch.equal(model.classifier.weight, saved["classifier.weight"])
    names = sparsity.prunable_weight_names(model)
    assert sparsity.overall_sparsity(sparsity.sparsity_report(model, names)) == pytest.approx(0.8, abs=0.01)
    with runtime(no_cuda=True) as rt:
        _, evals, _ = load_data(cfg, task, tokenizer, rt)
        metrics = evaluate(model, evals, task, rt, 16, make_collator(tokenizer, False))
    assert metrics["validation"]["accuracy"] >= 0.9  # chance is 0.5: the head was kept


@pytest.mark.slow  # the module's teacher + student take ~25 s on 2 shared cores
def test_obs_pruner_reaches_the_target(tiny_teacher: tuple[Path, Path, Path]) -> None:
    teacher, train, dev = tiny_teacher
    cfg = TaskPruneConfig(teacher=str(teacher), train_file=train, validation_file=dev, pruner="obs", transfer_set=False)
    student, _, report = task_prune(cfg, dataclasses.replace(SCHEDULE, steps=6))
    names = sparsity.prunable_weight_names(student)
    for name, row in sparsity.sparsity_report(student, names).items():
        assert row["zeros"] == round(0.8 * row["numel"]), name
    assert report["pruner"] == "obs" and report["transfer_set"]["augmented"] == 0


@pytest.mark.slow  # the module's teacher + student take ~25 s on 2 shared cores
def test_taylor_pruner_with_global_shares_reaches_the_overall_target(tiny_teacher: tuple[Path, Path, Path]) -> None:
    teacher, train, dev = tiny_teacher
    cfg = TaskPruneConfig(teacher=str(teacher), train_file=train, validation_file=dev, pruner="taylor",
                          allocation="global", transfer_set=False)  # fmt: skip
    student, _, report = task_prune(cfg, dataclasses.replace(SCHEDULE, steps=9))
    names = sparsity.prunable_weight_names(student)
    rows = sparsity.sparsity_report(student, names)
    zeros, total = sum(r["zeros"] for r in rows.values()), sum(r["numel"] for r in rows.values())
    assert abs(zeros - round(0.8 * total)) <= len(rows)  # overall exact up to per-layer rounding
    assert len({r["zeros"] / r["numel"] for r in rows.values()}) > 1  # the shares differ by layer
    assert report["pruner"] == "taylor" and report["allocation"] == "global"


def test_config_errors_name_the_flag() -> None:
    with pytest.raises(PruneofaError, match="--method task needs --teacher"):
        SparsifyConfig(output_dir=Path("x"), method="task")
    with pytest.raises(PruneofaError, match="--teacher: only --method task"):
        SparsifyConfig(output_dir=Path("x"), method="gradual", text_file="t", task=TaskPruneConfig(teacher="t"))
    with pytest.raises(PruneofaError, match="--pruner 'best'"):
        TaskPruneConfig(teacher="t", pruner="best")  # type: ignore[arg-type]
    with pytest.raises(PruneofaError, match="--temperature"):
        TaskPruneConfig(teacher="t", temperature=0.0)
    with pytest.raises(PruneofaError, match=r"--allocation global .* needs --pruner taylor"):
        TaskPruneConfig(teacher="t", allocation="global")
    with pytest.raises(PruneofaError, match="--allocation 'wide'"):
        TaskPruneConfig(teacher="t", pruner="taylor", allocation="wide")  # type: ignore[arg-type]
    with pytest.raises(PruneofaError, match="--block 4 --block_rows 1: OBS prunes single weights"):
        SparsifyConfig(output_dir=Path("x"), method="task", block=4, task=TaskPruneConfig(teacher="t", pruner="obs"))
    with pytest.raises(PruneofaError, match="--block_rows 16: OBS"):
        SparsifyConfig(output_dir=Path("x"), method="obs", text_file="t", block_rows=16)
    with pytest.raises(PruneofaError, match="--block 0 --block_rows 1: both must be >= 1"):
        SparsifyConfig(output_dir=Path("x"), block=0)
    with pytest.raises(PruneofaError, match="sst3"):
        TaskPruneConfig(teacher="t", task_name="sst3")


def test_cli_errors_without_a_usable_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    line = cli_error(capsys, "sparsify", "--method", "task", "--output_dir", out)
    assert "--method task needs --teacher" in line
    line = cli_error(capsys, "sparsify", "tiny-bert", "--teacher", "x", "--output_dir", out)
    assert "--teacher" in line and "--method task" in line
    line = cli_error(capsys, "sparsify", "tiny-bert", "--task_name", "sst2", "--output_dir", out)
    assert line.startswith("error: --task_name") and "--method task" in line
    line = cli_error(capsys, "sparsify", "--method", "task", "--teacher", str(tmp_path / "nope"), "--output_dir", out)
    assert "--teacher" in line and "no such folder" in line and "pruneofa train" in line
    line = cli_error(capsys, "sparsify", "--output_dir", out)
    assert "MODEL: missing" in line and "--method magnitude" in line
    sparse = tmp_path / "sparse"
    sparsify("tiny-bert", SparsifyConfig(output_dir=sparse, sparsity=0.5))
    line = cli_error(capsys, "sparsify", "--method", "task", "--teacher", str(sparse), "--output_dir", out)
    assert "made by `pruneofa sparsify`, not a teacher" in line
    line = cli_error(capsys, "sparsify", "--method", "task", "--teacher", "tiny-bert", "--output_dir", out)
    assert "records no task" in line and "--task_name" in line
    assert not Path(out).exists()


@pytest.mark.slow  # the module's teacher + student take ~25 s on 2 shared cores
def test_cli_errors_about_the_teacher_folder(
    tiny_teacher: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher, train, dev = tiny_teacher
    out = str(tmp_path / "out")
    base = ["sparsify", "--method", "task", "--teacher", str(teacher), "--output_dir", out]
    line = cli_error(capsys, *base, "--task_name", "cola")
    assert "--task_name cola" in line and "'sst2'" in line
    line = cli_error(capsys, "sparsify", "minilm-l6", *base[1:])
    assert line.startswith("error: MODEL minilm-l6") and "leave MODEL out" in line
    line = cli_error(capsys, *base, "--text_file", "rotten_tomatoes")
    assert "--text_file" in line
    line = cli_error(capsys, *base, "--train_file", str(train), "--validation_file", str(dev), "--max_train_samples",
                     "8", "--batch_size", "32", "--no_transfer_set")  # fmt: skip
    assert "fewer than one batch" in line and "--max_train_samples" in line
    corrupt = tmp_path / "corrupt"
    shutil.copytree(teacher, corrupt)
    weights = corrupt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    line = cli_error(capsys, "sparsify", "--method", "task", "--teacher", str(corrupt), "--output_dir", out)
    assert "model.safetensors" in line and "do not match" in line
    line = cli_error(capsys, *base[:-1], str(teacher / "inside"))
    assert "--output_dir" in line and "input of this run" in line
    assert not Path(out).exists()
