"""eval, predict and bench run an export folder only if its files are the ones its manifest.json recorded:
a deleted manifest, a changed or missing model file is refused; predict's verdict is cached, and re-checked on
any change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import cli_error

from pruneofa.core.errors import ModelError
from pruneofa.runtime.manifest import verify_export
from pruneofa.runtime.predict import Predictor

ROWS = [("a fine film", None)]


@pytest.fixture
def export(tiny_exports: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "int8"
    shutil.copytree(tiny_exports / "int8", copy)
    return copy


def test_deleted_manifest_refused_by_predict_eval_and_bench(
    capsys: pytest.CaptureFixture[str], export: Path, tiny_exports: Path
) -> None:
    (export / "manifest.json").unlink()
    with pytest.raises(ModelError, match=r"has no manifest\.json"):
        Predictor(export)
    line = cli_error(capsys, "eval", str(export), "--task_name", "rotten_tomatoes", "--max_eval_samples", "8")
    assert "has no manifest.json" in line
    line = cli_error(capsys, "predict", str(export), "good")
    assert "has no manifest.json" in line
    line = cli_error(capsys, "bench", str(export), "--baseline", str(tiny_exports / "fp32"))
    assert "no manifest.json" in line


def test_bench_refuses_a_changed_export(capsys: pytest.CaptureFixture[str], export: Path, tiny_exports: Path) -> None:
    (export / "tokenizer.json").write_text((export / "tokenizer.json").read_text() + " ")
    line = cli_error(capsys, "bench", str(export), "--baseline", str(tiny_exports / "fp32"))
    assert "tokenizer.json: does not match the sha256" in line


def test_changed_model_refused(capsys: pytest.CaptureFixture[str], export: Path, tmp_path: Path) -> None:
    Predictor(export, threads=1)  # verified once: the verdict is cached ...
    data = bytearray((export / "model.onnx").read_bytes())
    data[-1] ^= 0x01
    (export / "model.onnx").write_bytes(bytes(data))  # ... and a changed file changes the key
    with pytest.raises(ModelError, match="does not match the sha256"):
        Predictor(export)
    line = cli_error(capsys, "eval", str(export), "--task_name", "rotten_tomatoes", "--max_eval_samples", "8")
    assert "model.onnx: does not match the sha256" in line


def test_a_missing_file_is_not_a_lie_the_others_are_checked(export: Path) -> None:
    (export / "openvino_model.bin").unlink()  # the OpenVINO engine would say it is missing; ORT can still run
    assert verify_export(export)["precision"] == "int8"
    (export / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"config\.json: does not match"):
        verify_export(export)


def test_verdict_is_cached(export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verify_export(export, tmp_path)

    def no_hashing(_: Path) -> str:
        raise AssertionError("hashed again although nothing changed")

    monkeypatch.setattr("pruneofa.runtime.manifest.sha256_file", no_hashing)
    assert verify_export(export, tmp_path)["precision"] == "int8"
