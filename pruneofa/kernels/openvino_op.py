"""The kernel inside OpenVINO: the `SparseInt8Linear` op of libpruneofa_openvino.so, and the ONNX node that
OpenVINO's ONNX frontend maps to it (domain `ai.pruneofa`).

An OpenVINO extension must come from the same OpenVINO release it runs in: the library records the version it
was built against, and a mismatch is reported as "unavailable, reinstall" instead of a crash at compile time.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pruneofa.core.errors import PruneofaError
from pruneofa.kernels.group_weights import GroupWeights
from pruneofa.kernels.native import OPENVINO_LIBRARY, Availability, not_built_reason

DOMAIN = "ai.pruneofa"
OP_TYPE = "SparseInt8Linear"


def _release(version: str) -> str:
    """'2026.4.1-20441-...' -> '2026.4.1' (the part an extension's ABI depends on)."""
    return version.split("-")[0]


@functools.cache
def availability() -> Availability:
    if not OPENVINO_LIBRARY.is_file():
        return Availability(False, not_built_reason(OPENVINO_LIBRARY))
    try:
        import openvino as ov  # loads libopenvino, which the extension links to
    except ImportError as exc:
        return Availability(False, f"openvino is not importable ({exc})")
    lib = ctypes.CDLL(str(OPENVINO_LIBRARY))
    lib.pofa_openvino_built_with.restype = ctypes.c_char_p
    built = lib.pofa_openvino_built_with().decode()
    running = ov.get_version()
    if _release(built) != _release(running):
        return Availability(
            False,
            f"{OPENVINO_LIBRARY.name} was built against OpenVINO {built} but {running} is installed; reinstall "
            "pruneofa (`pip install --force-reinstall --no-deps -e .`) to rebuild it",
        )
    return Availability(True, f"{OPENVINO_LIBRARY} (OpenVINO {built})")


def add_to(core: Any) -> None:
    """Register the op with an `openvino.Core` (before read_model of a model that uses it). A $PRUNEOFA_SPARSE_ISA
    this CPU cannot run is refused here, by name, rather than by the op's first inference (an OpenVINO error)."""
    from pruneofa.kernels import native

    state = availability()
    if not state.ok:
        raise PruneofaError(f"the sparse OpenVINO engine is unavailable: {state.reason}")
    native.selected_isa()
    core.add_extension(str(OPENVINO_LIBRARY))


@dataclass(frozen=True)
class ResidualNorm:
    """The residual Add and LayerNorm (last axis) after a Linear, which its op then computes as its last pass:
    LayerNorm(y + residual) * gamma + beta."""

    residual: str  # the tensor added to the Linear's result
    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float


@dataclass(frozen=True)
class ChainStage:
    """A further Linear that the same op runs after its own (a chain: e.g. BERT's layer tail), reading the stage
    before's result: as floats quantized with (x_scale, x_zero_point), or as u8 that the stage before wrote so.
    `norm`: (gamma, beta, epsilon, residual), residual the stage whose result is added (0 the op's own Linear; -1
    the op's residual input)."""

    weights: GroupWeights
    x_scale: float
    x_zero_point: int
    mult: np.ndarray
    offset: np.ndarray
    activation: str = "none"
    norm: tuple[np.ndarray, np.ndarray, float, int] | None = None
    u8_input: bool = False


def epilogue(
    w_scale: np.ndarray, bias: np.ndarray, x_scale: float, x_zero_point: int, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mult, offset) such that y = acc * mult + offset equals DQ(x) @ DQ(W).T + bias (pruneofa_sparse.h)."""
    mult = (np.float64(x_scale) * w_scale.astype(np.float64)).astype(np.float32)
    row_sums = weight.astype(np.int64).sum(axis=1)
    offset = (bias.astype(np.float64) - mult.astype(np.float64) * x_zero_point * row_sums).astype(np.float32)
    return mult, offset


def node_and_initializers(
    name: str,
    x: str,
    y: str | Sequence[str],
    w: GroupWeights,
    x_scale: float,
    x_zero_point: int,
    mult: np.ndarray,
    offset: np.ndarray,
    activation: str = "none",
    linears: int = 1,
    splits: Sequence[int] = (),
    u8_output: tuple[float, int] | None = None,
    transposed: Sequence[bool] = (),
    norm: ResidualNorm | None = None,
    heads: Sequence[int] = (),
    input_heads: int = 0,
    then: Sequence[ChainStage] = (),
) -> tuple[Any, list[Any]]:
    """The ONNX node `y = SparseInt8Linear(x)` and its three initializers (packed weights, mult, offset).
    `activation` "gelu" fuses a following GELU; `linears` > 1 says the op computes that many of the model's Linears
    (merged along the output axis), `splits` their rows when each has its own output (`y` then names them);
    `u8_output` (scale, zero point) quantizes the result as the next op's QuantizeLinear would; `transposed` (per
    output) writes that output [batch, rows, seq], each sequence's result transposed; `heads` (per output, H > 0)
    writes it [batch, H, seq, rows / H], split into attention heads; `input_heads` H > 0 reads x as [batch, H,
    seq, cols / H] (attention's context before its transpose and reshape to [batch, seq, cols]); `norm` adds the
    residual and applies the LayerNorm that follow the Linear (its gamma and beta become initializers too);
    `then` (with a norm) makes the op a chain: those Linears run after its own, in order, and the last one's
    result is the op's output.
    Attributes and inputs are written only when set: older files have none of them, and load as before."""
    from onnx import helper, numpy_helper

    from pruneofa.kernels.native import ACTIVATIONS

    outputs = [y] if isinstance(y, str) else list(y)
    if len(outputs) != max(1, len(splits)) or (splits and sum(splits) != w.rows):
        raise ValueError(f"{name}: {len(outputs)} outputs for splits {list(splits)} of {w.rows} rows")
    packed = np.frombuffer(w.to_bytes(), dtype=np.uint8)
    inits = [
        numpy_helper.from_array(packed, f"{name}.packed"),
        numpy_helper.from_array(np.asarray(mult, np.float32), f"{name}.mult"),
        numpy_helper.from_array(np.asarray(offset, np.float32), f"{name}.offset"),
    ]
    node = helper.make_node(
        OP_TYPE,
        [x, f"{name}.packed", f"{name}.mult", f"{name}.offset"],
        outputs,
        name=name,
        domain=DOMAIN,
        rows=w.rows,
        cols=w.cols,
        x_scale=float(x_scale),
        x_zero_point=int(x_zero_point),
    )
    if ACTIVATIONS[activation]:
        node.attribute.append(helper.make_attribute("activation", ACTIVATIONS[activation]))
    if linears > 1:
        node.attribute.append(helper.make_attribute("linears", linears))
    if splits:
        node.attribute.append(helper.make_attribute("splits", [int(s) for s in splits]))
    if any(transposed):
        node.attribute.append(helper.make_attribute("transposed", [int(bool(t)) for t in transposed]))
    if any(heads):
        node.attribute.append(helper.make_attribute("heads", [int(h) for h in heads]))
    if input_heads:
        node.attribute.append(helper.make_attribute("input_heads", int(input_heads)))
    if norm is not None:
        node.input.extend([norm.residual, f"{name}.gamma", f"{name}.beta"])
        inits.append(numpy_helper.from_array(np.asarray(norm.gamma, np.float32).reshape(-1), f"{name}.gamma"))
        inits.append(numpy_helper.from_array(np.asarray(norm.beta, np.float32).reshape(-1), f"{name}.beta"))
        node.attribute.append(helper.make_attribute("norm_epsilon", float(norm.epsilon)))
    if then:
        if norm is None or u8_output is not None or splits or any(transposed) or any(heads):
            raise ValueError(f"{name}: a chain starts with a residual norm and has one f32 output")
        _append_stages(node, inits, name, then)
    if u8_output is not None:
        node.attribute.append(helper.make_attribute("output_type", "u8"))
        node.attribute.append(helper.make_attribute("out_scale", float(u8_output[0])))
        node.attribute.append(helper.make_attribute("out_zero_point", int(u8_output[1])))
    return node, inits


def _append_stages(node: Any, inits: list[Any], name: str, then: Sequence[ChainStage]) -> None:
    """A chain's stages on `node`: their constants as inputs 7.. (packed, mult, offset, and gamma, beta with a
    norm), their settings as then_* attributes (one entry per stage)."""
    from onnx import helper, numpy_helper

    from pruneofa.kernels.native import ACTIVATIONS

    for k, stage in enumerate(then, start=1):
        arrays = [np.frombuffer(stage.weights.to_bytes(), np.uint8), stage.mult, stage.offset]
        arrays += [stage.norm[0], stage.norm[1]] if stage.norm is not None else []
        for part, array in zip(("packed", "mult", "offset", "gamma", "beta"), arrays, strict=False):
            tensor = f"{name}.then{k}.{part}"
            dtype = np.uint8 if part == "packed" else np.float32
            inits.append(numpy_helper.from_array(np.asarray(array, dtype).reshape(-1), tensor))
            node.input.append(tensor)
    attributes = {
        "then_rows": [s.weights.rows for s in then],
        "then_activation": [ACTIVATIONS[s.activation] for s in then],
        "then_x_scale": [float(s.x_scale) for s in then],
        "then_x_zero_point": [int(s.x_zero_point) for s in then],
        "then_norm_epsilon": [float(s.norm[2]) if s.norm is not None else 0.0 for s in then],
        "then_norm_residual": [int(s.norm[3]) if s.norm is not None else -1 for s in then],
        "then_u8_input": [int(s.u8_input) for s in then],
    }
    for key, values in attributes.items():
        node.attribute.append(helper.make_attribute(key, values))
