"""The prune-once step: gradual magnitude pruning of a dense pre-trained encoder, distilled from itself.

Task-agnostic, as in the paper's upstream stage: the student starts as a copy of the dense model and is pruned on
a cubic schedule (Zhu & Gupta 2017) while it learns to reproduce the frozen dense model's hidden states on
unlabeled text. Hidden-state distillation needs no language-model head, so any encoder works.

  sparsity(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_end - t_0))^3   for t_0 <= t <= t_end

Between pruning events the masks are re-applied after every optimizer step (the same pattern lock as training),
and the last stretch of steps trains at the final sparsity so the student recovers from the last cut.

The loop (`prune_on_schedule`) takes the loss and the pruner as functions: `gradual_prune` here (hidden states of
the dense pre-trained model, magnitude), and the task-aware method in task_prune.py (the fine-tuned teacher's
logits + hidden states, magnitude or OBS) share it.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pruneofa.compress import sparsity
from pruneofa.core.errors import PruneofaError


@dataclass(frozen=True)
class GradualConfig:
    target: float = 0.9
    initial: float = 0.0
    steps: int = 600
    prune_start_fraction: float = 0.1  # warm up distillation before the first cut
    prune_end_fraction: float = 0.7  # the rest trains at the final sparsity
    prune_every: int = 20
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_seq_length: int = 128
    seed: int = 0
    # True: the learning rate decays linearly to 0 over the stretch after the last cut. Off by default: on the
    # demo recipe (450 steps with decay vs 300 without) it did not raise the task student's held-out agreement
    # with its teacher (0.846 vs 0.857), see NOTES.md
    decay_after_pruning: bool = False
    block: int = 1  # pruning units: 1 = single weights, N = N consecutive input features (sparsity.magnitude_prune_)
    block_rows: int = 1  # ... of that many consecutive outputs (16 x 4: the AMX kernel's blocks)

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial <= self.target < 1.0:
            raise PruneofaError(f"--sparsity {self.target}: must be in [0, 1), e.g. 0.9 for 90% zeros")
        sparsity.check_block_shape(self.block, self.block_rows)
        if self.steps < 1 or self.prune_every < 1 or self.batch_size < 1:
            raise PruneofaError("--steps, --prune_every and --batch_size must be at least 1")
        if not 0.0 <= self.prune_start_fraction < self.prune_end_fraction <= 1.0:
            raise PruneofaError("the pruning window must satisfy 0 <= start < end <= 1 (fractions of --steps)")

    @property
    def window(self) -> tuple[int, int]:
        return round(self.steps * self.prune_start_fraction), round(self.steps * self.prune_end_fraction)


def cubic_sparsity(step: int, cfg: GradualConfig) -> float:
    """The scheduled sparsity at `step` (cubic from `initial` to `target` over the pruning window)."""
    start, end = cfg.window
    if step < start:
        return cfg.initial
    if step >= end or end == start:
        return cfg.target
    progress = (step - start) / (end - start)
    return cfg.target + (cfg.initial - cfg.target) * (1.0 - progress) ** 3


def hidden_state_loss(
    student_states: tuple[torch.Tensor, ...], teacher_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over every layer's hidden states, real tokens only (padding carries no signal)."""
    keep = attention_mask.unsqueeze(-1).to(student_states[0].dtype)
    tokens = keep.sum() * student_states[0].shape[-1]
    losses = [(((s - t) * keep) ** 2).sum() / tokens for s, t in zip(student_states, teacher_states, strict=True)]
    return torch.stack(losses).mean()


Example = str | tuple[str, ...]  # one text, or a sentence pair (tokenized as a pair)
LossFn = Callable[[dict[str, Any]], dict[str, torch.Tensor]]  # batch -> {"loss": what is minimized, parts to log}
PruneFn = Callable[[float], dict[str, torch.Tensor]]  # prune the student in place to this sparsity -> keep-masks


def encode(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_seq_length: int) -> dict[str, Any]:
    """Token ids of texts or of sentence pairs, padded to the longest, truncated to `max_seq_length`."""
    if examples and isinstance(examples[0], tuple):
        columns = [list(side) for side in zip(*examples, strict=True)]  # one list per side: (texts,) or (a, b)
    else:
        columns = [[str(text) for text in examples]]
    return dict(tokenizer(*columns, truncation=True, max_length=max_seq_length, padding=True, return_tensors="pt"))


def text_batches(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, cfg: GradualConfig
) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches of tokenized text (reshuffled each pass, seeded)."""
    rng = random.Random(cfg.seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            yield encode(tokenizer, [examples[j] for j in order[i : i + cfg.batch_size]], cfg.max_seq_length)


def prune_on_schedule(
    student: nn.Module,
    batches: Iterator[dict[str, Any]],
    loss_of: LossFn,
    prune_to: PruneFn,
    cfg: GradualConfig,
    desc: str = "prune-once",
    after_backward: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """The shared gradual-pruning loop: prune to the cubic schedule's sparsity at each pruning event, minimize
    `loss_of(batch)["loss"]` with AdamW, re-apply the masks after every step; ends at exactly cfg.target with the
    pattern checked. Returns the log (every part of the loss, and the sparsity, ~50 times over the run).
    `after_backward` runs while the gradients exist (e.g. to accumulate importance scores for `prune_to`)."""
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, eps=1e-6)
    last_cut = cfg.window[1]
    recovery = max(1, cfg.steps - last_cut)

    def rate(step: int) -> float:
        if not cfg.decay_after_pruning or step < last_cut:
            return 1.0
        return max(0.0, 1.0 - (step - last_cut) / recovery)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    masks: dict[str, torch.Tensor] | None = None
    current = cfg.initial
    log: list[dict[str, float]] = []
    student.train()
    bar = tqdm(range(cfg.steps), desc=desc, dynamic_ncols=True)
    for step in bar:
        scheduled = cubic_sparsity(step, cfg)
        if (step % cfg.prune_every == 0 and scheduled > current) or (step == cfg.window[1] and current < cfg.target):
            masks = prune_to(scheduled)
            current = scheduled
        losses = loss_of(next(batches))
        losses["loss"].backward()
        if after_backward is not None:
            after_backward()
        lr = optimizer.param_groups[0]["lr"]  # this step's rate, logged below
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if masks is not None:
            sparsity.apply_masks_(student, masks)
        bar.set_postfix(loss=f"{losses['loss'].item():.4f}", sparsity=f"{current:.3f}")
        if step % max(1, cfg.steps // 50) == 0 or step == cfg.steps - 1:
            log.append({"step": step, **{k: v.item() for k, v in losses.items()}, "sparsity": current, "lr": lr})
    if masks is None or not math.isclose(current, cfg.target):
        masks = prune_to(cfg.target)  # a schedule too short to reach the target
    sparsity.check_pattern(student, masks)
    student.eval()
    return log


def gradual_prune(
    dense: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], cfg: GradualConfig
) -> dict[str, Any]:
    """Prune `dense` in place to cfg.target while distilling from a frozen copy; returns the loss/sparsity log."""
    if len(texts) < cfg.batch_size:
        raise PruneofaError(f"--text_file: {len(texts)} texts, fewer than one batch ({cfg.batch_size}); give more text")
    teacher = copy.deepcopy(dense).eval().requires_grad_(False)
    names = sparsity.prunable_weight_names(dense)

    def loss_of(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target_states = teacher(**batch, output_hidden_states=True).hidden_states
        states = dense(**batch, output_hidden_states=True).hidden_states
        return {"loss": hidden_state_loss(states, target_states, batch["attention_mask"])}

    def prune_to(target: float) -> dict[str, torch.Tensor]:
        return sparsity.magnitude_prune_(dense, target, names, cfg.block, cfg.block_rows)

    return {"log": prune_on_schedule(dense, text_batches(texts, tokenizer, cfg), loss_of, prune_to, cfg)}


def distillation_gap(
    student: nn.Module,
    teacher: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Example],
    max_seq_length: int,
) -> float:
    """Hidden-state MSE of student vs teacher on held-out text: how much the pruned encoder drifted."""
    student.eval()
    teacher.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            batch = encode(tokenizer, texts[i : i + 32], max_seq_length)
            s = student(**batch, output_hidden_states=True).hidden_states
            t = teacher(**batch, output_hidden_states=True).hidden_states
            total += hidden_state_loss(s, t, batch["attention_mask"]).item() * len(texts[i : i + 32])
            count += len(texts[i : i + 32])
    return total / max(count, 1)
