"""End-to-end `pruneofa` CLI runs on the tiny model and a slice of rotten_tomatoes, and the user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_error
from safetensors.torch import load_file
from tiny_chain import DATA
from transformers import AutoModelForSequenceClassification


@pytest.mark.slow
def test_stages_write_loadable_folders(tiny_chain: Path) -> None:
    for stage in ("teacher", "stage1", "stage2"):
        folder = tiny_chain / stage
        meta = json.loads((folder / "pruneofa.json").read_text())
        assert meta["best_epoch"] >= 0 and "accuracy" in meta["metrics"]["validation"]
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.id2label == {0: "negative", 1: "positive"}
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == len(meta["history"]) and json.loads(lines[0])["epoch"] == 0
    assert json.loads((tiny_chain / "stage1" / "pruneofa.json").read_text())["stage"] == "stage1-prune-distill"


@pytest.mark.slow
def test_sparsity_pattern_survives_both_stages(tiny_chain: Path) -> None:
    student = load_file(tiny_chain / "student" / "model.safetensors")
    stage2 = load_file(tiny_chain / "stage2" / "model.safetensors")
    meta = json.loads((tiny_chain / "stage2" / "pruneofa.json").read_text())
    layers = meta["sparsity"]["layers"]
    assert len(layers) == 2 * 6 + 1  # 2 layers x (Q K V attn-out intermediate output) + pooler
    for name in layers:
        pattern_before = student[name.removeprefix("bert.")] != 0
        assert torch.equal(stage2[name] != 0, pattern_before), name
    assert meta["sparsity"]["overall"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.slow
def test_stage2_records_quantization(tiny_chain: Path) -> None:
    meta = json.loads((tiny_chain / "stage2" / "pruneofa.json").read_text())
    assert meta["stage"] == "stage2-qat"
    assert meta["resumed_from"] == str(tiny_chain / "stage1")
    assert meta["quantization"]["layers"]  # every Linear has its int8 parameters recorded
    qstate = load_file(tiny_chain / "stage2" / "quantization.safetensors")
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
def test_corrupt_checkpoint_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "stage1"
    shutil.copytree(tiny_chain / "stage1", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(tiny_chain / "student"),
        "--resume",
        str(broken),
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "model.safetensors" in line and "corrupt" in line


@pytest.mark.slow
def test_vocabulary_mismatch_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_chain / "teacher", teacher)
    tok = json.loads((teacher / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["zzzunseen"] = len(vocab)
    (teacher / "tokenizer.json").write_text(json.dumps(tok))
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(tiny_chain / "student"),
        "--teacher_model_name_or_path",
        str(teacher),
        "--do_distillation",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "vocabulary" in line


@pytest.mark.slow
def test_label_order_mismatch_refused(capsys: pytest.CaptureFixture[str], tiny_chain: Path, tmp_path: Path) -> None:
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_chain / "teacher", teacher)
    config = json.loads((teacher / "config.json").read_text())
    config["id2label"] = {"0": "positive", "1": "negative"}
    config["label2id"] = {"positive": 0, "negative": 1}
    (teacher / "config.json").write_text(json.dumps(config))
    line = cli_error(
        capsys,
        "train",
        *DATA,
        "--model_name_or_path",
        str(tiny_chain / "student"),
        "--teacher_model_name_or_path",
        str(teacher),
        "--do_distillation",
        "--output_dir",
        str(tmp_path / "o"),
    )
    assert "label order" in line


@pytest.mark.slow
def test_finished_output_dir_not_clobbered(capsys: pytest.CaptureFixture[str], tiny_chain: Path) -> None:
    before = (tiny_chain / "teacher" / "pruneofa.json").read_text()
    line = cli_error(
        capsys, "train", *DATA, "--model_name_or_path", "tiny-bert", "--output_dir", str(tiny_chain / "teacher")
    )
    assert "--overwrite_output_dir" in line
    assert (tiny_chain / "teacher" / "pruneofa.json").read_text() == before


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
    from pruneofa.models.loading import resolve_model

    _fake_hub_cache(tmp_path / "hub", "acme/tiny-sst", Path(resolve_model("tiny-bert")))
    code = (
        "from pruneofa.models.loading import load_classifier, load_tokenizer, resolve_model\n"
        "from pruneofa.data.tasks import get_task\n"
        "assert resolve_model('acme/tiny-sst') == 'acme/tiny-sst'\n"
        "model = load_classifier('acme/tiny-sst', get_task('sst2'))\n"
        "print(model.config.id2label, load_tokenizer('acme/tiny-sst').vocab_size)\n"
    )
    # HF_HUB_CACHE is read when huggingface_hub is imported, hence a fresh process.
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "{0: 'negative', 1: 'positive'} 30522" in done.stdout
