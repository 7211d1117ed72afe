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


# ---------------------------------------------------------------- reproducibility, paths, continuing, flag checks

TINY = ["--task_name", "rotten_tomatoes", "--max_train_samples", "64", "--max_eval_samples", "32",
        "--max_seq_length", "32", "--batch_size", "16", "--num_train_epochs", "1", "--seed", "3"]  # fmt: skip
KD_TINY = ["--do_distillation", "--teacher_model_name_or_path", "tiny-bert"]


def run_from(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a fresh process started from `cwd` (relative paths are relative to it)."""
    cmd = [sys.executable, "-m", "pruneofa", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
def test_seeded_distillation_ignores_teacher_cache_state(tmp_path: Path) -> None:
    """The same seeded run twice from one empty cache dir: cold, then warm teacher-logits cache, same weights."""
    args = ["train", *TINY, "--model_name_or_path", "tiny-bert", *KD_TINY, "--cache_dir", str(tmp_path / "cache")]
    cold = run_from(tmp_path, *args, "--output_dir", "cold")
    assert cold.returncode == 0, cold.stderr[-3000:]
    warm = run_from(tmp_path, *args, "--output_dir", "warm")
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "teacher logits from cache" not in cold.stderr and "teacher logits from cache" in warm.stderr
    a, b = load_file(tmp_path / "cold" / "model.safetensors"), load_file(tmp_path / "warm" / "model.safetensors")
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def relative_stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """work/{student,other} (two distinct model folders) and work/stage1, trained from cwd work/ with relative
    paths (`--model_name_or_path student --output_dir stage1`). Returns work/."""
    import shutil

    from pruneofa.models.loading import resolve_model

    work = tmp_path_factory.mktemp("relative") / "work"
    work.mkdir()
    shutil.copytree(resolve_model("tiny-bert"), work / "student")
    shutil.copytree(resolve_model("tiny-bert"), work / "other")
    done = run_from(work, "train", *TINY, "--model_name_or_path", "student", "--do_prune", "--output_dir", "stage1")
    assert done.returncode == 0, done.stderr[-3000:]
    return work


@pytest.mark.slow
def test_stage2_from_another_directory_accepts_other_spellings(relative_stage1: Path) -> None:
    work = relative_stage1
    meta = json.loads((work / "stage1" / "pruneofa.json").read_text())
    assert meta["model_name_or_path"] == str((work / "student").resolve())  # recorded resolved, not as typed
    assert meta["args"]["output_dir"] == str((work / "stage1").resolve())
    top = work.parent
    stage2 = run_from(top, "train", *TINY, "--model_name_or_path", "./work/../work/student", "--do_prune",
                      "--do_quantization", "--resume", "work/stage1/best_model.pt",
                      "--output_dir", "work/stage2")  # fmt: skip
    assert stage2.returncode == 0, stage2.stderr[-3000:]
    assert json.loads((work / "stage2" / "pruneofa.json").read_text())["resumed_from"] == str(work / "stage1")
    # Continuing the (finished) stage-1 run from elsewhere, with other spellings: the same run, nothing to redo.
    again = run_from(top, "train", *TINY, "--model_name_or_path", "work/student", "--do_prune",
                     "--output_dir", "work/stage1", "--resume_from_checkpoint", "work/stage1")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_stage2_from_a_different_folder_still_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, relative_stage1: Path
) -> None:
    work = relative_stage1
    monkeypatch.chdir(work.parent)
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", "work/other", "--do_prune", "--do_quantization",
                     "--resume", "work/stage1", "--output_dir", "work/stage2-other")  # fmt: skip
    assert "--model_name_or_path" in line and "was trained from" in line and "other" in line
    assert not (work / "stage2-other").exists()
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", "work/other", "--do_prune",
                     "--output_dir", "work/stage1", "--resume_from_checkpoint", "work/stage1")  # fmt: skip
    assert "--model_name_or_path" in line and "student" in line


@pytest.mark.slow
def test_continuing_a_finished_run_into_a_new_folder_explains(
    capsys: pytest.CaptureFixture[str], relative_stage1: Path, tmp_path: Path
) -> None:
    stage1 = relative_stage1 / "stage1"
    args = ["train", *TINY, "--model_name_or_path", str(relative_stage1 / "student"), "--do_prune"]
    line = cli_error(capsys, *args, "--resume_from_checkpoint", str(stage1), "--output_dir", str(tmp_path / "new"))
    assert "corrupt" not in line
    assert "finished" in line and "nothing to continue" in line and str(stage1) in line
    assert "--overwrite_output_dir" in line and f"--resume {stage1}" in line
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_continuing_an_unfinished_run_into_a_new_folder_refused(
    capsys: pytest.CaptureFixture[str], relative_stage1: Path, tmp_path: Path
) -> None:
    """Its best model so far lives in its own folder: a continuation elsewhere would end without a model."""
    import shutil

    run = tmp_path / "interrupted"
    shutil.copytree(relative_stage1 / "stage1", run)
    meta = json.loads((run / "pruneofa.json").read_text())
    (run / "pruneofa.json").write_text(json.dumps({**meta, "finished": False}))
    args = ["train", *TINY, "--model_name_or_path", str(relative_stage1 / "student"), "--do_prune"]
    line = cli_error(capsys, *args, "--resume_from_checkpoint", str(run), "--output_dir", str(tmp_path / "new"))
    assert "corrupt" not in line and f"--output_dir {run}" in line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--do_distillation"], ["--teacher_model_name_or_path"]),
        ([*KD_TINY, "--loss_types", "KL", "KL"], ["--loss_types", "CE"]),
        ([*KD_TINY, "--loss_types", "CE", "JS"], ["--loss_types", "KL"]),
        ([*KD_TINY, "--loss_weights", "0", "0"], ["--loss_weights", "0 1"]),
        ([*KD_TINY, "--loss_weights", "-1", "1"], ["--loss_weights", ">= 0"]),
        ([*KD_TINY, "--temperature", "0"], ["--temperature", "> 0"]),
    ],
)
def test_bad_distillation_flags_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], names: list[str]
) -> None:
    out = tmp_path / "o"
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", "tiny-bert", *flags, "--output_dir", str(out))
    assert all(name in line for name in names), line
    assert not out.exists()


def test_teacher_with_other_labels_refused_without_leaving_a_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import shutil

    from pruneofa.models.loading import resolve_model

    teacher = tmp_path / "teacher"
    shutil.copytree(resolve_model("tiny-bert"), teacher)
    config = json.loads((teacher / "config.json").read_text())
    config.update(id2label={"0": "not_equivalent", "1": "equivalent"}, label2id={"not_equivalent": 0, "equivalent": 1})
    (teacher / "config.json").write_text(json.dumps(config))
    out = tmp_path / "o"
    line = cli_error(capsys, "train", *TINY, "--model_name_or_path", "tiny-bert", "--do_distillation",
                     "--teacher_model_name_or_path", str(teacher), "--output_dir", str(out))  # fmt: skip
    assert "teacher" in line and "equivalent" in line and "negative" in line
    assert not out.exists()
