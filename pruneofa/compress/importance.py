"""First-order (Taylor) importance for pruning while training: which weights the task loss needs, and how many
each layer keeps.

The score of a weight is a running mean of |w * dL/dw| over the training steps (the first-order estimate of the
loss change when it is set to 0), accumulated after each backward pass of the gradual schedule. Unlike |w|, it is
unchanged when a layer's weights are rescaled against the next one's (attention's query and key weights are ~2x
the magnitude of the value and output weights in a fine-tuned MiniLM, for no reason the loss cares about), so it
can rank weights of different layers against each other:

- allocation "layer": every layer keeps the same share (the schedule's sparsity per layer, as magnitude does);
- allocation "global": one ranking over all prunable weights picks how many each layer keeps, so the overall
  sparsity is the target while layers the loss leans on keep more; every layer keeps at least `min_density` of
  its weights (a layer pruned to nothing cuts the network).

Scores of weights already pruned are 0, so the pattern only ever grows (as the cubic schedule expects).

With a block shape (`block_rows` outputs x `block` inputs, sparsify --block_rows/--block) the unit ranked and
pruned is a block, scored by the sum of its weights' scores (first-order estimates add up), so the zeros come in
the shapes the sparse kernel skips while the taylor ranking still chooses them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from pruneofa.compress.sparsity import block_mask, block_scores, check_block
from pruneofa.core.errors import PruneofaError

Allocation = Literal["layer", "global"]
ALLOCATIONS: tuple[Allocation, ...] = ("layer", "global")


class TaylorImportance:
    """Running |w * grad| per prunable weight; `accumulate` after each backward, `prune_` at each event."""

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        beta: float = 0.85,
        min_density: float = 0.02,
        block: int = 1,
        block_rows: int = 1,
    ) -> None:
        if not 0.0 <= beta < 1.0:
            raise PruneofaError(f"importance beta {beta}: must be in [0, 1)")
        for name in names:
            check_block(model.get_parameter(name).shape, name, block, block_rows)
        self.model, self.names, self.beta, self.min_density = model, names, beta, min_density
        self.block, self.block_rows = block, block_rows
        self.scores = {name: torch.zeros_like(model.get_parameter(name), dtype=torch.float32) for name in names}
        self.steps = 0

    @torch.no_grad()
    def accumulate(self) -> None:
        """Fold this step's |w * grad| into the running scores (weights without a gradient are left as they are)."""
        for name in self.names:
            weight = self.model.get_parameter(name)
            if weight.grad is None:
                continue
            self.scores[name].mul_(self.beta).add_((weight * weight.grad).abs().float(), alpha=1.0 - self.beta)
        self.steps += 1

    def _ranked(self, name: str) -> torch.Tensor:
        """One score per unit (a weight, or a block), flat: the running scores, or |w| before any step (so a cut
        before training still ranks by something)."""
        scores = self.scores[name] if self.steps else self.model.get_parameter(name).detach().abs().float()
        return block_scores(scores, self.block, self.block_rows)

    @torch.no_grad()
    def prune_(self, sparsity: float, allocation: Allocation) -> dict[str, torch.Tensor]:
        """Zero the lowest-scored weights so that `sparsity` of all prunable weights are 0 (per layer, or over
        all of them for "global"); returns the masks. Exact counts: ties break by position."""
        if not 0.0 <= sparsity < 1.0:
            raise PruneofaError(f"sparsity must be in [0, 1), got {sparsity}: pass e.g. 0.9 for 90% zeros")
        if allocation not in ALLOCATIONS:
            raise PruneofaError(f"--allocation {allocation!r}: unknown; use layer or global")
        # One descending sort per layer serves both the shares and the masks (ties break by position).
        orders = {name: torch.argsort(self._ranked(name), descending=True, stable=True) for name in self.names}
        keep_counts = self._keep_counts(sparsity, allocation, orders)
        masks: dict[str, torch.Tensor] = {}
        for name in self.names:
            weight = self.model.get_parameter(name)
            keep = torch.zeros(orders[name].numel(), dtype=torch.bool, device=weight.device)
            keep[orders[name][: keep_counts[name]]] = True
            mask = block_mask(keep, weight.shape, self.block, self.block_rows)
            weight.mul_(mask)
            masks[name] = mask
        return masks

    def _keep_counts(self, sparsity: float, allocation: Allocation, orders: dict[str, torch.Tensor]) -> dict[str, int]:
        sizes = {name: order.numel() for name, order in orders.items()}
        per_layer = {name: size - round(sparsity * size) for name, size in sizes.items()}
        total_keep = sum(sizes.values()) - round(sparsity * sum(sizes.values()))
        floors = {name: min(size, max(1, round(self.min_density * size))) for name, size in sizes.items()}
        if allocation == "layer" or sum(floors.values()) >= total_keep:  # the floors would take everything
            return per_layer
        # Each layer's best `floor` weights are kept outright; the rest of the budget goes to the best of the others.
        rest = [self._ranked(name)[orders[name][floors[name] :]] for name in self.names]
        chosen = torch.zeros(sum(part.numel() for part in rest), dtype=torch.bool)
        chosen[torch.argsort(torch.cat(rest), descending=True, stable=True)[: total_keep - sum(floors.values())]] = True
        counts = {
            name: floors[name] + int(part.sum())
            for name, part in zip(self.names, chosen.split([r.numel() for r in rest]), strict=True)
        }
        return counts
