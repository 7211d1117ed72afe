"""Pattern lock: the sparsity pattern of the pre-trained weights is frozen for the whole fine-tuning.

mask = (weight != 0), taken once from the loaded sparse model and re-applied after every optimizer step.
Masks are keyed by parameter name, not by module object, so they survive replacing the Linears by
quantization-aware subclasses (names do not change). This module knows no optimizer, data or rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pruneofa.core.errors import ModelError, PatternBrokenError, PruneofaError

# A Linear is prunable when its qualified module name has an encoder block ("encoder.layer.N",
# "transformer.layer.N", BERT/RoBERTa/DistilBERT spelling) or a "pooler" component, and no head component.
# Heads (classifier, pre_classifier, *_head) are freshly initialised for the task and are not part of the
# sparse pre-trained model, so Prune OFA leaves them dense.
_BLOCK_CONTAINERS = ("encoder", "transformer")
_BLOCK_LISTS = ("layer", "layers")
_HEAD_MARKERS = ("classifier", "head")


def _is_prunable_module(qualified_name: str) -> bool:
    parts = qualified_name.split(".")
    if any(marker in part for part in parts for marker in _HEAD_MARKERS):
        return False
    in_block = any(parts[i] in _BLOCK_CONTAINERS and parts[i + 1] in _BLOCK_LISTS for i in range(len(parts) - 1))
    return in_block or "pooler" in parts


def prunable_weight_names(model: nn.Module) -> list[str]:
    """Weight names of the encoder Linears (Q, K, V, attention output, intermediate, output) and pooler.

    Subclasses of nn.Linear (e.g. the QAT wrapper) count too, so the same names come back after QAT prep.
    """
    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _is_prunable_module(name)
    ]


def _param(model: nn.Module, name: str) -> nn.Parameter:
    try:
        return model.get_parameter(name)
    except AttributeError as exc:
        raise ModelError(f"model has no parameter {name!r}: masks were taken from a different model") from exc


def _check_shape(name: str, weight: torch.Tensor, mask: torch.Tensor) -> None:
    if weight.shape != mask.shape:
        raise ModelError(
            f"mask for {name!r} has shape {tuple(mask.shape)} but the weight has {tuple(weight.shape)}: "
            "masks were taken from a different model"
        )


def capture_masks(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Boolean masks (weight != 0) keyed by parameter name; bool keeps them at 1 byte per weight."""
    with torch.no_grad():
        return {name: _param(model, name).detach() != 0 for name in names}


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero every pruned weight in place (call after each optimizer step).

    Pass the unwrapped model (``ddp.module``), not the DDP wrapper: parameter names inside DDP gain a
    ``module.`` prefix and would not match the masks.
    """
    with torch.no_grad():
        for name, mask in masks.items():
            weight = _param(model, name)
            _check_shape(name, weight, mask)
            if mask.device != weight.device:
                mask = mask.to(weight.device)
            weight.mul_(mask)


def sparsity_report(model: nn.Module, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per layer: shape, number of exact zeros, number of weights and the zero fraction."""
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        weight = _param(model, name).detach()
        zeros = int((weight == 0).sum().item())
        numel = weight.numel()
        report[name] = {
            "shape": list(weight.shape),
            "zeros": zeros,
            "numel": numel,
            "sparsity": zeros / numel if numel else 0.0,
        }
    return report


def overall_sparsity(report: dict[str, dict[str, Any]]) -> float:
    """Zero fraction over all reported layers together (weighted by layer size)."""
    numel = sum(int(layer["numel"]) for layer in report.values())
    zeros = sum(int(layer["zeros"]) for layer in report.values())
    return zeros / numel if numel else 0.0


def check_pattern(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Raise PatternBrokenError if any pruned weight became non-zero (the lock was not enforced)."""
    with torch.no_grad():
        for name, mask in masks.items():
            weight = _param(model, name).detach()
            _check_shape(name, weight, mask)
            revived = int(((weight != 0) & ~mask.to(weight.device)).sum().item())
            if revived:
                raise PatternBrokenError(
                    f"sparsity pattern broken in {name!r}: {revived} pruned weights are non-zero "
                    "(re-apply the masks after every optimizer step)"
                )


def magnitude_prune_(model: nn.Module, sparsity: float, names: list[str], block: int = 1) -> dict[str, torch.Tensor]:
    """One-shot magnitude pruning: per layer the round(sparsity * count) smallest units become 0.

    block = 1: unstructured, a unit is one weight (|w|). block = N > 1: a unit is N consecutive input features of
    one output row (w[n, k:k+N], ranked by their L2 norm), so every N-wide group along K is all zero or all kept:
    what the sparse kernel's 4-wide groups (VNNI lanes) like. Returns the masks; ties are broken by position
    (a stable sort), so the count is exact.
    """
    if not 0.0 <= sparsity < 1.0:
        raise PruneofaError(f"sparsity must be in [0, 1), got {sparsity}: pass e.g. 0.9 for 90% zeros")
    if block < 1:
        raise PruneofaError(f"--block {block}: must be >= 1 (1 = unstructured, 4 = groups of 4 input features)")
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in names:
            weight = _param(model, name)
            if weight.shape[-1] % block:
                raise PruneofaError(
                    f"--block {block}: {name!r} has {weight.shape[-1]} input features, not a multiple of {block}; "
                    "use --block 1 or a block that divides every layer's input size"
                )
            units = weight.detach().reshape(-1, block).norm(dim=1)  # one score per block (|w| when block = 1)
            order = torch.argsort(units, stable=True)
            keep = torch.ones(units.numel(), dtype=torch.bool, device=weight.device)
            keep[order[: round(sparsity * units.numel())]] = False
            mask = keep.repeat_interleave(block).view_as(weight)
            weight.mul_(mask)
            masks[name] = mask
    return masks
