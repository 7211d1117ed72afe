"""Score a model on a dev split: every example exactly once, sharded across ranks and gathered.

The reference drops the last partial dev batch; here each rank takes a disjoint stride of the split (no padding
samples, no drops) and the logits are reassembled by example id before scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader

from pruneofa.compress.distillation import MODEL_INPUT_KEYS, assemble_logits, logits_by_example
from pruneofa.data.metrics import compute_metrics
from pruneofa.data.tasks import TaskSpec
from pruneofa.training.distributed import Runtime


def model_inputs(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors a HF encoder takes; labels and example ids stay behind."""
    return {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}


def shard_loader(
    dataset: Dataset, rt: Runtime, batch_size: int, collate: Callable[[list[dict[str, Any]]], Any]
) -> DataLoader:
    """This rank's disjoint stride of the dataset, in order."""
    shard = dataset.select(range(rt.rank, len(dataset), rt.world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=collate)


def predict(
    model: nn.Module, dataset: Dataset, rt: Runtime, batch_size: int, collate: Callable[[list[dict[str, Any]]], Any]
) -> torch.Tensor:
    """Logits for every example of `dataset` in order, on every rank (each rank scores its stride, then gather)."""
    loader = shard_loader(dataset, rt, batch_size, collate)
    empty = (torch.empty(0, dtype=torch.long), torch.empty(0))
    ids, logits = logits_by_example(model, loader, rt.device) if len(loader) else empty
    gathered = rt.all_gather_objects((ids, logits))
    all_ids = torch.cat([g[0] for g in gathered])
    all_logits = torch.cat([g[1] for g in gathered if g[1].numel()])
    return assemble_logits(all_ids, all_logits, len(dataset))


def evaluate(
    model: nn.Module,
    splits: Mapping[str, Dataset],
    task: TaskSpec,
    rt: Runtime,
    batch_size: int,
    collate: Callable[[list[dict[str, Any]]], Any],
) -> dict[str, dict[str, float]]:
    """Metrics per eval split, e.g. {"validation_matched": {"accuracy": ...}, "validation_mismatched": {...}}."""
    results: dict[str, dict[str, float]] = {}
    for name, dataset in splits.items():
        logits = predict(model, dataset, rt, batch_size, collate)
        references = np.asarray(dataset["labels"])
        results[name] = compute_metrics(task, logits.numpy(), references)
    return results
