"""Intermediate-layer distillation: the student also copies its teacher's hidden states and attention maps.

Logit distillation tells the sparse student *what* the teacher answers; matching every layer's hidden states
(TinyBERT) and attention distributions (MiniLM) also tells it *how*, layer by layer, which helps a student whose
weights are mostly zeros keep its teacher's accuracy. It needs a teacher of the same shape (same number of layers,
hidden size and, for attention maps, heads) and the teacher running live on every batch: a cache of its logits
is not enough. No loop here: `live_distillation_loss` is the whole per-batch computation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneofa.compress.distillation import DistillConfig, distillation_loss
from pruneofa.compress.prune_once import hidden_state_loss
from pruneofa.core.errors import ModelError, PruneofaError

# Attention probabilities of masked keys are exactly 0; the log needs a floor (their terms are masked out anyway).
_LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class LayerDistillConfig:
    """Extra loss = hidden_weight * hidden-state MSE + attention_weight * attention KL, added to the logit loss."""

    hidden_weight: float = 0.0
    attention_weight: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("hidden_weight", self.hidden_weight), ("attention_weight", self.attention_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise PruneofaError(f"{name} {value:g}: must be a number >= 0 (0 turns it off), e.g. 1")

    @property
    def active(self) -> bool:
        """Whether the teacher must run live on every batch."""
        return self.hidden_weight > 0 or self.attention_weight > 0


def attention_loss(
    student_maps: tuple[torch.Tensor, ...], teacher_maps: tuple[torch.Tensor, ...], attention_mask: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || student) of the attention distributions (MiniLM), per layer, head and real query token.

    Each map is [batch, heads, queries, keys] of probabilities. Padding queries are left out; padding keys get 0
    probability from both models, so they add nothing. Mean over layers, heads and real query tokens."""
    queries = attention_mask.to(torch.float32)[:, None, :]  # [batch, 1, queries]
    losses = []
    for s, t in zip(student_maps, teacher_maps, strict=True):
        s, t = s.float(), t.detach().float()
        kl_rows = (torch.xlogy(t, t) - t * s.clamp_min(_LOG_FLOOR).log()).sum(dim=-1)  # [batch, heads, queries]
        losses.append((kl_rows * queries).sum() / (queries.sum() * s.shape[1]))
    return torch.stack(losses).mean()


def layer_distillation_loss(
    student_out: Any, teacher_out: Any, attention_mask: torch.Tensor, cfg: LayerDistillConfig
) -> torch.Tensor:
    """The weighted hidden-state and attention terms for one batch (outputs of HF models run with
    output_hidden_states / output_attentions)."""
    loss = torch.zeros((), device=attention_mask.device)
    if cfg.hidden_weight > 0:
        loss = loss + cfg.hidden_weight * hidden_state_loss(
            student_out.hidden_states, teacher_out.hidden_states, attention_mask
        )
    if cfg.attention_weight > 0:
        if not student_out.attentions or not teacher_out.attentions:
            raise PruneofaError(
                "attention distillation: the model returned no attention maps (its attention implementation does "
                "not output them); load both models with the eager implementation (`use_eager_attention_`)"
            )
        loss = loss + cfg.attention_weight * attention_loss(
            student_out.attentions, teacher_out.attentions, attention_mask
        )
    return loss


def live_distillation_loss(
    student: nn.Module,
    teacher: nn.Module,
    features: Mapping[str, torch.Tensor],
    labels: torch.Tensor | None,
    kd: DistillConfig,
    layers: LayerDistillConfig,
    is_regression: bool,
) -> torch.Tensor:
    """The logit loss (the seed's --loss_types/--loss_weights, on the teacher's live logits) plus the layer terms.

    The teacher stays frozen and in eval mode (no dropout, no graph); under DDP each rank runs it on its own batch.
    With QAT the student's forward is fake-quantized, the teacher's stays float."""
    wanted = {"output_hidden_states": layers.hidden_weight > 0, "output_attentions": layers.attention_weight > 0}
    with torch.no_grad():
        target = teacher(**features, **wanted)
    output = student(**features, **wanted)
    mask = features.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(features["input_ids"])
    loss = distillation_loss(output.logits, target.logits, labels, kd, is_regression)
    return loss + layer_distillation_loss(output, target, mask, layers)


def model_shape(model: nn.Module) -> dict[str, int | None]:
    config = getattr(model, "config", None)
    names = ("num_hidden_layers", "hidden_size", "num_attention_heads")
    return {name: getattr(config, name, None) for name in names}


def _describe(shape: dict[str, int | None], heads: bool) -> str:
    text = f"{shape['num_hidden_layers']} layers x hidden {shape['hidden_size']}"
    return text + (f" x {shape['num_attention_heads']} heads" if heads else "")


def check_same_shape(student: nn.Module, teacher: nn.Module, cfg: LayerDistillConfig, teacher_name: str) -> None:
    """Layer-by-layer distillation pairs student layer i with teacher layer i: the shapes must agree."""
    s, t = model_shape(student), model_shape(teacher)
    keys = ["num_hidden_layers", "hidden_size"] + (["num_attention_heads"] if cfg.attention_weight > 0 else [])
    if any(s[k] is None or s[k] != t[k] for k in keys):
        heads = cfg.attention_weight > 0
        raise ModelError(
            f"teacher {teacher_name!r}: is {_describe(t, heads)}, the student is {_describe(s, heads)}; "
            "--hidden_distill_weight/--attention_distill_weight need a teacher of the student's shape (fine-tune "
            "the student's own dense model as the teacher), or set both to 0 for logit distillation only"
        )


def use_eager_attention_(model: nn.Module) -> None:
    """Switch a HF model to the eager attention implementation: the only one that returns attention maps
    (sdpa, the default, returns none with output_attentions=True). Slower, so only for attention distillation."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise ModelError(
            f"{type(model).__name__}: cannot switch to eager attention to return attention maps; "
            "use --attention_distill_weight 0"
        )
    setter("eager")
