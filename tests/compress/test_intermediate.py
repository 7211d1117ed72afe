"""Intermediate-layer distillation invariants on tiny in-process models: zero for a copy of the teacher, gradients
when they differ, padding ignored, attention KL by hand, shape mismatches refused, QAT student vs float teacher."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tiny import tiny_batch, tiny_bert
from transformers import BertConfig, BertForSequenceClassification

from pruneofa.compress.distillation import DistillConfig
from pruneofa.compress.intermediate import (
    LayerDistillConfig,
    attention_loss,
    check_same_shape,
    layer_distillation_loss,
    live_distillation_loss,
    use_eager_attention_,
)
from pruneofa.compress.quantization import QuantConfig, prepare_qat_
from pruneofa.core.errors import ModelError, PruneofaError

KD = DistillConfig(loss_weights=(0.0, 1.0), temperature=2.0)
BOTH = LayerDistillConfig(hidden_weight=1.0, attention_weight=1.0)


def _eager(seed: int) -> BertForSequenceClassification:
    model = tiny_bert(seed=seed)
    use_eager_attention_(model)
    return model


def _live(
    student: torch.nn.Module, teacher: torch.nn.Module, cfg: LayerDistillConfig, **batch_args: int
) -> torch.Tensor:
    return live_distillation_loss(student, teacher, tiny_batch(**batch_args), None, KD, cfg, is_regression=False)


def test_zero_when_student_equals_teacher() -> None:
    teacher = _eager(0)
    student = copy.deepcopy(teacher)
    for cfg in (BOTH, LayerDistillConfig(hidden_weight=1.0), LayerDistillConfig(attention_weight=1.0)):
        assert _live(student, teacher, cfg).item() == pytest.approx(0.0, abs=1e-6)


def test_positive_with_gradients_into_every_layer_when_they_differ() -> None:
    teacher, student = _eager(0), _eager(1)
    for cfg in (LayerDistillConfig(hidden_weight=1.0), LayerDistillConfig(attention_weight=1.0)):
        student.zero_grad(set_to_none=True)
        # the logit term alone would also give gradients: weigh it out to test the layer terms on their own
        loss = live_distillation_loss(
            student,
            teacher,
            tiny_batch(),
            torch.tensor([0, 1, 0, 1]),
            DistillConfig(("CE", "KL"), (1e-9, 0.0)),
            cfg,
            False,
        )
        assert loss.item() > 1e-6  # random tiny models attend almost uniformly: their attention KL is small
        loss.backward()
        for layer in (0, 1):
            grad = student.bert.encoder.layer[layer].attention.self.query.weight.grad
            assert grad is not None and grad.abs().sum() > 0, (cfg, layer)
        assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


def test_weights_scale_the_terms_and_add_to_the_logit_loss() -> None:
    teacher, student = _eager(0), _eager(1)
    logits_only = _live(student, teacher, LayerDistillConfig()).item()
    hidden = _live(student, teacher, LayerDistillConfig(hidden_weight=1.0)).item() - logits_only
    attention = _live(student, teacher, LayerDistillConfig(attention_weight=1.0)).item() - logits_only
    both = _live(student, teacher, LayerDistillConfig(hidden_weight=2.0, attention_weight=3.0)).item()
    assert hidden > 0 and attention > 0
    assert both == pytest.approx(logits_only + 2 * hidden + 3 * attention, rel=1e-5)


def test_padding_tokens_do_not_count() -> None:
    """Other token ids at the padded positions change nothing: masked keys, and padded queries left out."""
    teacher, student = _eager(0), _eager(1)
    batch = tiny_batch()
    other = {k: v.clone() for k, v in batch.items()}
    padded = batch["attention_mask"] == 0
    assert padded.any()
    other["input_ids"][padded] = (other["input_ids"][padded] + 17) % 127 + 1
    losses = [live_distillation_loss(student, teacher, b, None, KD, BOTH, False).item() for b in (batch, other)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_padding_positions_of_the_outputs_are_ignored() -> None:
    """Directly on the outputs: anything at padded positions (hidden states, attention rows) is left out."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    hidden = tuple(torch.randn(2, 4, 8, generator=gen) for _ in range(3))
    maps = tuple(torch.softmax(torch.randn(2, 2, 4, 4, generator=gen), -1) for _ in range(2))
    out = type("Out", (), {"hidden_states": hidden, "attentions": maps})()
    noisy_hidden = tuple(h + 5.0 * (mask == 0).unsqueeze(-1) for h in hidden)
    noisy_maps = tuple(torch.where((mask == 0)[:, None, :, None], torch.full_like(m, 0.25), m) for m in maps)
    noisy = type("Out", (), {"hidden_states": noisy_hidden, "attentions": noisy_maps})()
    assert layer_distillation_loss(out, out, mask, BOTH).item() == pytest.approx(0.0, abs=1e-7)
    assert layer_distillation_loss(noisy, out, mask, BOTH).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_kl_matches_hand_computation() -> None:
    teacher = torch.tensor([[[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.3, 0.3, 0.4]]]])  # [1 batch, 1 head, 3, 3]
    student = torch.tensor([[[[0.25, 0.75, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]]])
    mask = torch.tensor([[1, 1, 0]])  # the third token is padding: its row is left out, its column is 0
    rows = [
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
        0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5),
    ]
    got = attention_loss((student,), (teacher,), mask).item()
    assert got == pytest.approx(sum(rows) / 2, rel=1e-6)


def test_sdpa_returns_no_attention_maps_and_the_loss_says_so() -> None:
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)  # default sdpa attention
    with pytest.raises(PruneofaError, match="eager"):
        _live(student, teacher, LayerDistillConfig(attention_weight=1.0))
    # hidden states need no eager attention
    assert _live(student, teacher, LayerDistillConfig(hidden_weight=1.0)).item() > 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"num_hidden_layers": 3}, ["3 layers x hidden 32", "2 layers x hidden 32"]),
        ({"hidden_size": 64, "num_attention_heads": 2}, ["2 layers x hidden 64", "2 layers x hidden 32"]),
    ],
)
def test_shape_mismatch_is_refused_with_both_shapes(change: dict[str, int], words: list[str]) -> None:
    student = tiny_bert()
    config = BertConfig(**{**student.config.to_dict(), **change})
    teacher = BertForSequenceClassification(config)
    with pytest.raises(ModelError) as err:
        check_same_shape(student, teacher, LayerDistillConfig(hidden_weight=1.0), "big-teacher")
    message = str(err.value)
    assert all(word in message for word in words) and "big-teacher" in message
    assert "--hidden_distill_weight" in message and "\n" not in message


def test_head_count_checked_only_for_attention_maps() -> None:
    student = tiny_bert()
    teacher = BertForSequenceClassification(BertConfig(**{**student.config.to_dict(), "num_attention_heads": 4}))
    check_same_shape(student, teacher, LayerDistillConfig(hidden_weight=1.0), "t")  # hidden states: same shape
    with pytest.raises(ModelError, match="4 heads"):
        check_same_shape(student, teacher, LayerDistillConfig(attention_weight=1.0), "t")


def test_qat_student_learns_from_a_float_teacher() -> None:
    teacher = _eager(0)
    student = _eager(1)
    prepare_qat_(student, QuantConfig())
    student.train()
    loss = _live(student, teacher, BOTH)
    loss.backward()
    assert loss.item() > 0
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert not any(type(m).__name__ == "QATLinear" for m in teacher.modules())


def test_config_refuses_negative_or_infinite_weights() -> None:
    with pytest.raises(PruneofaError, match="hidden_weight"):
        LayerDistillConfig(hidden_weight=-1.0)
    with pytest.raises(PruneofaError, match="attention_weight"):
        LayerDistillConfig(attention_weight=math.inf)
    assert not LayerDistillConfig().active and LayerDistillConfig(attention_weight=0.5).active
