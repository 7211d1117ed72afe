"""Tiny in-process BERT for unit tests: 2 layers, hidden 32, builds in milliseconds, no downloads."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    """A random tiny BertForSequenceClassification, in eval mode (as from_pretrained returns models)."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config.num_labels = num_labels
    return BertForSequenceClassification(config).eval()


def tiny_batch(batch_size: int = 4, seq_len: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random model inputs for tiny_bert (vocab 128), with some padding in the last row."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 128, (batch_size, seq_len), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, seq_len // 2 :] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }
