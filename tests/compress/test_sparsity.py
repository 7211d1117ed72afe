"""Pattern lock invariants: masks are (w != 0), survive training with re-masking, break loudly without it."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_batch, tiny_bert
from torch import nn
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from pruneofa.compress.quantization import QuantConfig, prepare_qat_
from pruneofa.compress.sparsity import (
    apply_masks_,
    capture_masks,
    check_pattern,
    magnitude_prune_,
    overall_sparsity,
    prunable_weight_names,
    sparsity_report,
)
from pruneofa.core.errors import ModelError, PatternBrokenError, PruneofaError


def _train_steps(model: nn.Module, masks: dict[str, torch.Tensor] | None, steps: int = 50) -> None:
    """AdamW steps on random labels; re-mask after each step when masks are given."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = tiny_batch()
    labels = torch.tensor([0, 1, 1, 0])
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if masks is not None:
            apply_masks_(model, masks)
    model.eval()


def test_prunable_names_bert_cover_encoder_and_pooler_only() -> None:
    names = prunable_weight_names(tiny_bert())
    per_layer = ["attention.self.query", "attention.self.key", "attention.self.value"]
    per_layer += ["attention.output.dense", "intermediate.dense", "output.dense"]
    expected = [f"bert.encoder.layer.{i}.{p}.weight" for i in range(2) for p in per_layer]
    assert names == [*expected, "bert.pooler.dense.weight"]


def test_prunable_names_other_families_skip_heads() -> None:
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=128, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    )
    names = prunable_weight_names(distil)
    assert len(names) == 6 and all(n.startswith("distilbert.transformer.layer.0.") for n in names)
    roberta = RobertaForSequenceClassification(
        RobertaConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    )
    names = prunable_weight_names(roberta)
    assert len(names) == 6 and not any("classifier" in n for n in names)


def test_prunable_names_unchanged_by_qat_prep() -> None:
    model = tiny_bert()
    before = prunable_weight_names(model)
    prepare_qat_(model, QuantConfig())
    assert prunable_weight_names(model) == before


def test_masks_match_hand_computed() -> None:
    linear = nn.Linear(3, 2)
    layer = nn.Sequential(linear)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0, 1.5, 0.0], [-2.0, 0.0, 0.25]]))
    masks = capture_masks(layer, ["0.weight"])
    assert masks["0.weight"].dtype == torch.bool
    assert masks["0.weight"].tolist() == [[False, True, False], [True, False, True]]


def test_pattern_locked_through_training() -> None:
    model = tiny_bert()
    names = prunable_weight_names(model)
    magnitude_prune_(model, 0.8, names)
    masks = capture_masks(model, names)
    before = sparsity_report(model, names)
    _train_steps(model, masks)
    check_pattern(model, masks)
    after = sparsity_report(model, names)
    # Exactly the same zeros: the lock keeps pruned weights at 0 and training moves none of the rest to 0.
    assert {n: r["zeros"] for n, r in after.items()} == {n: r["zeros"] for n, r in before.items()}
    assert capture_masks(model, names).keys() == masks.keys()
    assert all(torch.equal(capture_masks(model, names)[n], masks[n]) for n in names)


def test_pattern_breaks_loudly_without_lock() -> None:
    model = tiny_bert()
    names = prunable_weight_names(model)
    masks = magnitude_prune_(model, 0.8, names)
    _train_steps(model, masks=None, steps=5)
    with pytest.raises(PatternBrokenError, match=r"bert\.encoder\.layer\.0\.attention\.self\.query\.weight"):
        check_pattern(model, masks)


def test_pattern_locked_through_qat_training() -> None:
    model = tiny_bert()
    names = prunable_weight_names(model)
    magnitude_prune_(model, 0.9, names)
    masks = capture_masks(model, names)
    prepare_qat_(model, QuantConfig())
    _train_steps(model, masks, steps=20)
    check_pattern(model, masks)
    assert overall_sparsity(sparsity_report(model, names)) == pytest.approx(0.9, abs=1e-3)


def test_magnitude_prune_exact_counts_keep_largest() -> None:
    model = tiny_bert()
    names = prunable_weight_names(model)
    original = {n: model.get_parameter(n).detach().clone() for n in names}
    masks = magnitude_prune_(model, 0.7, names)
    report = sparsity_report(model, names)
    for name in names:
        numel = original[name].numel()
        assert report[name]["zeros"] == round(0.7 * numel)
        kept = original[name].abs()[masks[name]]
        dropped = original[name].abs()[~masks[name]]
        assert kept.min() >= dropped.max()
        # Survivors are untouched.
        assert torch.equal(model.get_parameter(name)[masks[name]], original[name][masks[name]])


def test_magnitude_prune_rejects_bad_sparsity() -> None:
    model = tiny_bert()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(PruneofaError, match=r"\[0, 1\)"):
            magnitude_prune_(model, bad, prunable_weight_names(model))


def test_report_numbers() -> None:
    linear = nn.Linear(4, 2, bias=False)
    layer = nn.Sequential(linear)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]]))
    report = sparsity_report(layer, ["0.weight"])
    assert report["0.weight"] == {"shape": [2, 4], "zeros": 4, "numel": 8, "sparsity": 0.5}
    assert overall_sparsity(report) == 0.5


def test_mask_shape_mismatch_is_model_error() -> None:
    model = tiny_bert()
    bad = {"bert.pooler.dense.weight": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ModelError, match=r"bert\.pooler\.dense\.weight"):
        apply_masks_(model, bad)
    with pytest.raises(ModelError, match="no parameter"):
        apply_masks_(model, {"nope.weight": torch.ones(1, dtype=torch.bool)})


def test_block_pruning_keeps_or_zeroes_whole_groups_of_inputs() -> None:
    """--block 4: every 4 consecutive input features of a row are all zero or all kept, at the exact sparsity,
    and the sparse kernel's K-group form of such a layer is full (every stored group has 4 weights)."""
    import numpy as np

    from pruneofa.kernels.group_weights import pack_groups

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.Linear(12, 8))
    names = ["0.weight", "1.weight"]
    masks = magnitude_prune_(model, 0.75, names, block=4)
    for name in names:
        groups = masks[name].reshape(masks[name].shape[0], -1, 4)
        assert torch.all(groups.all(dim=-1) | ~groups.any(dim=-1))  # whole groups only
        assert masks[name].float().mean().item() == pytest.approx(0.25)
        weight = model.get_parameter(name).detach()
        assert torch.equal(weight != 0, masks[name])
        q = np.clip(np.round(weight.numpy() * 100), -127, 127).astype(np.int8)
        q[(q == 0) & masks[name].numpy()] = 1  # keep kept weights non-zero after rounding
        packed = pack_groups(q)
        assert packed.nonempty_groups == int(masks[name].sum().item()) // 4


def test_block_pruning_ranks_groups_by_their_norm_and_refuses_bad_blocks() -> None:
    layer = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0]]))  # norms 3.005 vs 2.0
    magnitude_prune_(layer, 0.5, ["weight"], block=4)
    assert layer.weight[0, :4].ne(0).all() and layer.weight[0, 4:].eq(0).all()
    with pytest.raises(PruneofaError, match="not a multiple of 3"):
        magnitude_prune_(nn.Linear(8, 2), 0.5, ["weight"], block=3)
    with pytest.raises(PruneofaError, match="--block 0"):
        magnitude_prune_(nn.Linear(8, 2), 0.5, ["weight"], block=0)


def test_two_dimensional_blocks_are_whole_and_exact() -> None:
    """--block_rows 4 --block 2: every 4-output x 2-input block is all zero or all kept, at the exact sparsity; a
    block that does not tile a layer names the flag and the layer."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 12), nn.Linear(12, 8))
    names = ["0.weight", "1.weight"]
    masks = magnitude_prune_(model, 0.75, names, block=2, block_rows=4)
    for name in names:
        mask = masks[name]
        blocks = mask.reshape(mask.shape[0] // 4, 4, -1, 2).transpose(1, 2).flatten(2)
        assert torch.all(blocks.all(dim=-1) | ~blocks.any(dim=-1))
        assert mask.float().mean().item() == pytest.approx(0.25)
        assert torch.equal(model.get_parameter(name).detach() != 0, mask)
    with pytest.raises(PruneofaError, match=r"--block_rows 5: '0.weight' has 12 output features"):
        magnitude_prune_(model, 0.5, names, block=1, block_rows=5)


def test_block_scores_pool_in_row_major_block_order() -> None:
    from pruneofa.compress.sparsity import block_mask, block_scores

    scores = torch.arange(16.0).reshape(4, 4)  # blocks of 2 x 2: [[0,1,4,5], [2,3,6,7], [8,9,12,13], [10,..15]]
    assert block_scores(scores, 2, 2).tolist() == [10.0, 18.0, 42.0, 50.0]
    mask = block_mask(torch.tensor([False, True, True, False]), scores.shape, 2, 2)
    assert mask.tolist() == [[False, False, True, True]] * 2 + [[True, True, False, False]] * 2
