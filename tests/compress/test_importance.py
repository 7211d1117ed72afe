"""Taylor importance: running |w x grad|, per-layer or global shares with a floor, exact counts, and a ranking
that does not move when a layer is rescaled against the next one (as |w| does)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneofa.compress.importance import TaylorImportance
from pruneofa.core.errors import PruneofaError


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8, bias=False)
        self.b = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _trained_scores(model: Two, steps: int = 5) -> TaylorImportance:
    torch.manual_seed(0)
    imp = TaylorImportance(model, ["a.weight", "b.weight"], beta=0.5)
    for _ in range(steps):
        model.zero_grad()
        model(torch.randn(16, 8)).pow(2).mean().backward()
        imp.accumulate()
    return imp


def test_scores_are_the_running_mean_of_w_times_grad() -> None:
    torch.manual_seed(1)
    model = Two()
    imp = TaylorImportance(model, ["a.weight"], beta=0.5)
    model(torch.randn(4, 8)).sum().backward()
    first = (model.a.weight * model.a.weight.grad).abs()  # type: ignore[operator]
    imp.accumulate()
    assert torch.allclose(imp.scores["a.weight"], 0.5 * first)
    imp.accumulate()  # same gradient again: 0.5 * (0.5 first) + 0.5 first
    assert torch.allclose(imp.scores["a.weight"], 0.75 * first)


def test_layer_allocation_keeps_the_highest_scores_of_each_layer_exactly() -> None:
    torch.manual_seed(2)
    model = Two()
    imp = _trained_scores(model)
    scores = {k: v.clone() for k, v in imp.scores.items()}
    masks = imp.prune_(0.75, "layer")
    for name, mask in masks.items():
        assert int(mask.sum()) == 16  # 64 weights, 75% zero
        kept, dropped = scores[name][mask], scores[name][~mask]
        assert kept.min() >= dropped.max()
        assert torch.equal(model.get_parameter(name) != 0, mask)


def test_global_allocation_hits_the_overall_target_and_follows_the_scores() -> None:
    torch.manual_seed(3)
    model = Two()
    imp = _trained_scores(model)
    imp.scores["b.weight"].mul_(100.0)  # b matters far more to the loss: it should keep more
    masks = imp.prune_(0.75, "global")
    kept = {name: int(mask.sum()) for name, mask in masks.items()}
    assert sum(kept.values()) == 32  # 128 weights, 75% zero overall
    assert kept["b.weight"] > kept["a.weight"] >= 1  # the floor (2% of 64 -> 1) holds


def test_floor_keeps_every_layer_alive() -> None:
    torch.manual_seed(4)
    model = Two()
    imp = TaylorImportance(model, ["a.weight", "b.weight"], min_density=0.25)
    imp.scores["a.weight"].fill_(1e-9)
    imp.scores["b.weight"].fill_(1.0)
    imp.steps = 1
    kept = {name: int(mask.sum()) for name, mask in imp.prune_(0.5, "global").items()}
    assert kept == {"a.weight": 16, "b.weight": 48}  # a keeps its 25% floor, b the rest of the 64 kept


def test_ranking_is_unchanged_by_rescaling_a_layer_against_the_next() -> None:
    """a * 4 and b / 4 compute the same function (ReLU is positively homogeneous): |w x grad| ranks the same."""
    torch.manual_seed(5)
    model, scaled = Two(), Two()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled.a.weight.mul_(4.0)
        scaled.b.weight.div_(4.0)
    masks = _trained_scores(model).prune_(0.8, "global")
    masks_scaled = _trained_scores(scaled).prune_(0.8, "global")
    for name in masks:
        assert torch.equal(masks[name], masks_scaled[name]), name


def test_bad_settings_are_refused() -> None:
    imp = TaylorImportance(Two(), ["a.weight"])
    with pytest.raises(PruneofaError, match="sparsity must be in"):
        imp.prune_(1.0, "layer")
    with pytest.raises(PruneofaError, match="--allocation 'best'"):
        imp.prune_(0.5, "best")  # type: ignore[arg-type]
    with pytest.raises(PruneofaError, match="beta"):
        TaylorImportance(Two(), ["a.weight"], beta=1.0)


def test_blocks_are_ranked_by_their_summed_scores() -> None:
    """With a block shape the unit is a block: the kept blocks are those of the highest summed |w x grad|, and
    every block is all kept or all zero, at the exact count."""
    torch.manual_seed(5)
    model = Two()
    imp = TaylorImportance(model, ["a.weight", "b.weight"], beta=0.5, block=2, block_rows=4)
    for _ in range(3):
        model.zero_grad()
        model(torch.randn(16, 8)).pow(2).mean().backward()
        imp.accumulate()
    sums = {k: v.reshape(2, 4, 4, 2).transpose(1, 2).sum(dim=(-1, -2)).flatten() for k, v in imp.scores.items()}
    masks = imp.prune_(0.75, "layer")
    for name, mask in masks.items():
        blocks = mask.reshape(2, 4, 4, 2).transpose(1, 2).flatten(2)
        assert torch.all(blocks.all(dim=-1) | ~blocks.any(dim=-1))
        kept = blocks.all(dim=-1).flatten()
        assert int(kept.sum()) == 2  # 8 blocks, 75% zero
        assert sums[name][kept].min() >= sums[name][~kept].max()
    with pytest.raises(PruneofaError, match="--block 3"):
        TaylorImportance(model, ["a.weight"], block=3)
