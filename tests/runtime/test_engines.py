"""ONNX export pieces on a hand-made tiny QAT model: int8 weights folded exactly, zeros kept, every Linear int8 in
onnxruntime's optimized graph and OpenVINO's runtime model, logits equal to torch; engines stay torch-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from tiny import tiny_batch, tiny_bert

from pruneofa.compress.quantization import QuantConfig, int8_weight, prepare_qat_
from pruneofa.compress.sparsity import magnitude_prune_, prunable_weight_names
from pruneofa.core.errors import ModelError
from pruneofa.export.to_onnx import INT8_SUFFIX, export_onnx, onnx_weights, qdq_counts
from pruneofa.runtime.engines import IR_XML, default_engine, open_engine, ort_optimized_op_counts

NAMES = ["input_ids", "attention_mask", "token_type_ids"]
LINEARS = 2 * 6 + 2  # 2 layers x (Q K V attn-out intermediate output) + pooler + classifier


def _qat_model() -> torch.nn.Module:
    model = tiny_bert(num_labels=3)
    magnitude_prune_(model, 0.9, prunable_weight_names(model))
    prepare_qat_(model, QuantConfig())
    model.train()
    with torch.no_grad():
        for seed in range(4):  # calibrate the observers
            model(**tiny_batch(seed=seed))
    return model.eval()


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    import openvino as ov

    folder = tmp_path_factory.mktemp("int8")
    model = _qat_model()
    export_onnx(model, folder / "model.onnx", "int8", NAMES)
    ov.save_model(ov.convert_model(str(folder / "model.onnx")), str(folder / IR_XML), compress_to_fp16=False)
    return model, folder


def test_int8_weights_are_the_qat_weights(int8_export: tuple[torch.nn.Module, Path]) -> None:
    model, folder = int8_export
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(folder / "model.onnx")).graph.initializer}
    stored = {
        k.removeprefix("model.").removesuffix(INT8_SUFFIX): v for k, v in inits.items() if k.endswith(INT8_SUFFIX)
    }
    assert len(stored) == LINEARS
    for layer, array in stored.items():
        q, _ = int8_weight(model.get_submodule(layer))
        assert array.dtype == np.int8
        np.testing.assert_array_equal(array, q.numpy().T)  # stored [in, out]
    assert not any(i.endswith(".weight_t") for i in inits)  # no float copy of a quantized weight is left
    assert qdq_counts(folder / "model.onnx")["int8_weights"] == LINEARS


def test_sparsity_read_from_file_equals_torch(int8_export: tuple[torch.nn.Module, Path]) -> None:
    model, folder = int8_export
    report = onnx_weights(folder / "model.onnx")
    for name in prunable_weight_names(model):
        weight = model.get_parameter(name)
        assert report[name]["zeros"] == int((weight == 0).sum()), name
        assert report[name]["shape"] == list(weight.shape)
    assert report["bert.pooler.dense.weight"]["sparsity"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_every_linear_runs_int8_and_matches_torch(int8_export: tuple[torch.nn.Module, Path], engine: str) -> None:
    model, folder = int8_export
    runner = open_engine(folder, engine)  # type: ignore[arg-type]
    info = runner.describe()
    assert info["int8_matmuls"] == LINEARS
    batch = tiny_batch(batch_size=5, seq_len=23, seed=9)  # another batch and length: the axes are dynamic
    got = runner.run({k: v.numpy() for k, v in batch.items()})
    with torch.no_grad():
        want = model(**batch).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    if engine == "openvino":
        assert info["precision_hint"] == "f32" and info["inference_precision"] == "f32"
        # describe() before any run must still report the kernels that will run, not OpenVINO's `undef_*`.
        from pruneofa.runtime.engines import openvino_runtime_layers

        fresh = open_engine(folder, "openvino")
        fresh.describe()
        kernels = {row["primitive_type"] for row in openvino_runtime_layers(fresh.compiled)}  # type: ignore[attr-defined]
        assert kernels and not any(k.startswith("undef") for k in kernels if k), kernels


def test_ort_counts_come_from_the_optimized_graph(int8_export: tuple[torch.nn.Module, Path]) -> None:
    _, folder = int8_export
    ops = ort_optimized_op_counts(folder / "model.onnx")
    assert ops["MatMulIntegerToFloat"] == LINEARS
    assert ops["Gemm"] == 0  # no Linear was left to a float Gemm (MatMulAddFusion is disabled)


def test_fp32_export_keeps_names_and_zeros(tmp_path: Path) -> None:
    model = tiny_bert()
    magnitude_prune_(model, 0.5, prunable_weight_names(model))
    export_onnx(model, tmp_path / "model.onnx", "fp32", NAMES)
    report = onnx_weights(tmp_path / "model.onnx")
    assert {r["dtype"] for r in report.values()} == {"float32"} and len(report) == LINEARS
    assert report["bert.encoder.layer.0.output.dense.weight"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert qdq_counts(tmp_path / "model.onnx")["QuantizeLinear"] == 0
    runner = open_engine(tmp_path, default_engine(tmp_path))
    assert runner.describe()["int8_matmuls"] == 0
    batch = tiny_batch()
    with torch.no_grad():
        want = model(**batch).logits.numpy()
    np.testing.assert_allclose(runner.run({k: v.numpy() for k, v in batch.items()}), want, atol=1e-5)


def test_int8_export_of_float_model_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not quantization-aware"):
        export_onnx(tiny_bert(), tmp_path / "model.onnx", "int8", NAMES)


def test_missing_model_file_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"neither model\.onnx nor openvino_model\.xml"):
        default_engine(tmp_path)
    with pytest.raises(ModelError, match=r"openvino_model\.xml"):
        open_engine(tmp_path, "openvino")


def test_corrupt_onnx_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        open_engine(tmp_path, "onnxruntime")


def test_engines_module_imports_no_torch() -> None:
    code = (
        "import sys, pruneofa.runtime.engines, pruneofa.runtime.predict\n"
        "assert not {'torch', 'transformers'} & set(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
