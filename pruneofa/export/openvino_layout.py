"""The int8 OpenVINO IR with each Linear's weights stored [N, K] (one row per output) and read by a MatMul with
`transpose_b=True`: the layout OpenVINO's CPU sparse-weights path needs to engage.

ONNX MatMul keeps weights [K, N], and OpenVINO's converter keeps that layout (i8 Constant -> Convert ->
(Subtract) -> Multiply -> MatMul). With it, `CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE` never engages on an AMX CPU,
not even for one 90%-sparse layer (../shared/reference/stack.md: the primitive stays `brgemm_avx512_amx_I8`);
with the weights as [N, K] it does (`brgemm_avx512_amx_sparse_I8`), and it then reads values plus a bitmask
instead of the dense bytes. Without that option the two layouts compile to the same FullyConnected layer, so the
IR always gets the [N, K] form: same numbers (the transpose moves int8 bytes, the per-output scales move with
them), and the sparse path is there for `bench --sparse_rate` to measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def weights_as_rows(model: Any) -> int:
    """Rewrite every int8-weight MatMul of `model` (an `openvino.Model`, changed in place) to [N, K] weights with
    `transpose_b=True`; returns how many were rewritten. MatMuls of two activations (attention) are left alone."""
    import openvino.opset13 as ops

    rewritten = 0
    for matmul in model.get_ordered_ops():
        if matmul.get_type_name() != "MatMul" or matmul.get_attributes()["transpose_b"]:
            continue
        chain = _int8_weight_chain(matmul.input_value(1).get_node())
        if chain is None:
            continue
        weights, convert, zero_point, scale = chain
        columns = weights.shape[1]  # N, the outputs
        rows = ops.constant(np.ascontiguousarray(weights.T))
        node = ops.convert(rows, convert.get_destination_type())
        if zero_point is not None:
            node = ops.subtract(node, ops.constant(_per_output_row(zero_point, columns)))
        node = ops.multiply(node, ops.constant(_per_output_row(scale, columns)))
        transpose_a = bool(matmul.get_attributes()["transpose_a"])
        replacement = ops.matmul(matmul.input_value(0), node, transpose_a=transpose_a, transpose_b=True)
        replacement.set_friendly_name(matmul.get_friendly_name())
        matmul.output(0).replace(replacement.output(0))
        rewritten += 1
    model.validate_nodes_and_infer_types()
    return rewritten


WeightChain = tuple[np.ndarray, Any, np.ndarray | None, np.ndarray]  # weights, Convert, zero point, scale


def _int8_weight_chain(node: Any) -> WeightChain | None:
    """(int8 [K, N] weights, their Convert, zero point or None, scale) when `node` is the dequantized-weights
    subgraph Constant(i8) -> Convert -> [Subtract(zero point)] -> Multiply(scale); else None."""
    if node.get_type_name() != "Multiply":
        return None
    found = _constant_and_other(node)
    if found is None:
        return None
    scale, inner = found
    zero_point = None
    if inner.get_type_name() == "Subtract":
        found = _constant_and_other(inner)
        if found is None:
            return None
        zero_point, inner = found
    if inner.get_type_name() != "Convert":
        return None
    source = inner.input_value(0).get_node()
    if source.get_type_name() != "Constant" or source.get_output_element_type(0).get_type_name() not in ("i8", "u8"):
        return None
    weights = source.get_data()
    if weights.ndim != 2:
        return None
    columns = weights.shape[1]
    if any(a.size not in (1, columns) for a in (scale, *([] if zero_point is None else [zero_point]))):
        return None  # scales along K (or anything else) do not survive a plain transpose
    return weights, inner, zero_point, scale


def _constant_and_other(node: Any) -> tuple[np.ndarray, Any] | None:
    """A binary node's constant operand (as an array) and its other operand's node, or None."""
    first, second = (node.input_value(i).get_node() for i in range(2))
    for constant, other in ((second, first), (first, second)):
        value = _constant_value(constant)
        if value is not None:
            return value, other
    return None


def _constant_value(node: Any) -> np.ndarray | None:
    """A Constant's data; also through the ops a model read straight from ONNX still has around its scales and
    zero points (Reshape / Squeeze / Unsqueeze / Convert of a Constant, folded once the IR is saved)."""
    if node.get_type_name() == "Constant":
        return np.asarray(node.get_data())
    if node.get_type_name() == "Convert":
        inner = _constant_value(node.input_value(0).get_node())
        return None if inner is None else inner.astype(node.get_output_element_type(0).to_dtype())
    shape = node.get_output_partial_shape(0)
    if node.get_type_name() in ("Reshape", "Squeeze", "Unsqueeze") and shape.is_static:
        inner = _constant_value(node.input_value(0).get_node())
        return None if inner is None else inner.reshape(shape.to_shape())
    return None


def _per_output_row(values: np.ndarray, columns: int) -> np.ndarray:
    """A per-output constant broadcast along [K, N]'s last axis, reshaped to broadcast along [N, K]'s first."""
    if values.size == 1:
        return values
    return np.ascontiguousarray(values.reshape(columns, 1))
