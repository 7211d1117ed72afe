"""End-to-end `pruneofa` CLI runs on the tiny model and a slice of rotten_tomatoes, and the user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from pruneofa.cli import main

DATA = [
    "--task_name",
    "rotten_tomatoes",
    "--max_train_samples",
    "96",
    "--max_eval_samples",
    "64",
    "--max_seq_length",
    "32",
    "--batch_size",
    "16",
    "--seed",
    "5143",
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pruneofa", *args], capture_output=True, text=True, timeout=600)


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run in-process, expect exit code 2 and a single error line with no traceback; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """teacher -> sparsify -> stage 1 -> stage 2, through the real CLI, with the seed's flags."""
    root = tmp_path_factory.mktemp("pipeline")
    steps = [
        [
            "train",
            *DATA,
            "--model_name_or_path",
            "tiny-bert",
            "--learning_rate",
            "1e-3",
            "--num_train_epochs",
            "2",
            "--output_dir",
            str(root / "teacher"),
        ],
        ["sparsify", "tiny-bert", "--sparsity", "0.9", "--output_dir", str(root / "student")],
        [
            "train",
            *DATA,
            "--model_name_or_path",
            str(root / "student"),
            "--teacher_model_name_or_path",
            str(root / "teacher"),
            "--do_prune",
            "--do_distillation",
            "--learning_rate",
            "1e-3",
            "--num_train_epochs",
            "2",
            "--loss_weights",
            "0",
            "1",
            "--temperature",
            "2",
            "--output_dir",
            str(root / "stage1"),
        ],
        [
            "train",
            *DATA,
            "--model_name_or_path",
            str(root / "student"),
            "--teacher_model_name_or_path",
            str(root / "teacher"),
            "--do_prune",
            "--do_distillation",
            "--learning_rate",
            "1e-4",
            "--num_train_epochs",
            "1",
            "--loss_weights",
            "0",
            "1",
            "--temperature",
            "2",
            "--do_quantization",
            "--resume",
            str(root / "stage1" / "best_model.pt"),
            "--pad_to_max_length",
            "--output_dir",
            str(root / "stage2"),
        ],
    ]
    for step in steps:
        done = run_cli(*step)
        assert done.returncode == 0, f"{step[:2]} failed:\n{done.stderr[-3000:]}"
    return root


@pytest.mark.slow
def test_stages_write_loadable_folders(pipeline: Path) -> None:
    for stage in ("teacher", "stage1", "stage2"):
        folder = pipeline / stage
        meta = json.loads((folder / "pruneofa.json").read_text())
        assert meta["best_epoch"] >= 0 and "accuracy" in meta["metrics"]["validation"]
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == len(meta["history"]) and json.loads(lines[0])["epoch"] == 0
    assert json.loads((pipeline / "stage1" / "pruneofa.json").read_text())["stage"] == "stage1-prune-distill"


@pytest.mark.slow
def test_sparsity_pattern_survives_both_stages(pipeline: Path) -> None:
    student = load_file(pipeline / "student" / "model.safetensors")
    stage2 = load_file(pipeline / "stage2" / "model.safetensors")
    meta = json.loads((pipeline / "stage2" / "pruneofa.json").read_text())
    layers = meta["sparsity"]["layers"]
    assert len(layers) == 2 * 6 + 1  # 2 layers x (Q K V attn-out intermediate output) + pooler
    for name in layers:
        pattern_before = student[name.removeprefix("bert.")] != 0
        assert torch.equal(stage2[name] != 0, pattern_before), name
    assert meta["sparsity"]["overall"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.slow
def test_stage2_records_quantization(pipeline: Path) -> None:
    meta = json.loads((pipeline / "stage2" / "pruneofa.json").read_text())
    assert meta["stage"] == "stage2-qat"
    assert meta["resumed_from"] == str(pipeline / "stage1")
    assert meta["quantization"]["layers"]  # every Linear has its int8 parameters recorded
    qstate = load_file(pipeline / "stage2" / "quantization.safetensors")
    assert qstate and all(torch.isfinite(t).all() for t in qstate.values())
    assert meta["teacher_metrics"]["validation"]["accuracy"] >= 0


def test_unknown_task(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(capsys, "train", "--task_name", "sst3", "--output_dir", str(tmp_path / "o"))
    assert "sst3" in line and "sst2" in line


def test_missing_model_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(tmp_path / "nope"),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "nope" in line


def test_offline_hub_id_fails_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        "someone/not-here",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "someone/not-here" in line and "Hub" in line


def test_distillation_needs_teacher(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(capsys, "train", *DATA, "--do_distillation", "--output_dir", str(tmp_path / "o"))
    assert "--teacher_model_name_or_path" in line


def test_bad_data_row(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text("sentence,label\ngood film,1\n,0\n")
    line = cli_error(
        capsys,
        "train",
        "--task_name",
        "sst2",
        "--train_file",
        str(bad),
        "--validation_file",
        str(bad),
        "--model_name_or_path",
        "tiny-bert",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "row 2" in line


def test_pickled_resume_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"\x80\x04not really")
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        "tiny-bert",
        "--resume",
        str(pickle_file),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "pickled" in line


@pytest.mark.slow
def test_corrupt_checkpoint_refused(capsys: pytest.CaptureFixture[str], pipeline: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "stage1"
    shutil.copytree(pipeline / "stage1", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(pipeline / "student"),
        "--resume",
        str(broken),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "model.safetensors" in line and "corrupt" in line


@pytest.mark.slow
def test_vocabulary_mismatch_refused(capsys: pytest.CaptureFixture[str], pipeline: Path, tmp_path: Path) -> None:
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(pipeline / "teacher", teacher)
    tok = json.loads((teacher / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["zzzunseen"] = len(vocab)
    (teacher / "tokenizer.json").write_text(json.dumps(tok))
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(pipeline / "student"),
        "--teacher_model_name_or_path",
        str(teacher),
        "--do_distillation",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "vocabulary" in line


@pytest.mark.slow
def test_label_order_mismatch_refused(capsys: pytest.CaptureFixture[str], pipeline: Path, tmp_path: Path) -> None:
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(pipeline / "teacher", teacher)
    config = json.loads((teacher / "config.json").read_text())
    config["id2label"] = {"0": "positive", "1": "negative"}
    config["label2id"] = {"positive": 0, "negative": 1}
    (teacher / "config.json").write_text(json.dumps(config))
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(pipeline / "student"),
        "--teacher_model_name_or_path",
        str(teacher),
        "--do_distillation",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "label order" in line


@pytest.mark.slow
def test_finished_output_dir_not_clobbered(capsys: pytest.CaptureFixture[str], pipeline: Path) -> None:
    before = (pipeline / "teacher" / "pruneofa.json").read_text()
    line = cli_error(
        capsys, "train", *DATA, "--model_name_or_path", "tiny-bert", "--output_dir", str(pipeline / "teacher")
    )
    assert "--overwrite_output_dir" in line
    assert (pipeline / "teacher" / "pruneofa.json").read_text() == before


def _fake_hub_cache(root: Path, repo_id: str, source: Path) -> None:
    """Lay out `source` as the Hugging Face cache would hold a downloaded `repo_id` (refs + snapshot)."""
    import shutil

    repo = root / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(source, repo / "snapshots" / revision)


def test_hub_id_served_from_local_cache_offline(tmp_path: Path) -> None:
    """The Hub-id code path, with the Hub's local cache standing in for the network (offline, as here)."""
    from pruneofa.modeling import resolve_model

    _fake_hub_cache(tmp_path / "hub", "acme/tiny-sst", Path(resolve_model("tiny-bert")))
    code = (
        "from pruneofa.modeling import load_classifier, load_tokenizer, resolve_model\n"
        "from pruneofa.tasks import get_task\n"
        "assert resolve_model('acme/tiny-sst') == 'acme/tiny-sst'\n"
        "model = load_classifier('acme/tiny-sst', get_task('sst2'))\n"
        "print(model.config.id2label, load_tokenizer('acme/tiny-sst').vocab_size)\n"
    )
    # HF_HUB_CACHE is read when huggingface_hub is imported, hence a fresh process.
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "{0: 'negative', 1: 'positive'} 30522" in done.stdout
