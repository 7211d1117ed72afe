"""The IR's int8 weights as [N, K] with transpose_b: same outputs, only dequantized-int8 MatMuls rewritten."""

from __future__ import annotations

import numpy as np
import pytest

from pruneofa.export.openvino_layout import weights_as_rows

ov = pytest.importorskip("openvino")
ops = pytest.importorskip("openvino.opset13")


def _linear(x: object, weights: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None) -> object:
    # Activations quantized as in the QDQ export (FakeQuantize, u8 levels): OpenVINO then runs the layer int8.
    low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
    x = ops.fake_quantize(x, low, high, low, high, 256)
    node = ops.convert(ops.constant(weights), ov.Type.f32)
    if zero_point is not None:  # as a model read straight from ONNX has it: an int8 vector, converted, reshaped
        zp = ops.convert(ops.constant(zero_point.astype(np.int8).ravel()), ov.Type.f32)
        node = ops.subtract(node, ops.reshape(zp, ops.constant(np.array(zero_point.shape)), False))
    scales = ops.constant(scale) if scale.size == 1 else ops.unsqueeze(ops.constant(scale.ravel()), 0)
    return ops.matmul(x, ops.multiply(node, scales), transpose_a=False, transpose_b=False)


def _model(rng: np.random.Generator, zero_point: bool) -> object:
    x = ops.parameter([-1, 7, 64], ov.Type.f32, name="x")
    w1 = rng.integers(-127, 128, (64, 128), dtype=np.int8)
    w1[rng.random(w1.shape) < 0.9] = 0
    scale1 = rng.uniform(0.001, 0.01, (1, 128)).astype(np.float32)  # per output, as ONNX QDQ gives it
    zp1 = rng.integers(-3, 4, (1, 128)).astype(np.float32) if zero_point else None
    h = _linear(x, w1, scale1, zp1)
    w2 = rng.integers(-127, 128, (128, 64), dtype=np.int8)
    h2 = _linear(h, w2, np.array(0.02, dtype=np.float32), None)  # one scale for the whole tensor
    scores = ops.matmul(h2, h2, transpose_a=False, transpose_b=True)  # two activations: not a Linear
    return ov.Model([scores], [x], "tiny")


@pytest.mark.parametrize("zero_point", [False, True])
def test_rewritten_model_computes_the_same(zero_point: bool) -> None:
    rng = np.random.default_rng(3)
    original, rewritten = _model(rng, zero_point), _model(np.random.default_rng(3), zero_point)
    assert weights_as_rows(rewritten) == 2
    matmuls = [op for op in rewritten.get_ordered_ops() if op.get_type_name() == "MatMul"]
    assert [op.get_attributes()["transpose_b"] for op in matmuls] == [True, True, True]
    linears = [op for op in matmuls if op.input_value(1).get_node().get_type_name() == "Multiply"]
    assert [list(op.input_value(1).get_shape()) for op in linears] == [[128, 64], [64, 128]]  # [N, K]

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    x = rng.standard_normal((2, 7, 64)).astype(np.float32)
    want = core.compile_model(original, "CPU", config)(x)[0]
    got = core.compile_model(rewritten, "CPU", config)(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_second_pass_changes_nothing() -> None:
    model = _model(np.random.default_rng(0), zero_point=False)
    assert weights_as_rows(model) == 2
    assert weights_as_rows(model) == 0  # already transpose_b: left as it is


def test_float_weights_are_left_alone() -> None:
    x = ops.parameter([-1, 16], ov.Type.f32, name="x")
    weights = ops.constant(np.ones((16, 8), dtype=np.float32))
    model = ov.Model([ops.matmul(x, weights, transpose_a=False, transpose_b=False)], [x], "float")
    assert weights_as_rows(model) == 0


def test_openvino_sparse_weights_engage_on_the_rewritten_layout() -> None:
    from pruneofa.core.hardware import cpu_info
    from pruneofa.runtime.engines import openvino_runtime_layers

    if not cpu_info().get("amx"):
        pytest.skip("OpenVINO's sparse-weights path needs an AMX CPU")
    model = _model(np.random.default_rng(1), zero_point=False)
    weights_as_rows(model)
    config = {"INFERENCE_PRECISION_HINT": "f32", "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": 0.5}
    compiled = ov.Core().compile_model(model, "CPU", config)
    compiled(np.ones((1, 7, 64), dtype=np.float32))  # dynamic shapes: primitives are picked at the first inference
    primitives = [r["primitive_type"] for r in openvino_runtime_layers(compiled) if r["layer_type"] == "FullyConnected"]
    assert sum("sparse" in p for p in primitives) == 1, primitives  # the 90%-sparse layer; the dense one is not
