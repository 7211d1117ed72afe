"""Nothing a user owns is overwritten: each command replaces only an earlier output of its own kind (and only when
asked), never the user's files, another kind of output, or an input of the same run. Refusals come before any work
and leave everything as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import cli_error, run_cli

from pruneofa.core.errors import PruneofaError
from pruneofa.core.outputs import check_not_an_input, claim_output_dir, folder_kind

TRAIN = ["train", "--task_name", "rotten_tomatoes", "--max_train_samples", "32", "--max_eval_samples", "16"]
TRAIN += ["--max_seq_length", "16", "--num_train_epochs", "1", "--model_name_or_path", "tiny-bert"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "my_notes.txt").write_text("mine")
    return path


def test_kinds_and_claims(tmp_path: Path) -> None:
    assert folder_kind(tmp_path / "missing") is None and folder_kind(tmp_path) is None
    assert folder_kind(user_folder(tmp_path / "u")) == "other files"
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sparsity.json").write_text("{}")
    assert folder_kind(tmp_path / "s") == "sparse model"
    assert claim_output_dir(tmp_path / "s", "--output_dir", "sparse model", True, "--overwrite_output_dir")
    with pytest.raises(PruneofaError, match=r"already exists.*--overwrite_output_dir"):
        claim_output_dir(tmp_path / "s", "--output_dir", "sparse model", False, "--overwrite_output_dir")
    with pytest.raises(PruneofaError, match="holds a sparse model, not an export"):
        claim_output_dir(tmp_path / "s", "--output_dir", "export", True, "--overwrite")
    with pytest.raises(PruneofaError, match="files not made by pruneofa"):
        claim_output_dir(tmp_path / "u", "--output_dir", "export", True, "--overwrite")
    for inside in (tmp_path / "s", tmp_path, tmp_path / "s" / "sub"):  # equal, parent of, inside
        with pytest.raises(PruneofaError, match="an input of this run"):
            check_not_an_input(inside, "--output_dir", {"--model_name_or_path": tmp_path / "s"})
    check_not_an_input(tmp_path / "other", "--output_dir", {"--model_name_or_path": "tiny-bert"})  # not a folder


def test_train_never_writes_over_a_sparse_model_or_its_own_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    student = tmp_path / "student"
    student.mkdir()
    (student / "sparsity.json").write_text("{}")
    (student / "config.json").write_text("{}")
    before = snapshot(student)
    for extra in ([], ["--overwrite_output_dir"]):
        line = cli_error(capsys, *TRAIN, "--output_dir", str(student), *extra)
        assert "holds a sparse model" in line and "empty or new folder" in line
    line = cli_error(capsys, *TRAIN[:-1], str(student), "--output_dir", str(student), "--overwrite_output_dir")
    assert "--model_name_or_path" in line and "an input of this run" in line
    line = cli_error(capsys, *TRAIN[:-1], str(student), "--output_dir", str(tmp_path), "--overwrite_output_dir")
    assert "an input of this run" in line  # a parent of the input: replacing it would delete the input
    assert snapshot(student) == before


def test_train_never_writes_into_a_users_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mine = user_folder(tmp_path / "mine")
    line = cli_error(capsys, *TRAIN, "--output_dir", str(mine), "--overwrite_output_dir")
    assert "files not made by pruneofa" in line and snapshot(mine) == {"my_notes.txt": b"mine"}


def test_replacing_a_run_leaves_nothing_of_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "pruneofa.json").write_text(json.dumps({"stage": "old"}))
    (out / "quantization.safetensors").write_bytes(b"old")
    (out / "stale_tokenizer_file.txt").write_text("old")
    done = run_cli(*TRAIN, "--output_dir", str(out), "--overwrite_output_dir")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "stale_tokenizer_file.txt").exists() and not (out / "quantization.safetensors").exists()
    assert json.loads((out / "pruneofa.json").read_text())["stage"] != "old"


def test_export_overwrite_replaces_only_an_export(
    capsys: pytest.CaptureFixture[str], tiny_exports: Path, tmp_path: Path
) -> None:
    run = tmp_path / "stage2"
    shutil.copytree(tiny_exports / "stage2", run)
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "checkpoints" / "last" / "state.json").write_text("{}")
    target = tmp_path / "other-run"
    shutil.copytree(run, target)
    before = snapshot(target)
    line = cli_error(capsys, "export", str(run), "--output_dir", str(target), "--overwrite", "--no_verify")
    assert "holds a training run, not an export" in line and snapshot(target) == before
    line = cli_error(capsys, "export", str(run), "--output_dir", str(run / "export"), "--no_verify")
    assert "an input of this run" in line and not (run / "export").exists()
    mine = user_folder(tmp_path / "mine")
    line = cli_error(capsys, "export", str(run), "--output_dir", str(mine), "--overwrite", "--no_verify")
    assert "files not made by pruneofa" in line and snapshot(mine) == {"my_notes.txt": b"mine"}


def test_sparsify_overwrite_replaces_only_a_sparse_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "pruneofa.json").write_text("{}")
    line = cli_error(capsys, "sparsify", "tiny-bert", "--output_dir", str(run), "--overwrite_output_dir")
    assert "holds a training run, not a sparse model" in line and (run / "pruneofa.json").exists()


def test_bundle_overwrite_replaces_only_a_bundle(
    capsys: pytest.CaptureFixture[str], tiny_exports: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "model.tar.gz"
    mine.write_bytes(b"my own archive")
    line = cli_error(capsys, "bundle", str(tiny_exports / "int8"), "-o", str(mine), "--overwrite")
    assert "not a pruneofa bundle" in line and mine.read_bytes() == b"my own archive"
