"""torch classifier -> one self-contained ONNX file: QDQ int8 (from a QAT model) or fp32, dynamic batch and length.

Every Linear is swapped for `ExportLinear` before tracing: `x @ weight_t + bias` with the weight stored transposed
([in, out]) under the layer's own name, so the ONNX initializers can be matched back to torch layers and each
MatMul reads its weight directly (no Transpose between DequantizeLinear and MatMul for a runtime to see through).
For int8 the layer carries the trained QAT parameters as constants; the exporter writes QuantizeLinear(float
weight) -> DequantizeLinear, and `fold_weight_quantizers` replaces each weight QuantizeLinear by its int8 result,
so the file stores int8 weights (zero-point 0: a pruned weight is exactly 0) and is ~4x smaller.

The TorchScript exporter is used (dynamo=False): the dynamo exporter cannot trace the fake-quant ops.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pruneofa.compress.quantization import ACT_QMAX, ACT_QMIN, QATLinear, activation_qparams, int8_weight
from pruneofa.core.errors import ModelError

Precision = Literal["int8", "fp32"]
OPSET = 17
OUTPUT_NAME = "logits"
WEIGHT_SUFFIX = ".weight_t"  # initializer name of a Linear's [in, out] float weight
INT8_SUFFIX = ".weight_t_int8"  # ... and of its folded int8 copy
_WRAPPER_PREFIX = "model."  # initializer names start with _LogitsOnly's attribute name


class ExportLinear(nn.Module):
    """A Linear as the exported graph computes it; int8 when given a trained QATLinear."""

    w_scale: torch.Tensor
    w_zero: torch.Tensor

    def __init__(self, linear: nn.Linear, quantize: bool) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.quantize = quantize
        if quantize:
            assert isinstance(linear, QATLinear)
            if not linear.calibrated:
                raise ModelError("a QAT layer was never calibrated (its observers saw no batch): re-run stage 2")
            a_scale, a_zero = activation_qparams(linear.act_min, linear.act_max)
            # Python numbers, so the exporter writes them as constants, not as graph inputs.
            self.act_scale, self.act_zero = float(a_scale), int(a_zero)
            _, w_scale = int8_weight(linear)
            self.per_channel = linear.cfg.weight_per_channel
            self.register_buffer("w_scale", w_scale)
            self.register_buffer("w_zero", torch.zeros_like(w_scale, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w: torch.Tensor = self.weight_t
        if self.quantize:
            x = torch.fake_quantize_per_tensor_affine(x, self.act_scale, self.act_zero, ACT_QMIN, ACT_QMAX)
            if self.per_channel:  # one scale per output feature: axis 1 of the [in, out] weight
                w = torch.fake_quantize_per_channel_affine(w, self.w_scale, self.w_zero, 1, -128, 127)
            else:
                w = torch.fake_quantize_per_tensor_affine(w, float(self.w_scale), 0, -128, 127)
        out = torch.matmul(x, w)
        return out if self.bias is None else out + self.bias


class _LogitsOnly(nn.Module):
    """Named inputs in a fixed order, one output: the logits tensor (what optimum-style loaders expect)."""

    def __init__(self, model: nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(**dict(zip(self.input_names, inputs, strict=True))).logits
        return logits


def swap_linears_(model: nn.Module, precision: Precision) -> list[str]:
    """Replace every Linear by an ExportLinear in place; return the layer names, in model order."""
    quantize = precision == "int8"
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in names:
        linear = model.get_submodule(name)
        assert isinstance(linear, nn.Linear)
        if quantize and not isinstance(linear, QATLinear):
            raise ModelError(f"layer {name!r} is not quantization-aware: int8 export needs a stage-2 (QAT) model")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, ExportLinear(linear, quantize))
    return names


def export_onnx(model: nn.Module, path: Path, precision: Precision, input_names: list[str]) -> list[str]:
    """Write `model` (left unchanged) to `path`; return the names of the exported Linear layers."""
    import copy

    clone = copy.deepcopy(model).eval()
    layers = swap_linears_(clone, precision)
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in input_names)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in input_names}
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer warnings about HF's Python-side shape checks are expected: shapes are symbolic in the graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(clone, input_names),
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
        )
    if precision == "int8":
        fold_file(path)
    return layers


def fold_file(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path))
    folded = fold_weight_quantizers(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return folded


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)  # ONNX QuantizeLinear and torch's fake-quant both round half to even


def fold_weight_quantizers(proto: Any) -> int:
    """Replace QuantizeLinear(float initializer) by its int8 result feeding DequantizeLinear; return the count."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {init.name: init for init in graph.initializer}
    # The exporter de-duplicates equal initializers (all the zero points) into Identity nodes: look through them.
    aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def initializer(name: str) -> Any:
        while name in aliases:
            name = aliases[name]
        return inits.get(name)

    folded = 0
    for node in list(graph.node):
        sources = [initializer(name) for name in node.input[:3]]
        if node.op_type != "QuantizeLinear" or len(sources) != 3 or any(s is None for s in sources):
            continue
        weight, scale, zero = (numpy_helper.to_array(s) for s in sources)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1:  # per-axis parameters broadcast along `axis`
            shape = [1] * weight.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        info = np.iinfo(zero.dtype)
        q = np.clip(_round_half_even(weight / scale) + zero.astype(np.int32), info.min, info.max).astype(zero.dtype)
        name = node.input[0].removesuffix(WEIGHT_SUFFIX) + INT8_SUFFIX
        graph.initializer.append(numpy_helper.from_array(q, name))
        for consumer in graph.node:
            for i, inp in enumerate(consumer.input):
                if inp == node.output[0]:
                    consumer.input[i] = name
        graph.node.remove(node)
        folded += 1
    _drop_unused(graph)
    return folded


def _drop_unused(graph: Any) -> None:
    """Remove the float weights (now unused) and Identity nodes left without consumers."""
    while True:
        used = {inp for node in graph.node for inp in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in used]
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)


def onnx_weights(path: Path) -> dict[str, dict[str, Any]]:
    """Per torch weight name (e.g. `bert.pooler.dense.weight`): dtype, shape [out, in], zeros and sparsity, read
    from the file's initializers."""
    import onnx
    from onnx import numpy_helper

    report: dict[str, dict[str, Any]] = {}
    for init in onnx.load(str(path)).graph.initializer:
        for suffix in (INT8_SUFFIX, WEIGHT_SUFFIX):
            if init.name.endswith(suffix):
                array = numpy_helper.to_array(init)
                zeros = int(np.count_nonzero(array == 0))
                report[init.name.removeprefix(_WRAPPER_PREFIX).removesuffix(suffix) + ".weight"] = {
                    "dtype": str(array.dtype),
                    "shape": [int(array.shape[1]), int(array.shape[0])],
                    "zeros": zeros,
                    "numel": int(array.size),
                    "sparsity": zeros / array.size if array.size else 0.0,
                }
                break
    return report


def qdq_counts(path: Path) -> dict[str, int]:
    """QuantizeLinear / DequantizeLinear nodes and int8 weight initializers in the file."""
    import onnx

    graph = onnx.load(str(path)).graph
    return {
        "QuantizeLinear": sum(n.op_type == "QuantizeLinear" for n in graph.node),
        "DequantizeLinear": sum(n.op_type == "DequantizeLinear" for n in graph.node),
        "int8_weights": sum(i.name.endswith(INT8_SUFFIX) for i in graph.initializer),
    }
