"""Intermediate-layer distillation through the real CLI: stage 1 and stage 2 with --hidden_distill_weight and
--attention_distill_weight train with the teacher run live, keep the sparsity pattern, record the weights, and a
continuation with another weight is refused; the flags' own checks; the recipe keys."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_error, run_cli
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from pruneofa.compress import sparsity
from pruneofa.models.loading import resolve_model

TINY = ["--task_name", "rotten_tomatoes", "--max_train_samples", "64", "--max_eval_samples", "32",
        "--max_seq_length", "32", "--batch_size", "16", "--num_train_epochs", "1", "--seed", "3"]  # fmt: skip
KD = ["--do_prune", "--do_distillation", "--teacher_model_name_or_path", "tiny-bert", "--loss_weights", "0", "1",
      "--temperature", "2"]  # fmt: skip
LAYERS = ["--hidden_distill_weight", "1", "--attention_distill_weight", "0.5"]


@pytest.fixture(scope="module")
def sparse_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-bert magnitude-pruned to 80% in place of a `pruneofa sparsify` folder (same shape as the teacher)."""
    folder = tmp_path_factory.mktemp("layer-kd") / "student"
    shutil.copytree(resolve_model("tiny-bert"), folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    sparsity.magnitude_prune_(model, 0.8, sparsity.prunable_weight_names(model))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


@pytest.mark.slow
def test_stages_with_layer_distillation_train_keep_the_pattern_and_refuse_other_weights(
    capsys: pytest.CaptureFixture[str], sparse_student: Path, tmp_path: Path
) -> None:
    student, stage1, cache = str(sparse_student), tmp_path / "stage1", str(tmp_path / "cache")
    args = ["train", *TINY, "--model_name_or_path", student, *KD, "--cache_dir", cache]
    done = run_cli(*args, *LAYERS, "--output_dir", str(stage1))
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((stage1 / "pruneofa.json").read_text())
    assert meta["args"]["hidden_distill_weight"] == 1.0 and meta["args"]["attention_distill_weight"] == 0.5
    assert all(math.isfinite(r["train_loss"]) for r in meta["history"])
    assert not (tmp_path / "cache" / "teacher_logits").exists()  # the teacher ran live, no logits cache pass
    start, trained = load_file(sparse_student / "model.safetensors"), load_file(stage1 / "model.safetensors")
    for name in meta["sparsity"]["layers"]:
        assert torch.equal(trained[name] != 0, start[name] != 0), name
    assert any(not torch.equal(trained[n], start[n]) for n in meta["sparsity"]["layers"])  # it did train
    config = json.loads((stage1 / "config.json").read_text())
    assert "eager" not in json.dumps(config)  # eager attention was for training only

    line = cli_error(capsys, *args, "--hidden_distill_weight", "2", "--attention_distill_weight", "0.5",
                     "--output_dir", str(stage1), "--resume_from_checkpoint", str(stage1))  # fmt: skip
    assert "--hidden_distill_weight" in line and "1.0" in line and "2.0" in line
    line = cli_error(capsys, *args, "--output_dir", str(stage1), "--resume_from_checkpoint", str(stage1))
    assert "--hidden_distill_weight" in line  # left out = 0: also another run

    stage2 = tmp_path / "stage2"
    done = run_cli(*args, *LAYERS, "--do_quantization", "--resume", str(stage1), "--pad_to_max_length",
                   "--output_dir", str(stage2))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    meta2 = json.loads((stage2 / "pruneofa.json").read_text())
    assert meta2["stage"] == "stage2-qat" and meta2["args"]["attention_distill_weight"] == 0.5
    quantized = load_file(stage2 / "model.safetensors")
    for name in meta2["sparsity"]["layers"]:
        assert torch.equal(quantized[name] != 0, start[name] != 0), name


def test_shape_mismatch_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], sparse_student: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "deeper-teacher"
    shutil.copytree(resolve_model("tiny-bert"), teacher)
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    out = tmp_path / "o"
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", str(sparse_student), *KD,
                     "--teacher_model_name_or_path", str(teacher), "--hidden_distill_weight", "1",
                     "--output_dir", str(out))  # fmt: skip
    assert "3 layers x hidden 32" in line and "2 layers x hidden 32" in line and str(teacher) in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--hidden_distill_weight", "1"], ["--hidden_distill_weight 1", "--do_distillation"]),
        (["--attention_distill_weight", "0.5"], ["--attention_distill_weight 0.5", "--teacher_model_name_or_path"]),
        ([*KD, "--hidden_distill_weight", "-1"], ["--hidden_distill_weight -1", ">= 0"]),
        ([*KD, "--attention_distill_weight", "nan"], ["--attention_distill_weight nan", ">= 0"]),
    ],
)
def test_bad_layer_distillation_flags_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], words: list[str]
) -> None:
    out = tmp_path / "o"
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", "tiny-bert", *flags, "--output_dir", str(out))
    assert all(word in line for word in words), line
    assert not out.exists()


def test_recipe_stage_keys_reach_the_training_config(tmp_path: Path) -> None:
    from pruneofa.core.errors import PruneofaError
    from pruneofa.pipeline.recipe import parse_recipe
    from pruneofa.pipeline.training_steps import stage_config

    recipe = parse_recipe("[stage1]\nhidden_distill_weight = 1\n[stage2]\nattention_distill_weight = 0.25\n", "r")
    assert recipe.stage1.hidden_distill_weight == 1.0 and recipe.stage1.attention_distill_weight == 0.0
    assert recipe.stage2.attention_distill_weight == 0.25 and recipe.stage2.hidden_distill_weight == 0.0
    cfg = stage_config(recipe, recipe.stage1, tmp_path / "stage1", "student", "teacher")
    assert (cfg.hidden_distill_weight, cfg.attention_distill_weight) == (1.0, 0.0)
    cfg = stage_config(recipe, recipe.stage2, tmp_path / "stage2", "student", "teacher")
    assert (cfg.hidden_distill_weight, cfg.attention_distill_weight) == (0.0, 0.25)
    default = parse_recipe("", "r")
    assert default.stage1.hidden_distill_weight == 0.0 == default.stage2.attention_distill_weight
    bad = parse_recipe("[stage1]\nhidden_distill_weight = -1\n", "r")
    with pytest.raises(PruneofaError, match=r"\[stage1\].*--hidden_distill_weight -1"):
        stage_config(bad, bad.stage1, tmp_path / "stage1", "student", "teacher")
