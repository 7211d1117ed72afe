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


def check_block_shape(block: int, block_rows: int) -> None:
    """A pruning block is `block_rows` outputs x `block` inputs, both at least 1."""
    if block < 1 or block_rows < 1:
        raise PruneofaError(
            f"--block {block} --block_rows {block_rows}: both must be >= 1 (1 = unstructured; --block 4 = groups of "
            "4 inputs; --block_rows 16 --block 4 = the AMX kernel's 16-output blocks)"
        )


def check_block(weight_shape: tuple[int, ...] | torch.Size, name: str, block: int, block_rows: int) -> None:
    """A block of `block_rows` outputs x `block` inputs must tile the layer: say which option does not."""
    check_block_shape(block, block_rows)
    for flag, size, what in (("--block", block, weight_shape[-1]), ("--block_rows", block_rows, weight_shape[0])):
        if what % size:
            kind = "input" if flag == "--block" else "output"
            raise PruneofaError(
                f"{flag} {size}: {name!r} has {what} {kind} features, not a multiple of {size}; use {flag} 1 or a "
                f"block that divides every layer's {kind} size"
            )


def block_scores(scores: torch.Tensor, block: int, block_rows: int, pool: str = "sum") -> torch.Tensor:
    """One score per block of `block_rows` outputs x `block` inputs of a [N, K] tensor, blocks in row-major order:
    the sum of the scores in it ("sum": additive scores such as taylor's) or their L2 norm ("norm": magnitudes)."""
    rows, cols = scores.shape
    units = scores.reshape(rows // block_rows, block_rows, cols // block, block).transpose(1, 2)
    units = units.reshape(rows // block_rows, cols // block, block_rows * block)
    return (units.norm(dim=-1) if pool == "norm" else units.sum(dim=-1)).flatten()


def block_mask(keep: torch.Tensor, shape: torch.Size, block: int, block_rows: int) -> torch.Tensor:
    """block_scores' order back to a [N, K] boolean mask: each block all kept or all zero."""
    grid = keep.view(shape[0] // block_rows, shape[1] // block)
    return grid.repeat_interleave(block_rows, dim=0).repeat_interleave(block, dim=1)


def magnitude_prune_(
    model: nn.Module, sparsity: float, names: list[str], block: int = 1, block_rows: int = 1
) -> dict[str, torch.Tensor]:
    """One-shot magnitude pruning: per layer the round(sparsity * count) smallest units become 0.

    block = block_rows = 1: unstructured, a unit is one weight (|w|). Otherwise a unit is a block of `block_rows`
    outputs x `block` consecutive inputs (w[n:n+block_rows, k:k+block], ranked by its L2 norm), all zero or all
    kept: 1 x 4 is what the sparse kernel's 4-wide groups (VNNI lanes) like, 16 x 4 what its AMX tiles like.
    Returns the masks; ties are broken by position (a stable sort), so the count is exact.
    """
    if not 0.0 <= sparsity < 1.0:
        raise PruneofaError(f"sparsity must be in [0, 1), got {sparsity}: pass e.g. 0.9 for 90% zeros")
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in names:
            weight = _param(model, name)
            check_block(weight.shape, name, block, block_rows)
            units = block_scores(weight.detach(), block, block_rows, pool="norm")
            order = torch.argsort(units, stable=True)
            keep = torch.ones(units.numel(), dtype=torch.bool, device=weight.device)
            keep[order[: round(sparsity * units.numel())]] = False
            mask = block_mask(keep, weight.shape, block, block_rows)
            weight.mul_(mask)
            masks[name] = mask
    return masks
