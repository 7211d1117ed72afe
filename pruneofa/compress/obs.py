"""Reconstruction-based one-shot pruning: Optimal Brain Surgeon in the SparseGPT form (Frantar & Alistarh 2023).

For one Linear with calibration inputs X (tokens x in), pruning W to a mask should keep X W^T close to what it
was. With H = X^T X, removing weight w_q of a row and updating the rest of that row by -w_q / [H^-1]_qq *
H^-1[:, q] is the least-squares optimal correction (OBS). SparseGPT makes that cheap: columns are processed left
to right in blocks; within a block the mask is chosen by the OBS saliency w^2 / [H^-1]_qq^2 and the error of
each pruned column is pushed onto the columns to its right, using the upper Cholesky factor of H^-1.

Layers are pruned in model order, and each one's H is collected from calibration text run through the model
with every earlier layer already pruned (so later layers correct for the earlier ones' errors). Q, K and V read
the same input and share one H. Padding tokens are left out of H.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from pruneofa.compress import sparsity
from pruneofa.compress.prune_once import Example, encode
from pruneofa.core.errors import PruneofaError

_SIBLINGS = ("query", "key", "value")  # one attention input, one Hessian
CALIBRATION_TEXTS = 256  # calibration texts a pruning run reads (H = X^T X per layer)


def prune_weight_(
    weight: torch.Tensor, hessian: torch.Tensor, target: float, block: int = 128, damp: float = 0.01
) -> torch.Tensor:
    """Prune `weight` [out, in] in place to round(target * numel) zeros given H = X^T X [in, in]; returns the
    keep-mask. Per block of columns the zero count is the running total's share, so the layer's count is exact."""
    rows, cols = weight.shape
    w = weight.detach().clone().float()
    h = hessian.detach().clone().float()
    dead = torch.diag(h) == 0  # inputs that never fire: their weights cannot matter, prune them first
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    total = rows * cols
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w1, hinv1 = w[:, start:end].clone(), hinv[start:end, start:end]
        saliency = w1**2 / torch.diag(hinv1).reshape(1, -1) ** 2
        count = round(target * end * rows) - round(target * start * rows)  # telescopes to round(target * total)
        order = torch.argsort(saliency.flatten(), stable=True)[:count]
        keep1 = torch.ones(w1.numel(), dtype=torch.bool)
        keep1[order] = False
        keep1 = keep1.view_as(w1)
        errors = torch.zeros_like(w1)
        for i in range(end - start):
            column = w1[:, i]
            pruned = torch.where(keep1[:, i], column, torch.zeros_like(column))
            error = (column - pruned) / hinv1[i, i]
            w1[:, i:] -= error.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            w1[:, i] = pruned
            errors[:, i] = error
        w[:, start:end] = w1
        w[:, end:] -= errors @ hinv[start:end, end:]
        keep[:, start:end] = keep1
    assert int((~keep).sum()) == round(target * total)
    with torch.no_grad():
        weight.copy_((w * keep).to(weight.dtype))
    return keep


def _groups(names: list[str]) -> list[list[str]]:
    """Weight names in model order, with each attention block's query/key/value in one group."""
    groups: list[list[str]] = []
    for name in names:
        module = name.removesuffix(".weight")
        parent, _, leaf = module.rpartition(".")
        last = groups[-1][-1].removesuffix(".weight").rpartition(".") if groups else ("", "", "")
        if leaf in _SIBLINGS and last[2] in _SIBLINGS and last[0] == parent:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def _module(model: nn.Module, weight_name: str) -> nn.Linear:
    module = model.get_submodule(weight_name.removesuffix(".weight"))
    assert isinstance(module, nn.Linear), weight_name
    return module


def _hessian(model: nn.Module, layer: nn.Linear, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """X^T X of `layer`'s inputs over the real (non-padding) tokens of every calibration batch."""
    h = torch.zeros(layer.in_features, layer.in_features)
    current: dict[str, torch.Tensor] = {}

    def accumulate(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().float()
        if x.dim() == 3:  # [batch, tokens, features]: keep the real tokens
            x = x[current["mask"].bool()]
        h.add_(x.reshape(-1, x.shape[-1]).T @ x.reshape(-1, x.shape[-1]))

    handle = layer.register_forward_pre_hook(accumulate)
    try:
        with torch.no_grad():
            for batch in batches:
                current["mask"] = batch["attention_mask"]
                model(**batch)
    finally:
        handle.remove()
    return h


def calibration_batches(
    tokenizer: Any, texts: Sequence[Example], batch_size: int, max_length: int
) -> Iterator[dict[str, Any]]:
    for start in range(0, len(texts), batch_size):
        yield encode(tokenizer, texts[start : start + batch_size], max_length)


def obs_prune_(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[Example],
    target: float,
    names: list[str] | None = None,
    batch_size: int = 16,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Prune every prunable Linear of `model` to `target` in place, in model order; returns the keep-masks."""
    if not 0.0 <= target < 1.0:
        raise PruneofaError(f"--sparsity {target}: must be in [0, 1), e.g. 0.9 for 90% zeros")
    if not texts:
        raise PruneofaError("--method obs needs calibration text: pass --text_file (one text per line)")
    names = names or sparsity.prunable_weight_names(model)
    batches = list(calibration_batches(tokenizer, texts, batch_size, max_length))
    was_training = model.training
    model.eval()
    masks: dict[str, torch.Tensor] = {}
    try:
        for group in _groups(names):
            h = _hessian(model, _module(model, group[0]), batches)
            for name in group:
                masks[name] = prune_weight_(_module(model, name).weight, h, target)
    finally:
        model.train(was_training)
    return masks
