"""int8 quantization-aware training: a fake-quantizing nn.Linear placed by hand on every Linear.

Weights: int8, symmetric, zero-point 0 (a pruned weight stays exactly 0), per output channel by default.
Activations (the Linear inputs): uint8 per-tensor affine from moving-average min/max, full 0..255 range.
Matmuls between activations, softmax, GELU, LayerNorm and embeddings stay float.
No saving or export here; the eval-mode forward is plain tensor ops, so it traces to ONNX Q/DQ pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneofa.core.errors import ModelError

ACT_QMIN, ACT_QMAX = 0, 255
# Weights use the restricted range [-127, 127] so that the symmetric scale is max|w| / 127 and -128 is
# never produced. The fake-quant op is still called with [-128, 127]: with that scale the result is
# identical, and the ONNX exporter only accepts (-128, 127) / (0, 255) ranges.
WEIGHT_QMAX = 127
_OP_WEIGHT_QMIN, _OP_WEIGHT_QMAX = -128, 127
_EPS = torch.finfo(torch.float32).eps
OBSERVER_BUFFERS = ("act_min", "act_max")


@dataclass(frozen=True)
class QuantConfig:
    """int8 QAT settings.

    reduce_range (7-bit activations) does not exist here on purpose: INC turns it on only on CPUs
    without VNNI, which makes the trained model depend on the machine it was trained on.
    """

    weight_per_channel: bool = True
    averaging_constant: float = 0.01
    activation_dtype: str = "uint8"

    def __post_init__(self) -> None:
        if not 0.0 < self.averaging_constant <= 1.0:
            raise ModelError(f"averaging_constant must be in (0, 1], got {self.averaging_constant}: e.g. 0.01")
        if self.activation_dtype != "uint8":
            raise ModelError(
                f"activation_dtype must be 'uint8' (the only one supported), got {self.activation_dtype!r}"
            )
        if not isinstance(self.weight_per_channel, bool):
            raise ModelError(f"weight_per_channel must be True or False, got {self.weight_per_channel!r}")


def weight_scale(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 scale max|w| / 127, per output row ([out]) or per tensor ([1])."""
    w = weight.detach().abs()
    amax = w.amax(dim=1) if per_channel else w.amax().reshape(1)
    # An all-zero row (fully pruned neuron) would give scale 0 and 0/0; any positive scale maps it to 0.
    return (amax / WEIGHT_QMAX).clamp(min=_EPS).float()


def activation_qparams(act_min: torch.Tensor, act_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 affine (scale, zero_point) from a min/max range widened to include 0 (so 0 is exact)."""
    lo = torch.clamp(act_min, max=0.0)
    hi = torch.clamp(act_max, min=0.0)
    scale = ((hi - lo) / (ACT_QMAX - ACT_QMIN)).clamp(min=_EPS).float()
    zero_point = torch.clamp(ACT_QMIN - torch.round(lo / scale), ACT_QMIN, ACT_QMAX).to(torch.int32)
    return scale.reshape(1), zero_point.reshape(1)


def _exporting() -> bool:
    # The calibration check reads a tensor value on the host, which tracing and torch.export cannot follow.
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class QATLinear(nn.Linear):
    """nn.Linear with fake-quantized input and weight; parameter names stay `weight` and `bias`.

    Observers (moving-average min/max of the input) update in training mode while `observer_enabled`,
    and are frozen in eval mode. Their state lives in the persistent buffers `act_min` / `act_max`.
    """

    act_min: torch.Tensor
    act_max: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        cfg: QuantConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.cfg = cfg or QuantConfig()
        self.observer_enabled = True
        # +inf / -inf mean "no batch seen yet": the first observed batch sets the range outright.
        self.register_buffer("act_min", torch.full((), float("inf"), device=device))
        self.register_buffer("act_max", torch.full((), float("-inf"), device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: QuantConfig) -> QATLinear:
        """Wrap an existing Linear, sharing its Parameter objects (an optimizer made later sees them)."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            cfg=cfg,
            device="meta",
        )
        layer.weight = linear.weight
        layer.bias = linear.bias
        device = linear.weight.device
        layer.act_min = torch.full((), float("inf"), device=device)
        layer.act_max = torch.full((), float("-inf"), device=device)
        layer.train(linear.training)
        return layer

    def extra_repr(self) -> str:
        per = "per-channel" if self.cfg.weight_per_channel else "per-tensor"
        return f"{super().extra_repr()}, weight=int8 {per}, act=uint8"

    @property
    def calibrated(self) -> bool:
        """True once the input observer has seen at least one batch."""
        return bool(torch.isfinite(self.act_min).item())

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        batch_min = x.detach().amin().float()
        batch_max = x.detach().amax().float()
        c = self.cfg.averaging_constant
        # torch.where instead of an `if`: no host sync per layer per step on GPU.
        fresh = torch.isinf(self.act_min)
        self.act_min.copy_(torch.where(fresh, batch_min, self.act_min + c * (batch_min - self.act_min)))
        self.act_max.copy_(torch.where(fresh, batch_max, self.act_max + c * (batch_max - self.act_max)))

    def quantized_weight(self) -> torch.Tensor:
        """The weight after int8 fake quantization (gradients pass straight through)."""
        scale = weight_scale(self.weight, self.cfg.weight_per_channel)
        if self.cfg.weight_per_channel:
            zeros = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(
                self.weight, scale, zeros, 0, _OP_WEIGHT_QMIN, _OP_WEIGHT_QMAX
            )
        zero = torch.zeros(1, dtype=torch.int32, device=scale.device)
        return torch.fake_quantize_per_tensor_affine(self.weight, scale, zero, _OP_WEIGHT_QMIN, _OP_WEIGHT_QMAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observer_enabled:
            self._observe(x)
        elif not self.training and not _exporting() and not self.calibrated:
            raise ModelError("QAT layer evaluated before it saw any training batch: train or calibrate it first")
        scale, zero_point = activation_qparams(self.act_min, self.act_max)
        x_q = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)
        # matmul + add rather than F.linear: on 2-D inputs (pooler, classifier) F.linear exports as Gemm,
        # which onnxruntime leaves in float; MatMul with Q/DQ inputs becomes an int8 MatMulIntegerToFloat.
        out = torch.matmul(x_q, self.quantized_weight().t())
        return out if self.bias is None else out + self.bias


def _qat_layers(model: nn.Module) -> list[tuple[str, QATLinear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QATLinear)]


def is_quantized(model: nn.Module) -> bool:
    """True when the model's Linears carry fake quantization (prepare_qat_ ran)."""
    return bool(_qat_layers(model))


def prepare_qat_(model: nn.Module, cfg: QuantConfig) -> list[str]:
    """Replace every nn.Linear (encoder, pooler, classifier) by a QATLinear in place; return their names.

    Parameters are shared, not copied, so masks keyed by parameter name and optimizers created afterwards
    keep working. Calling it on an already prepared model is an error (it would double-quantize nothing,
    but signals a pipeline mix-up such as resuming a stage-2 checkpoint into stage 2 prep).
    """
    if is_quantized(model):
        raise ModelError("model is already prepared for QAT: prepare_qat_ must run once, on the float model")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if not targets:
        raise ModelError("model has no nn.Linear layers to quantize")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QATLinear.from_linear(linear, cfg))
    return [name for name, _ in targets]


def set_observers_(model: nn.Module, enabled: bool) -> None:
    """Freeze (False) or unfreeze (True) every activation observer, e.g. for the last QAT epoch."""
    for _, layer in _qat_layers(model):
        layer.observer_enabled = enabled


def quant_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The observer buffers only, keyed by full buffer name (e.g. `classifier.act_min`)."""
    return {
        f"{name}.{buf}": getattr(layer, buf).detach().clone()
        for name, layer in _qat_layers(model)
        for buf in OBSERVER_BUFFERS
    }


def load_quant_state_(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load observer buffers saved by quant_state; the key sets must match exactly."""
    expected = quant_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ModelError(f"quant state lacks {missing[0]!r} ({len(missing)} missing): saved from another model?")
    if unexpected:
        raise ModelError(f"quant state has unknown key {unexpected[0]!r}: saved from another model?")
    with torch.no_grad():
        for key, value in state.items():
            buffer = model.get_buffer(key)
            if buffer.shape != value.shape:
                raise ModelError(f"quant state {key!r} has shape {tuple(value.shape)}, expected {tuple(buffer.shape)}")
            buffer.copy_(value)


def quant_params(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per layer: weight scale range and activation scale / zero point, for the JSON report."""
    report: dict[str, dict[str, Any]] = {}
    for name, layer in _qat_layers(model):
        w_scale = weight_scale(layer.weight, layer.cfg.weight_per_channel)
        entry: dict[str, Any] = {
            "weight_per_channel": layer.cfg.weight_per_channel,
            "weight_scale_min": float(w_scale.min()),
            "weight_scale_max": float(w_scale.max()),
            "calibrated": layer.calibrated,
        }
        if layer.calibrated:
            a_scale, a_zero = activation_qparams(layer.act_min, layer.act_max)
            entry.update(
                act_min=float(layer.act_min),
                act_max=float(layer.act_max),
                act_scale=float(a_scale),
                act_zero_point=int(a_zero),
            )
        report[name] = entry
    return report


def int8_weight(layer: QATLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight [out, in], float scale [out] or [1]): what an exporter stores; w ~= q * scale."""
    per_channel = layer.cfg.weight_per_channel
    scale = weight_scale(layer.weight, per_channel)
    column = scale.unsqueeze(1) if per_channel else scale
    q = torch.round(layer.weight.detach().float() / column).clamp(-WEIGHT_QMAX, WEIGHT_QMAX)
    return q.to(torch.int8), scale
