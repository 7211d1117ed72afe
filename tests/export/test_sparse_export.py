"""The sparse form as part of `pruneofa export`: int8 exports write model.sparse.onnx, list it in the manifest with
its facts, and verify it on the dev set (same labels as the QDQ model); a failed check refuses the export; where
the kernel is not built the file is still written and marked unverified; `--no_sparse_form` and fp32 exports
leave it out. And the real CLI path: export, then `eval --engine openvino-sparse`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_cli

from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import sha256_file
from pruneofa.export import sparse_export
from pruneofa.export.exporter import ExportConfig, export
from pruneofa.kernels import openvino_op
from pruneofa.kernels.native import Availability

RUNS_HERE = pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)
DEV_N = 64
LINEARS = 14  # tiny-bert: 2 layers x 6 + pooler + classifier
NOT_BUILT = "libpruneofa_openvino.so is not built; reinstall pruneofa (`pip install -e .` or `make setup`)"


def _export(source: Path, out: Path, **kwargs: Any) -> dict[str, Any]:
    return export(source, ExportConfig(output_dir=out, formats=kwargs.pop("formats", ("onnx",)), **kwargs))


@pytest.fixture(scope="module")
def verified(tiny_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The tiny int8 model exported with both formats and verified on 64 dev examples."""
    out = tmp_path_factory.mktemp("sparse-export") / "int8"
    return out, _export(tiny_exports / "stage2", out, formats=("onnx", "openvino"), max_eval_samples=DEV_N)


def test_int8_export_lists_the_sparse_form_with_its_facts(verified: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = verified
    assert (out / "model.sparse.onnx").is_file()
    entry = manifest["files"]["model.sparse.onnx"]
    assert entry["sha256"] == sha256_file(out / "model.sparse.onnx") and entry["bytes"] > 0
    assert json.loads((out / "manifest.json").read_text())["sparse_form"] == manifest["sparse_form"]
    facts = manifest["sparse_form"]
    assert facts["written"] and facts["file"] == "model.sparse.onnx" and facts["engine"] == "openvino-sparse"
    assert facts["layers_rewritten"] == facts["quantized_linears"] == LINEARS
    # 90% zeros: the K-group form (6 bytes per non-empty 4-wide group) is smaller than the dense int8 weights.
    assert 0 < facts["weight_bytes"] < facts["dense_int8_bytes"]
    assert facts["weight_bytes_ratio"] == pytest.approx(facts["weight_bytes"] / facts["dense_int8_bytes"])
    assert 0.2 < facts["group_fill"] < 0.5


@RUNS_HERE
def test_sparse_form_is_verified_against_the_qdq_model(verified: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = verified
    facts, check = manifest["sparse_form"], manifest["verification"]
    assert facts["runtime"]["sparse_linears"] == LINEARS and facts["runtime"]["model"] == "model.sparse.onnx"
    verdict = facts["verification"]
    assert verdict["status"] == "passed" and verdict["qdq_engine"] in ("openvino", "onnxruntime")
    assert verdict["argmax_agreement"] >= verdict["required_agreement"] >= min(0.99, verdict["qdq_engines_agreement"])
    assert verdict["argmax_agreement"] == max(verdict["agreement_by_engine"].values())
    assert facts["verification"]["num_examples"] == check["num_examples"] == DEV_N
    scored = check["openvino-sparse"]  # recorded like the other engines: metrics, agreement with torch
    assert "accuracy" in scored["metrics"]["validation"] and scored["argmax_agreement"] >= 0.95
    assert scored["vs_qdq"]["engine"] == verdict["qdq_engine"] and scored["vs_qdq"]["max_abs_diff"] < 0.05


@RUNS_HERE
def test_labels_that_differ_from_the_qdq_model_refuse_the_export(
    tiny_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sparse_export.open_engine

    class Flipped:  # the sparse form's engine, every label inverted
        def __init__(self, engine: Any) -> None:
            self.engine, self.input_names = engine, engine.input_names

        def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
            return -np.asarray(self.engine.run(feeds))

        def describe(self) -> dict[str, Any]:
            return dict(self.engine.describe())

    monkeypatch.setattr(sparse_export, "open_engine", lambda *a, **k: Flipped(real(*a, **k)))
    out = tmp_path / "o"
    with pytest.raises(PruneofaError, match=r"model\.sparse\.onnx \(openvino-sparse\) predicts another label .*"
                       r"--no_sparse_form"):  # fmt: skip
        _export(tiny_exports / "stage2", out, max_eval_samples=DEV_N)
    assert not out.exists() and not list(tmp_path.glob(".o.*"))  # atomic: nothing half-made


def test_without_the_kernel_the_file_is_written_and_marked_unverified(
    tiny_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pruneofa.cli import main

    monkeypatch.setattr(openvino_op, "availability", lambda: Availability(False, NOT_BUILT))
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as done:
        main(["export", str(tiny_exports / "stage2"), "--output_dir", str(out), "--format", "onnx",
              "--max_eval_samples", "16"])  # fmt: skip
    assert done.value.code in (0, None)
    manifest = json.loads((out / "manifest.json").read_text())
    check = manifest["sparse_form"]["verification"]
    assert check["status"] == "skipped" and NOT_BUILT in check["reason"]
    assert check["summary"].startswith("verification skipped: ") and "runtime" not in manifest["sparse_form"]
    assert "model.sparse.onnx" in manifest["files"] and "openvino-sparse" not in manifest["verification"]
    assert manifest["verification"]["status"] == "passed"  # the dense engines are verified as always
    warnings = [line for line in capsys.readouterr().err.splitlines() if "model.sparse.onnx" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: model.sparse.onnx: verification skipped: ")


def test_no_sparse_form_and_fp32_exports_leave_it_out(tiny_exports: Path, tmp_path: Path) -> None:
    off = _export(tiny_exports / "stage2", tmp_path / "off", verify=False, sparse_form=False)
    assert off["sparse_form"] == {"written": False, "reason": "--no_sparse_form"}
    assert not (tmp_path / "off" / "model.sparse.onnx").exists() and "model.sparse.onnx" not in off["files"]
    fp32 = _export(tiny_exports / "dense", tmp_path / "fp32", verify=False)
    assert not fp32["sparse_form"]["written"] and "fp32" in fp32["sparse_form"]["reason"]
    assert not (tmp_path / "fp32" / "model.sparse.onnx").exists()


def test_no_verify_skips_the_sparse_forms_dev_check_too(tiny_exports: Path) -> None:
    facts = json.loads((tiny_exports / "int8" / "manifest.json").read_text())["sparse_form"]
    assert facts["written"] and facts["verification"]["status"] == "skipped"
    assert "--no_verify" in facts["verification"]["reason"] or not openvino_op.availability().ok


def test_flag_is_in_export_help() -> None:
    done = run_cli("export", "--help")
    assert done.returncode == 0 and "--no_sparse_form" in done.stdout and "openvino-sparse" in done.stdout


@RUNS_HERE
def test_cli_export_then_eval_on_the_sparse_engine(tiny_exports: Path, tmp_path: Path) -> None:
    """The real entry point, as a user runs it: export (the sparse form verified), then eval on openvino-sparse
    scores what eval on openvino scores."""
    out = tmp_path / "export"
    done = run_cli("export", str(tiny_exports / "stage2"), "--output_dir", str(out), "--max_eval_samples", "48")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model.sparse.onnx: verified" in done.stdout and "openvino-sparse" in done.stdout
    scores = {}
    for engine in ("openvino", "openvino-sparse"):
        result = tmp_path / f"{engine}.json"
        done = run_cli("eval", str(out), "--task_name", "rotten_tomatoes", "--engine", engine,
                       "--max_eval_samples", "48", "--output", str(result))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        scores[engine] = json.loads(result.read_text())
    assert scores["openvino-sparse"]["engine"]["engine"] == "openvino-sparse"
    assert scores["openvino-sparse"]["engine"]["sparse_linears"] == LINEARS
    assert scores["openvino-sparse"]["validation"] == scores["openvino"]["validation"]


def test_required_agreement_is_the_qdq_engines_own_agreement_when_lower() -> None:
    """Two engines running the same QDQ file disagree on near ties; the sparse form is held to 99.9%, or to that
    measured noise floor where it is lower, never to less."""
    rng = np.random.default_rng(0)
    ort = rng.normal(size=(1000, 2)).astype(np.float32)
    same = {"torch": ort, "onnxruntime": ort, "openvino": ort.copy()}
    assert sparse_export.required_agreement(same) == (sparse_export.AGREEMENT, 1.0)
    flipped = ort.copy()
    flipped[:5] = flipped[:5, ::-1]  # 5 of 1000 labels differ between the two engines
    needed, between = sparse_export.required_agreement({**same, "openvino": flipped})
    assert between == pytest.approx(0.995) and needed == pytest.approx(0.995)
    assert sparse_export.required_agreement({"torch": ort, "onnxruntime": ort}) == (sparse_export.AGREEMENT, None)
