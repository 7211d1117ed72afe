"""OpenVINO's default precision (bf16 float ops where the CPU has them) is used for an int8 export only where
export checked its dev score there; a check that fails keeps the f32 hint and says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pruneofa.core.hardware import amx_runs_bf16
from pruneofa.data.tasks import get_task
from pruneofa.export import default_precision
from pruneofa.runtime.engines import (
    DEFAULT_PRECISION_CHECK,
    SPARSE_DEFAULT_PRECISION_CHECK,
    Engine,
    open_engine,
    verified_precision,
)


def _with_manifest(folder: Path, check: dict[str, Any] | None) -> Path:
    folder.mkdir()
    verification = {"status": "passed"} if check is None else {"status": "passed", DEFAULT_PRECISION_CHECK: check}
    (folder / "manifest.json").write_text(json.dumps({"verification": verification}))
    return folder


AMX = {"amx_flags": ["amx_bf16", "amx_int8", "amx_tile"], "avx512_bf16": True}
NO_AMX = {"amx_flags": [], "avx512_bf16": True}  # e.g. AMD Zen 4: bf16 without AMX


def test_the_precision_follows_the_recorded_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pruneofa.runtime.engines.cpu_info", lambda: AMX)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert verified_precision(_with_manifest(tmp_path / "held", {"held": True})) is None  # OpenVINO's default
    assert verified_precision(_with_manifest(tmp_path / "failed", {"held": False})) == "f32"
    assert verified_precision(_with_manifest(tmp_path / "old", None)) == "f32"  # exported before the check
    assert verified_precision(tmp_path) == "f32"  # no manifest at all
    assert verified_precision(_with_manifest(tmp_path / "odd", {"held": "yes"})) == "f32"  # only a real True
    # bf16 float ops pay on AMX only (measured 0.95x with AVX512-BF16 alone): elsewhere the f32 hint stays.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert verified_precision(tmp_path / "held") == "f32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert verified_precision(tmp_path / "held") is None
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr("pruneofa.runtime.engines.cpu_info", lambda: NO_AMX)
    assert verified_precision(tmp_path / "held") == "f32"


def test_amx_runs_bf16_reads_the_flags_and_the_onednn_cap() -> None:
    assert amx_runs_bf16(AMX, None) and amx_runs_bf16(AMX, "") and amx_runs_bf16(AMX, "avx512_core_amx")
    assert not amx_runs_bf16(AMX, "AVX512_CORE_BF16") and not amx_runs_bf16(AMX, "AVX2")
    assert not amx_runs_bf16(NO_AMX, None) and not amx_runs_bf16({}, None)


@pytest.mark.slow
def test_a_default_precision_that_moves_labels_is_not_taken(tiny_exports: Path) -> None:
    folder = tiny_exports / "int8"
    task = get_task("rotten_tomatoes")
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((200, 2)).astype(np.float32)
    logits = {"openvino": f32, "onnxruntime": f32}

    def worse(engine: Engine) -> tuple[dict[str, Any], np.ndarray]:  # the same labels, a score below tolerance
        return {"validation": {"accuracy": 0.88}}, f32

    check = default_precision.check_on_dev(folder, task, worse, logits, "validation", 0.9, 0.01)
    if not check["checked"]:  # OpenVINO's default is f32 on this CPU: nothing to check, nothing taken
        assert check["precision_used"] == "f32" and not check["held"]
        return
    assert not check["held"] and check["label_agreement_with_f32"] == 1.0 and "keeps the f32 hint" in check["reason"]

    def within(engine: Engine) -> tuple[dict[str, Any], np.ndarray]:  # some labels flipped, the score holds
        moved = f32.copy()
        moved[:3] = moved[:3, ::-1]
        return {"validation": {"accuracy": 0.895}}, moved

    held = default_precision.check_on_dev(folder, task, within, logits, "validation", 0.9, 0.01)
    assert held["held"] and held["label_agreement_with_f32"] == pytest.approx(197 / 200) and "reason" not in held


def test_the_sparse_form_follows_its_own_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The IR's check does not speak for the sparse form, nor the other way round."""
    monkeypatch.setattr("pruneofa.runtime.engines.cpu_info", lambda: AMX)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    ir_only = _with_manifest(tmp_path / "ir", {"held": True})
    assert verified_precision(ir_only, "openvino-sparse") == "f32"
    both = tmp_path / "both"
    both.mkdir()
    checks = {DEFAULT_PRECISION_CHECK: {"held": False}, SPARSE_DEFAULT_PRECISION_CHECK: {"held": True}}
    (both / "manifest.json").write_text(json.dumps({"verification": {"status": "passed", **checks}}))
    assert verified_precision(both, "openvino-sparse") is None and verified_precision(both) == "f32"


def test_an_unchecked_sparse_form_keeps_the_f32_hint(tiny_exports: Path) -> None:
    from pruneofa.kernels import openvino_op

    if not openvino_op.availability().ok:
        pytest.skip("the sparse kernel's OpenVINO extension is not built here")
    engine = open_engine(tiny_exports / "int8", "openvino-sparse")  # exported without verification: no check
    assert engine.describe()["precision_hint"] == "f32"
