"""The reference's commands (seed-step-by-step.md) parse as written with `pruneofa train` in place of the script."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from pruneofa.cli import main
from pruneofa.training.config import TrainConfig

STAGE1 = """--task_name sst2 \
      --model_name_or_path Intel/bert-base-uncased-sparse-90-unstructured-pruneofa \
      --teacher_model_name_or_path textattack/bert-base-uncased-SST-2 \
      --do_prune --do_distillation --max_seq_length 128 --batch_size 32 \
      --learning_rate 1e-4 --num_train_epochs 9 --output_dir /path/to/stage1_output_dir \
      --loss_weights 0 1 --temperature 2 --seed 5143"""
STAGE2 = """--task_name sst2 \
      --model_name_or_path Intel/bert-base-uncased-sparse-90-unstructured-pruneofa \
      --teacher_model_name_or_path textattack/bert-base-uncased-SST-2 \
      --do_prune --do_distillation --max_seq_length 128 --batch_size 32 \
      --learning_rate 1e-5 --num_train_epochs 3 --output_dir /path/to/stage2_output_dir \
      --loss_weights 0 1 --temperature 2 --seed 5143 --do_quantization \
      --resume /path/to/stage1_output_dir/best_model.pt --pad_to_max_length"""


def run(*args: str) -> None:
    with pytest.raises(SystemExit) as done:  # Typer's standalone mode always exits
        main(list(args))
    assert done.value.code == 0


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """Stop at the library boundary: record the config `pruneofa train` builds from the flags."""
    seen: list[TrainConfig] = []

    def fake_train(cfg: TrainConfig, rt: Any) -> Any:
        seen.append(cfg)

        class Result:
            best_epoch, best_metrics, output_dir, is_main = 0, {}, cfg.output_dir, True

        return Result()

    monkeypatch.setattr("pruneofa.training.stage.train", fake_train)
    return seen


def test_stage1_command_as_written(captured: list[TrainConfig]) -> None:
    run("train", *shlex.split(STAGE1))
    cfg = captured[0]
    assert cfg.task_name == "sst2" and cfg.model_name_or_path.startswith("Intel/")
    assert cfg.teacher_model_name_or_path == "textattack/bert-base-uncased-SST-2"
    assert cfg.do_prune and cfg.do_distillation and not cfg.do_quantization
    assert (cfg.max_seq_length, cfg.batch_size, cfg.learning_rate, cfg.num_train_epochs) == (128, 32, 1e-4, 9)
    assert (cfg.loss_weights, cfg.temperature, cfg.seed) == ((0.0, 1.0), 2.0, 5143)
    assert cfg.output_dir == Path("/path/to/stage1_output_dir") and cfg.stage == "stage1-prune-distill"


def test_stage2_command_as_written(captured: list[TrainConfig]) -> None:
    run("train", *shlex.split(STAGE2))
    cfg = captured[0]
    assert cfg.do_quantization and cfg.pad_to_max_length and cfg.stage == "stage2-qat"
    assert cfg.resume == Path("/path/to/stage1_output_dir/best_model.pt")
    assert (cfg.learning_rate, cfg.num_train_epochs) == (1e-5, 3)


def test_reference_defaults_and_dashed_aliases(captured: list[TrainConfig]) -> None:
    run("train", "--task-name", "mrpc", "--output-dir", "/tmp/x", "--no_cuda", "--local-rank=0")
    cfg = captured[0]
    assert (cfg.batch_size, cfg.learning_rate, cfg.num_train_epochs, cfg.max_seq_length) == (8, 5e-5, 3, 128)
    assert (cfg.loss_types, cfg.loss_weights, cfg.temperature) == (("CE", "KL"), (0.5, 0.5), 1.0)
    assert (cfg.lr_scheduler_type, cfg.num_warmup_steps, cfg.gradient_accumulation_steps) == ("linear", 0, 1)
    assert cfg.no_cuda and cfg.stage == "finetune"


def test_launcher_puts_local_rank_before_the_command(captured: list[TrainConfig]) -> None:
    run("--local-rank=1", "train", *shlex.split(STAGE1), "--no_cuda")
    assert captured[0].no_cuda
