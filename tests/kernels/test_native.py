"""The sparse int8 kernel: exact int32 results against numpy on every path this CPU runs (odd shapes, all-zero
rows and columns, tokens that are not a multiple of any tile), the fused f32 layer, the K-group packing, the
$PRUNEOFA_SPARSE_ISA override, and the OpenVINO op against the same reference."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pruneofa.core.errors import PruneofaError
from pruneofa.kernels import native, openvino_op
from pruneofa.kernels.group_weights import GroupWeights, pack_groups

needs_kernel = pytest.mark.skipif(not native.availability().ok, reason=native.availability().reason)

SHAPES = [  # (rows, cols, tokens)
    (1, 1, 1),
    (16, 4, 16),
    (17, 5, 1),
    (37, 53, 7),
    (64, 768, 64),
    (40, 768, 100),  # 64 + 36: a full token block and a partial one
    (33, 130, 129),
    (768, 96, 200),
    (24, 3072, 20),  # K = 3072: several K chunks per row block
]


def sparse_int8(rng: np.random.Generator, rows: int, cols: int, zeros: float = 0.9) -> np.ndarray:
    w = rng.integers(-128, 128, (rows, cols)).astype(np.int8)
    w[rng.random((rows, cols)) < zeros] = 0
    return w


def block_sparse_int8(rng: np.random.Generator, rows: int, cols: int, zeros: float = 0.9) -> np.ndarray:
    """Zeros in whole blocks of 16 outputs x 4 inputs (sparsify --block_rows 16 --block 4), partial blocks at the
    edges: what the AVX-512 paths' blocks form is for."""
    w = sparse_int8(rng, rows, cols, zeros=0.0)
    dropped = rng.random((-(-rows // 16), -(-cols // 4))) < zeros
    w[np.repeat(np.repeat(dropped, 16, axis=0), 4, axis=1)[:rows, :cols]] = 0
    return w


def paths() -> list[str]:
    return native.supported_isas() if native.availability().ok else []


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_is_exact_on_every_path(isa: str, shape: tuple[int, int, int]) -> None:
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    rows, cols, tokens = shape
    rng = np.random.default_rng(rows * 1000 + cols)
    w = sparse_int8(rng, rows, cols)
    w[rows // 2] = 0  # an all-zero row
    w[:, cols // 3] = 0  # an all-zero column
    w[0, : min(cols, 9)] = [-128, 127, -128, 127, 1, -1, 127, -128, 127][: min(cols, 9)]  # extremes, a full group
    x = rng.integers(0, 256, (tokens, cols)).astype(np.uint8)
    x[0] = 255  # largest products
    expected = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(native.gemm_s32(pack_groups(w), x, isa, threads=2), expected)


@needs_kernel
@pytest.mark.parametrize("isa", ["avx512_vnni", "amx"])
@pytest.mark.parametrize("form", ["rows", "blocks"])
@pytest.mark.parametrize("pattern", ["unstructured", "blocks"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_both_weight_forms_are_exact(  # type: ignore[no-untyped-def]
    isa: str, form: str, pattern: str, shape: tuple[int, int, int], monkeypatch
) -> None:
    """The AVX-512 paths' two weight forms ($PRUNEOFA_SPARSE_FORM forces one; by default block-sparse weights
    take the blocks form, output lanes, on both paths), on unstructured and 16x4-block
    zeros, with all-zero output blocks and partial blocks."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    monkeypatch.setenv("PRUNEOFA_SPARSE_FORM", form)
    rows, cols, tokens = shape
    rng = np.random.default_rng(rows * 7 + cols)
    w = sparse_int8(rng, rows, cols) if pattern == "unstructured" else block_sparse_int8(rng, rows, cols)
    w[: min(rows, 16)] = 0  # an all-zero output block
    x = rng.integers(0, 256, (tokens, cols)).astype(np.uint8)
    x[-1] = 255
    expected = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(native.gemm_s32(pack_groups(w), x, isa, threads=2), expected)


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_dense_and_empty_weights(isa: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 96)).astype(np.uint8)
    for w in (rng.integers(-128, 128, (20, 96)).astype(np.int8), np.zeros((20, 96), np.int8)):
        np.testing.assert_array_equal(
            native.gemm_s32(pack_groups(w), x, isa), x.astype(np.int64) @ w.T.astype(np.int64)
        )
    assert native.gemm_s32(pack_groups(np.ones((3, 8), np.int8)), np.zeros((0, 8), np.uint8), isa).shape == (0, 3)
    # K = 3072 dense and half dense, in both weight forms of the AVX-512 paths: a row's groups in one K chunk run
    # past 32 and end exactly on 32s (the rows form finds each chunk's groups 32 at a time)
    x = rng.integers(0, 256, (70, 3072)).astype(np.uint8)
    for form, zeros in (("rows", 0.0), ("rows", 0.5), ("blocks", 0.0)):
        monkeypatch.setenv("PRUNEOFA_SPARSE_FORM", form)
        w = sparse_int8(rng, 20, 3072, zeros)
        expected = x.astype(np.int64) @ w.T.astype(np.int64)
        np.testing.assert_array_equal(native.gemm_s32(pack_groups(w), x, isa), expected, err_msg=f"{form} {zeros}")


def reference_linear(x, w, w_scale, bias, x_scale, zp):  # type: ignore[no-untyped-def]
    q = np.clip(np.rint(x / np.float32(x_scale)) + zp, 0, 255)  # QuantizeLinear: round half to even
    return ((q - zp) * x_scale) @ (w.astype(np.float64) * w_scale[:, None]).T + bias


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_fused_linear_matches_qdq_arithmetic(isa: str) -> None:
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(2)
    rows, cols, tokens = 70, 101, 45
    w = sparse_int8(rng, rows, cols)
    w_scale = (rng.random(rows) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(rows).astype(np.float32)
    x = (rng.standard_normal((tokens, cols)) * 2).astype(np.float32)
    x[0, :4] = [0.01, 0.03, -0.01, 100.0]  # exact halves (x_scale 0.02) and saturation
    mult, offset = openvino_op.epilogue(w_scale, bias, 0.02, 120, w)
    got = native.linear(pack_groups(w), x, 0.02, 120, mult, offset, isa=isa)
    np.testing.assert_allclose(got, reference_linear(x, w, w_scale, bias, 0.02, 120), rtol=1e-5, atol=1e-4)


def reference_gelu(y):  # type: ignore[no-untyped-def]
    import math

    return 0.5 * y * (1.0 + np.vectorize(math.erf)(y / math.sqrt(2.0)))


@needs_kernel
def reference_norm(x, gamma, beta, epsilon=1e-5):  # type: ignore[no-untyped-def]
    """ONNX LayerNormalization over the last axis, in float64."""
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + epsilon) * gamma + beta


@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_fused_gelu_matches_the_exact_erf(isa: str) -> None:
    """The epilogue's GELU (AVX-512 paths: a rational erf; the others: std::erf) against math.erf, over outputs
    spread across the range where GELU bends (and beyond +-4 sqrt 2, where erf is +-1)."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(8)
    rows, cols, tokens = 48, 64, 70
    w = sparse_int8(rng, rows, cols)
    w_scale = (rng.random(rows) * 0.02 + 1e-3).astype(np.float32)
    bias = np.linspace(-8, 8, rows).astype(np.float32)  # outputs from about -9 to 9
    x = (rng.standard_normal((tokens, cols)) * 2).astype(np.float32)
    mult, offset = openvino_op.epilogue(w_scale, bias, 0.02, 120, w)
    got = native.linear(pack_groups(w), x, 0.02, 120, mult, offset, isa=isa, activation="gelu")
    expected = reference_gelu(reference_linear(x, w, w_scale, bias, 0.02, 120))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)
    with pytest.raises(ValueError, match="activation 'relu'"):
        native.linear(pack_groups(w), x, 0.02, 120, mult, offset, isa=isa, activation="relu")


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_quantizing_is_bit_exact_at_half_integers(isa: str) -> None:
    """The AVX-512 paths divide by the scale as a product with its inverse and redo the rare ties exactly: an
    identity weight reads the quantized activations back, to compare them with QuantizeLinear's, value by value."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    for scale in (np.float32(0.02), np.float32(0.0123457), np.float32(3.0)):
        halves = ((np.arange(-300, 300) + 0.5) * scale).astype(np.float32)  # x / scale at (or next to) k + 0.5
        x = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, -np.inf)])
        x = np.concatenate([x, np.float32([1e12, -1e12, 3e38, -3e38])])  # saturate: past int32 once divided
        x = np.resize(x, (len(x) // 64 + 1) * 64).reshape(-1, 64)
        with np.errstate(over="ignore"):  # 3e38 / 0.02 is inf in float32, and saturates as ONNX's does
            expected = np.clip(np.rint(x / scale) + 77, 0, 255)  # float32 division, round half to even, as ONNX
        identity = np.eye(64, dtype=np.int8)
        ones, zeros = np.ones(64, np.float32), np.zeros(64, np.float32)
        got = native.linear(pack_groups(identity), x, float(scale), 77, ones, zeros, isa=isa, threads=2)
        np.testing.assert_array_equal(got, expected)


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_u8_handoff_between_two_layers(isa: str) -> None:
    """The FFN's pair as the op runs it: the first layer (GELU fused) writes the second's input quantized (u8, as
    the QDQ graph's QuantizeLinear between them would), the second reads it as it is. Odd widths, tokens past a
    16-token chunk."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(5)
    tokens, cols, hidden, rows = 37, 70, 84, 45
    w1, w2 = sparse_int8(rng, hidden, cols), sparse_int8(rng, rows, hidden)
    s1, s2 = ((rng.random(n) * 0.01 + 1e-3).astype(np.float32) for n in (hidden, rows))
    b1, b2 = rng.standard_normal(hidden).astype(np.float32), rng.standard_normal(rows).astype(np.float32)
    x = (rng.standard_normal((tokens, cols)) * 2).astype(np.float32)
    m1, o1 = openvino_op.epilogue(s1, b1, 0.02, 128, w1)
    h = native.linear(pack_groups(w1), x, 0.02, 128, m1, o1, "u8", 0.01, 3, isa, 2, "gelu")
    expected = reference_gelu(reference_linear(x, w1, s1, b1, 0.02, 128))
    q = np.clip(np.rint(expected / np.float32(0.01)) + 3, 0, 255)
    assert h.dtype == np.uint8 and np.abs(h - q).max() <= 1 and (h == q).mean() > 0.99  # near-ties may round apart
    m2, o2 = openvino_op.epilogue(s2, b2, 0.01, 3, w2)
    got = native.linear(pack_groups(w2), h, 0.01, 3, m2, o2, "f32", isa=isa, threads=2)
    dequantized = (h.astype(np.float64) - 3) * 0.01
    np.testing.assert_allclose(got, dequantized @ (w2.astype(np.float64) * s2[:, None]).T + b2, rtol=1e-5, atol=1e-4)
    with pytest.raises(PruneofaError, match="scales must be > 0"):
        native.linear(pack_groups(w1), x, 0.02, 128, m1, o1, "u8", 0.0, 3, isa)


def test_packing_round_trips_and_counts_groups() -> None:
    rng = np.random.default_rng(3)
    w = sparse_int8(rng, 33, 70)
    packed = pack_groups(w)
    np.testing.assert_array_equal(packed.to_dense(), w)
    again = GroupWeights.from_bytes(packed.to_bytes(), 33, 70)
    np.testing.assert_array_equal(again.to_dense(), w)
    quads = np.pad(w, ((0, 0), (0, 2))).reshape(33, -1, 4)
    assert packed.nonempty_groups == int((quads != 0).any(axis=2).sum())
    assert 0.25 < pack_groups(sparse_int8(rng, 256, 256)).group_fill < 0.45  # ~34% at 90% random zeros
    with pytest.raises(ValueError, match="int8"):
        pack_groups(w.astype(np.int16))
    with pytest.raises(ValueError, match="expected"):
        GroupWeights.from_bytes(packed.to_bytes()[:-2], 33, 70)


@needs_kernel
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_malformed_weights_are_refused_not_misread(isa: str) -> None:
    """Every path walks a row's groups in ascending order (K chunk by chunk): out-of-order or out-of-range group
    numbers, or row offsets that go backwards, are an error, never a silently wrong sum."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    good = pack_groups(sparse_int8(np.random.default_rng(7), 8, 64))
    x = np.ones((3, 64), np.uint8)
    native.gemm_s32(good, x, isa)  # well formed: runs
    row = int(np.argmax(np.diff(good.row_ptr) >= 2))  # a row with at least two groups
    swapped = good.groups.copy()
    a = int(good.row_ptr[row])
    swapped[a], swapped[a + 1] = swapped[a + 1], swapped[a]
    beyond = good.groups.copy()
    beyond[0] = 16  # 64 columns = groups 0..15
    backwards = good.row_ptr.copy()
    backwards[1] = backwards[2] + 1
    for bad in (
        GroupWeights(8, 64, good.row_ptr, swapped, good.values),
        GroupWeights(8, 64, good.row_ptr, beyond, good.values),
        GroupWeights(8, 64, backwards, good.groups, good.values),
    ):
        with pytest.raises(PruneofaError, match="malformed weights"):
            native.gemm_s32(bad, x, isa)


@needs_kernel
def test_bad_path_names_are_clear() -> None:
    w = pack_groups(np.ones((2, 4), np.int8))
    with pytest.raises(PruneofaError, match="unknown; use one of scalar, avx2, avx512_vnni, amx"):
        native.gemm_s32(w, np.ones((1, 4), np.uint8), "amx9000")


def _in_subprocess(code: str, isa: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, native.ISA_ENV: isa}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@needs_kernel
@pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)
def test_openvino_engine_refuses_a_path_override_this_cpu_cannot_run(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openvino as ov

    monkeypatch.setenv(native.ISA_ENV, "avx9")
    with pytest.raises(PruneofaError, match=r"\$PRUNEOFA_SPARSE_ISA='avx9': not a path this CPU can run; use one of"):
        openvino_op.add_to(ov.Core())


def test_env_override_forces_a_path() -> None:
    code = "from pruneofa.kernels import native; print(native.selected_isa())"
    for isa in paths():
        assert _in_subprocess(code, isa).stdout.strip() == isa
    bad = _in_subprocess(code, "sse9")
    assert bad.returncode != 0 and "PRUNEOFA_SPARSE_ISA='sse9': not a path this CPU can run" in bad.stderr


@needs_kernel
@pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)
@pytest.mark.parametrize("pattern", ["sparse_int8", "block_sparse_int8"])
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_openvino_op_matches_the_reference(isa: str, pattern: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    form = "blocks" if pattern == "block_sparse_int8" else "rows"  # the AVX-512 paths' form (others ignore it)
    code = f"""
import os; os.environ["PRUNEOFA_SPARSE_FORM"] = {form!r}
import numpy as np, onnx, openvino as ov
from onnx import helper, TensorProto
from pruneofa.kernels import openvino_op
from pruneofa.kernels.group_weights import pack_groups
from tests.kernels.test_native import (reference_gelu, reference_linear, reference_norm, sparse_int8,
                                      block_sparse_int8)
rng = np.random.default_rng(4)
w = {pattern}(rng, 40, 70); w_scale = (rng.random(40) * 0.01 + 1e-3).astype(np.float32)
bias = rng.standard_normal(40).astype(np.float32)
mult, offset = openvino_op.epilogue(w_scale, bias, 0.02, 128, w)
node, inits = openvino_op.node_and_initializers("fc", "x", "y", pack_groups(w), 0.02, 128, mult, offset)
gelu_node, _ = openvino_op.node_and_initializers("fc_gelu", "x", "z", pack_groups(w), 0.02, 128, mult, offset,
                                                 "gelu")
gelu_node.input[:] = node.input  # the same weights, GELU in the epilogue
gamma, beta = rng.standard_normal(40).astype(np.float32), rng.standard_normal(40).astype(np.float32)
norm = openvino_op.ResidualNorm("r", gamma, beta, 1e-5)
norm_node, norm_inits = openvino_op.node_and_initializers("fc_norm", "x", "n", pack_groups(w), 0.02, 128, mult,
                                                          offset, norm=norm)
norm_node.input[1:4] = node.input[1:4]  # the same weights; the residual Add + LayerNorm as the last pass
w2 = {pattern}(rng, 64, 70)
mult2, offset2 = openvino_op.epilogue(w_scale[:32].repeat(2), bias[:32].repeat(2), 0.02, 128, w2)
heads_node, heads_inits = openvino_op.node_and_initializers("fc_heads", "x", ["q", "v"], pack_groups(w2), 0.02, 128,
                                                            mult2, offset2, linears=2, splits=[32, 32], heads=[2, 0])
x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 70])
r_info = helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", "sequence", 40])
y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
z_info = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
n_info = helper.make_tensor_value_info("n", TensorProto.FLOAT, None)
q_info = helper.make_tensor_value_info("q", TensorProto.FLOAT, None)
v_info = helper.make_tensor_value_info("v", TensorProto.FLOAT, None)
# The op holds the constants its ONNX node reads (x, and the residual, its only inputs); where one is not a
# constant (here the offset, a graph input) it reads them all as inputs: both must compute the same.
input_node, _ = openvino_op.node_and_initializers("fc_inputs", "x", "u", pack_groups(w), 0.02, 128, mult, offset)
input_node.input[1:4] = [node.input[1], node.input[2], "offset"]
o_info = helper.make_tensor_value_info("offset", TensorProto.FLOAT, [40])
# x split into 2 heads of 32, [batch, 2, seq, 32] (attention's context as its product with the value leaves it)
w3 = {pattern}(rng, 40, 64)
mult3, offset3 = openvino_op.epilogue(w_scale, bias, 0.02, 128, w3)
context_node, context_inits = openvino_op.node_and_initializers("fc_context", "xh", "c", pack_groups(w3), 0.02, 128,
                                                                mult3, offset3, input_heads=2)
xh_info = helper.make_tensor_value_info("xh", TensorProto.FLOAT, ["batch", 2, "sequence", 32])
c_info = helper.make_tensor_value_info("c", TensorProto.FLOAT, None)
u_info = helper.make_tensor_value_info("u", TensorProto.FLOAT, None)
graph = helper.make_graph([node, gelu_node, norm_node, heads_node, input_node, context_node], "g",
                          [x_info, r_info, o_info, xh_info], [y_info, z_info, n_info, q_info, v_info, u_info, c_info],
                          inits + norm_inits[3:] + heads_inits + context_inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid(openvino_op.DOMAIN, 1)])
onnx.save(model, {str(tmp_path / "one.onnx")!r})
core = ov.Core(); openvino_op.add_to(core)
compiled = core.compile_model(core.read_model({str(tmp_path / "one.onnx")!r}), "CPU",
                              {{"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}})
x = rng.standard_normal((3, 37, 70)).astype(np.float32)
r = rng.standard_normal((3, 37, 40)).astype(np.float32)
xh = rng.standard_normal((3, 2, 37, 32)).astype(np.float32)
results = compiled([x, r, offset, xh])
got, gelu, normed = results[0], results[1], results[2]
assert got.shape == (3, 37, 40)
np.testing.assert_array_equal(results[5], got)
np.testing.assert_allclose(results[6], reference_linear(xh.transpose(0, 2, 1, 3).reshape(3, 37, 64), w3, w_scale, bias,
                                                        0.02, 128), rtol=1e-5, atol=1e-4)
np.testing.assert_allclose(normed, reference_norm(reference_linear(x, w, w_scale, bias, 0.02, 128) + r, gamma, beta),
                           rtol=1e-4, atol=1e-4)
# query and value of one op: the first split into 2 heads [batch, 2, seq, 16] (37 tokens: 16-token runs cross
# sequences), the second as it is
both = reference_linear(x, w2, w_scale[:32].repeat(2), bias[:32].repeat(2), 0.02, 128)
q, v = compiled([x, r, offset, xh])[3], compiled([x, r, offset, xh])[4]
np.testing.assert_allclose(q, both[..., :32].reshape(3, 37, 2, 16).transpose(0, 2, 1, 3), rtol=1e-5, atol=1e-4)
np.testing.assert_allclose(v, both[..., 32:], rtol=1e-5, atol=1e-4)
np.testing.assert_allclose(got, reference_linear(x, w, w_scale, bias, 0.02, 128), rtol=1e-5, atol=1e-4)
np.testing.assert_allclose(gelu, reference_gelu(reference_linear(x, w, w_scale, bias, 0.02, 128)), rtol=1e-5,
                           atol=1e-4)
# A large input (4,400 tokens): quantized in token ranges on every thread, then multiplied.
big = rng.standard_normal((4, 1100, 70)).astype(np.float32)
big_r = rng.standard_normal((4, 1100, 40)).astype(np.float32)
big_h = rng.standard_normal((4, 2, 1100, 32)).astype(np.float32)
np.testing.assert_allclose(compiled([big, big_r, offset, big_h])[2],
                           reference_norm(reference_linear(big, w, w_scale, bias, 0.02, 128) + big_r, gamma, beta),
                           rtol=1e-4, atol=1e-4)
big_results = compiled([big, big_r, offset, big_h])
np.testing.assert_allclose(big_results[0], reference_linear(big, w, w_scale, bias, 0.02, 128), rtol=1e-5, atol=1e-4)
big_context = big_h.transpose(0, 2, 1, 3).reshape(4, 1100, 64)
np.testing.assert_allclose(big_results[6], reference_linear(big_context, w3, w_scale, bias, 0.02, 128), rtol=1e-5,
                           atol=1e-4)
# The small input again: the op's scratch (not zeroed where a path writes all of its layout) holds the big one's.
np.testing.assert_allclose(compiled([x, r, offset, xh])[0], reference_linear(x, w, w_scale, bias, 0.02, 128), rtol=1e-5,
                           atol=1e-4)
print("ok")
"""
    done = _in_subprocess(code, isa)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_unbuilt_kernel_says_why(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(native, "KERNEL_LIBRARY", tmp_path / "libpruneofa_sparse.so")
    monkeypatch.setattr(native, "BUILD_ERROR_FILE", tmp_path / "BUILD_ERROR.txt")
    native._library.cache_clear()
    try:
        state = native.availability()
        assert not state.ok and "not built; reinstall pruneofa" in state.reason
        (tmp_path / "BUILD_ERROR.txt").write_text("OSError: cmake is not on PATH\n")
        assert "could not build it (OSError: cmake is not on PATH)" in native.availability().reason
        with pytest.raises(PruneofaError, match="the sparse kernel is unavailable"):
            native.supported_isas()
    finally:
        native._library.cache_clear()


@needs_kernel
@pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)
@pytest.mark.parametrize("pattern", ["sparse_int8", "block_sparse_int8"])
@pytest.mark.parametrize("isa", native.ISA_NAMES)
def test_openvino_chain_matches_the_reference(isa: str, pattern: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A chain op (BERT's layer tail): Linear + residual norm, then a GELU Linear handing the next its u8 input, then
    a Linear + residual norm whose residual is the first stage's result; tokens split over threads (the K-group
    paths) or stage by stage (amx rows), 37-token sequences so the threads' ranges end mid-chunk."""
    if isa not in paths():
        pytest.skip(f"this CPU cannot run {isa}")
    form = "blocks" if pattern == "block_sparse_int8" else "rows"
    code = f"""
import os; os.environ["PRUNEOFA_SPARSE_FORM"] = {form!r}
import numpy as np, onnx, openvino as ov
from onnx import helper, TensorProto
from pruneofa.kernels import openvino_op
from pruneofa.kernels.group_weights import pack_groups
from tests.kernels.test_native import (reference_gelu, reference_linear, reference_norm, sparse_int8,
                                      block_sparse_int8)
rng = np.random.default_rng(7)
def layer(rows, cols):
    w = {pattern}(rng, rows, cols)
    return w, (rng.random(rows) * 0.01 + 1e-3).astype(np.float32), rng.standard_normal(rows).astype(np.float32)
w0, s0, b0 = layer(48, 70); w1, s1, b1 = layer(80, 48); w2, s2, b2 = layer(48, 80)
g0, be0, g2, be2 = (rng.standard_normal(48).astype(np.float32) for _ in range(4))
x_scales, x_zeros = (0.02, 0.05, 0.03), (128, 100, 7)
stages = [openvino_op.ChainStage(pack_groups(w1), 0.05, 100, *openvino_op.epilogue(s1, b1, 0.05, 100, w1), "gelu"),
          openvino_op.ChainStage(pack_groups(w2), 0.03, 7, *openvino_op.epilogue(s2, b2, 0.03, 7, w2),
                                 norm=(g2, be2, 1e-5, 0), u8_input=True)]
node, inits = openvino_op.node_and_initializers(
    "tail", "x", "y", pack_groups(w0), 0.02, 128, *openvino_op.epilogue(s0, b0, 0.02, 128, w0), linears=3,
    norm=openvino_op.ResidualNorm("r", g0, be0, 1e-5), then=stages)
graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 70]),
                                        helper.make_tensor_value_info("r", TensorProto.FLOAT, ["b", "s", 48])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
opsets = [helper.make_opsetid("", 17), helper.make_opsetid(openvino_op.DOMAIN, 1)]
onnx.save(helper.make_model(graph, opset_imports=opsets), {str(tmp_path / "chain.onnx")!r})
core = ov.Core(); openvino_op.add_to(core)
compiled = core.compile_model(core.read_model({str(tmp_path / "chain.onnx")!r}), "CPU",
                              {{"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}})
for batch, seq in ((3, 37), (2, 300)):
    x = rng.standard_normal((batch, seq, 70)).astype(np.float32)
    r = rng.standard_normal((batch, seq, 48)).astype(np.float32)
    h0 = reference_norm(reference_linear(x, w0, s0, b0, 0.02, 128) + r, g0, be0)
    a = reference_gelu(reference_linear(h0, w1, s1, b1, 0.05, 100))
    want = reference_norm(reference_linear(a, w2, s2, b2, 0.03, 7) + h0, g2, be2)
    got = compiled([x, r])[0]
    assert got.shape == want.shape, got.shape
    # float rounding can move a quantized value by one step: most outputs match closely, all stay near
    close = np.isclose(got, want, rtol=1e-4, atol=1e-3)
    assert close.mean() > 0.99 and np.abs(got - want).max() < 0.1, (close.mean(), np.abs(got - want).max())
print("ok")
"""
    done = _in_subprocess(code, isa)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
