"""predict/eval default to the engine `pruneofa bench` measured fastest for this model on this machine, and say
so; another machine (or AMX masked), a record that cannot run here, or none at all gives the onnxruntime default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pruneofa.core.files import sha256_file
from pruneofa.runtime import engine_choice
from pruneofa.runtime.predict import Predictor

CPU = {"model_name": "Test CPU", "flags": ["avx2", "avx512f", "avx512_vnni", "amx_int8"], "usable_cpus": 2}
FASTEST = {"b1": {"engine": "openvino", "seq_s": 150.0}, "b8": {"engine": "onnxruntime", "seq_s": 20.0}}


def test_without_a_record_the_default_says_how_to_get_one(tiny_exports: Path, tmp_path: Path) -> None:
    choice = engine_choice.choose(tiny_exports / "int8", 1, CPU, tmp_path)
    assert choice.engine == "onnxruntime" and "pruneofa bench" in choice.reason


def test_the_recorded_fastest_engine_at_the_nearest_measured_batch(tiny_exports: Path, tmp_path: Path) -> None:
    export = tiny_exports / "int8"
    written = engine_choice.record(export, FASTEST, CPU, "2026-12-03T21:00:00+00:00", tmp_path)
    assert written == tmp_path / engine_choice.CHOICE_FILE
    record = next(iter(json.loads(written.read_text()).items()))
    assert record[0].startswith(sha256_file(export / "model.onnx"))  # keyed by the model file itself
    one = engine_choice.choose(export, 1, CPU, tmp_path)
    assert one.engine == "openvino" and "batch 1" in one.reason and "150.0 seq/s" in one.reason
    assert engine_choice.choose(export, 4, CPU, tmp_path).engine == "openvino"  # largest measured <= 4 is 1
    assert engine_choice.choose(export, 32, CPU, tmp_path).engine == "onnxruntime"  # ... <= 32 is 8


def test_another_machine_or_amx_masked_does_not_inherit_the_record(
    tiny_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tiny_exports / "int8"
    engine_choice.record(export, FASTEST, CPU, "now", tmp_path)
    no_amx = {**CPU, "flags": ["avx2", "avx512f", "avx512_vnni"]}
    assert engine_choice.choose(export, 1, no_amx, tmp_path).engine == "onnxruntime"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # OpenVINO without AMX on this same CPU
    assert engine_choice.choose(export, 1, CPU, tmp_path).engine == "onnxruntime"


def test_a_recorded_engine_that_cannot_run_here_falls_back(tiny_exports: Path, tmp_path: Path) -> None:
    export = tmp_path / "int8"
    shutil.copytree(tiny_exports / "int8", export)
    (export / "model.sparse.onnx").unlink()
    engine_choice.record(export, {"b1": {"engine": "openvino-sparse", "seq_s": 9.0}}, CPU, "now", tmp_path)
    choice = engine_choice.choose(export, 1, CPU, tmp_path)
    assert choice.engine == "onnxruntime" and "openvino-sparse" in choice.reason and "cannot run" in choice.reason
    engine_choice.record(export, {"b1": {"engine": "tensorrt", "seq_s": 9.0}}, CPU, "now", tmp_path)
    assert engine_choice.choose(export, 1, CPU, tmp_path).engine == "onnxruntime"
    (tmp_path / engine_choice.CHOICE_FILE).write_text("{not json")  # a damaged record only loses the choice
    assert engine_choice.choose(export, 1, CPU, tmp_path).engine == "onnxruntime"


def test_predict_and_a_bundle_of_the_export_use_the_record(
    tiny_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pruneofa.core import hardware
    from pruneofa.export.bundle import BundleConfig, write_bundle

    monkeypatch.setattr(engine_choice, "default_cache_dir", lambda: tmp_path)
    export = tiny_exports / "int8"
    engine_choice.record(export, {"b1": {"engine": "openvino", "seq_s": 1.0}}, hardware.cpu_info(), "now")
    assert Predictor(export).engine_choice.engine == "openvino"
    assert Predictor(export, engine="onnxruntime").engine_choice.reason == "onnxruntime: named by --engine"
    bundle = write_bundle(export, BundleConfig(output=tmp_path / "model.tar.gz"))
    assert Predictor(Path(bundle["file"])).engine_choice.engine == "openvino"  # same model.onnx, same record
    assert Predictor(export, batch_size=8).engine_choice.engine == "openvino"  # nearest measured batch
