"""The `openvino-sparse` engine: the export's model.sparse.onnx in OpenVINO with pruneofa's extension. It predicts
what `openvino` predicts on the QDQ model; where it cannot run (no file, kernel not built or built for another
OpenVINO) predict and eval end in one error line naming the reason and the fix, exit code 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_error

from pruneofa.kernels import openvino_op
from pruneofa.kernels.native import Availability
from pruneofa.runtime.engines import ENGINES, open_engine, sparse_unavailable
from pruneofa.runtime.predict import Predictor

RUNS_HERE = pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)
ROWS = [("a gorgeous, witty, seductive movie", None), ("the plot is a dull mess", None), ("fine", None)] * 3
MISMATCH = (
    "libpruneofa_openvino.so was built against OpenVINO 2025.1.0 but 2026.4.1 is installed; reinstall pruneofa "
    "(`pip install --force-reinstall --no-deps -e .`) to rebuild it"
)
BUILD_FAILED = "the install step could not build it (cmake: not found); see pruneofa/kernels/BUILD_ERROR.txt"


def test_engine_is_listed() -> None:
    assert "openvino-sparse" in ENGINES


@RUNS_HERE
def test_predictions_equal_openvinos(tiny_exports: Path) -> None:
    sparse, dense = Predictor(tiny_exports / "int8", "openvino-sparse"), Predictor(tiny_exports / "int8", "openvino")
    got, want = sparse.predict(ROWS), dense.predict(ROWS)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    for a, b in zip(got, want, strict=True):
        for label, p in b["probabilities"].items():
            assert a["probabilities"][label] == pytest.approx(p, abs=1e-3)
    info = sparse.engine.describe()
    assert info["engine"] == "openvino-sparse" and info["model"].endswith("model.sparse.onnx")
    assert info["sparse_linears"] == info["int8_matmuls"] > 0 and info["kernel_isa"] in (
        "amx",
        "avx512_vnni",
        "avx2",
        "scalar",
    )


@RUNS_HERE
def test_logits_match_on_dynamic_shapes(tiny_exports: Path) -> None:
    feeds = {n: np.ones((3, 11), dtype=np.int64) for n in ("input_ids", "attention_mask")}
    feeds["token_type_ids"] = np.zeros((3, 11), dtype=np.int64)
    got = open_engine(tiny_exports / "int8", "openvino-sparse").run(feeds)
    want = open_engine(tiny_exports / "int8", "openvino").run(feeds)
    np.testing.assert_allclose(got, want, atol=0.05)


@pytest.mark.parametrize("reason", [MISMATCH, BUILD_FAILED])
def test_unavailable_kernel_is_one_line_with_the_fix(
    tiny_exports: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    monkeypatch.setattr(openvino_op, "availability", lambda: Availability(False, reason))
    line = cli_error(capsys, "predict", str(tiny_exports / "int8"), "a fine film", "--engine", "openvino-sparse")
    assert line.startswith("error: engine openvino-sparse: the native sparse kernel is unavailable: ")
    assert reason in line and "reinstall" in line
    if "cmake" in reason:  # a failed build: the fix is the build tools, then the reinstall
        assert "install cmake and a C++17 compiler" in line and "`pip install -e .`" in line
    eval_line = cli_error(
        capsys, "eval", str(tiny_exports / "int8"), "--task_name", "rotten_tomatoes", "--engine", "openvino-sparse"
    )
    assert reason in eval_line
    assert sparse_unavailable() is not None


def test_export_without_the_sparse_form_is_one_line(
    tiny_exports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "int8"
    shutil.copytree(tiny_exports / "int8", folder)
    (folder / "model.sparse.onnx").unlink()
    line = cli_error(capsys, "predict", str(folder), "a fine film", "--engine", "openvino-sparse")
    assert "no model.sparse.onnx for engine openvino-sparse" in line and "--no_sparse_form" in line
    line = cli_error(capsys, "predict", str(tiny_exports / "fp32"), "a fine film", "--engine", "openvino-sparse")
    assert "no model.sparse.onnx" in line and "--engine openvino" in line


def test_unknown_engine_lists_it(tiny_exports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(capsys, "predict", str(tiny_exports / "int8"), "x", "--engine", "sparse")
    assert "openvino-sparse" in line
