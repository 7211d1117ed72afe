"""Untrained models saved as `pruneofa train` outputs, so `export` and `bench` can be run on any shape without
hours of training: a dense FP32 classifier, and the same one pruned and made int8 (QAT-prepared, observers
calibrated by a few forward passes on real text).

For speed measurements and tests only: the weights are random or merely pruned, never fine-tuned, and the
saved pruneofa.json says so (`"synthetic"`). Timing does not depend on the values, only on shapes, zeros and
precision, which are the real ones.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneofa.data.tasks import get_task

SYNTHETIC_NOTE = "untrained weights (random or magnitude-pruned), made for benchmarks/tests; accuracy is meaningless"


def classifier(model_dir: str | None, config: Any | None, task_name: str, seed: int = 0) -> nn.Module:
    """A BertForSequenceClassification with the task's labels: from a folder's weights, or random from `config`."""
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    from pruneofa.models.loading import label_maps

    maps = label_maps(get_task(task_name))
    torch.manual_seed(seed)  # the fresh classifier head (and a random model) are reproducible
    if model_dir is not None:
        return AutoModelForSequenceClassification.from_pretrained(model_dir, **maps).eval()
    assert config is not None
    config.update(maps)
    return BertForSequenceClassification(config).eval()


def sparse_int8(
    model: nn.Module,
    sparsity: float,
    calibration: list[dict[str, torch.Tensor]],
    block: int = 1,
    block_rows: int = 1,
) -> nn.Module:
    """A pruned copy (encoder + pooler, magnitude, per layer, in blocks of `block_rows` outputs x `block` inputs)
    with int8 QAT Linears
    whose observers saw `calibration` (train-mode forwards, no weight update)."""
    from pruneofa.compress.quantization import QuantConfig, prepare_qat_
    from pruneofa.compress.sparsity import magnitude_prune_, prunable_weight_names

    student = copy.deepcopy(model)
    magnitude_prune_(student, sparsity, prunable_weight_names(student), block, block_rows)
    prepare_qat_(student, QuantConfig())
    student.train()  # observers update in train mode; no optimizer, so the weights stay as pruned
    with torch.no_grad():
        for batch in calibration:
            student(**batch)
    return student.eval()


def calibration_batches(tokenizer_dir: str, texts: list[str], seq_len: int, batches: int) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    size = max(1, len(texts) // max(batches, 1))
    return [
        dict(tokenizer(texts[i * size : (i + 1) * size], padding="max_length", truncation=True,
                       max_length=seq_len, return_tensors="pt"))
        for i in range(batches)
    ]  # fmt: skip


def save_training_output(model: nn.Module, tokenizer_dir: str, out_dir: Path, task_name: str, seq_len: int) -> Path:
    """Write `model` as a finished training folder (weights, tokenizer, observers, pruneofa.json) for `export`."""
    from transformers import AutoTokenizer

    from pruneofa.compress.quantization import QuantConfig, is_quantized, quant_state
    from pruneofa.compress.sparsity import overall_sparsity, prunable_weight_names, sparsity_report
    from pruneofa.core.versions import package_versions
    from pruneofa.models.folder import save_model_dir

    task = get_task(task_name)
    qstate = quant_state(model) if is_quantized(model) else {}
    floats = {k: v for k, v in model.state_dict().items() if k not in qstate}
    report = sparsity_report(model, prunable_weight_names(model))
    meta = {
        "stage": "synthetic-int8" if qstate else "synthetic-fp32",
        "synthetic": SYNTHETIC_NOTE,
        "finished": True,
        "task_name": task.name,
        "label_names": list(task.label_names),
        "main_metric": task.main_metric,
        "model_name_or_path": tokenizer_dir,
        "args": {"max_seq_length": seq_len},
        "metrics": None,
        "sparsity": {"locked": False, "overall": overall_sparsity(report), "layers": report},
        "quantization": {"config": dataclasses.asdict(QuantConfig())} if qstate else None,
        "versions": package_versions(),
    }
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    save_model_dir(out_dir, model, tokenizer, meta, floats, qstate or None)  # type: ignore[arg-type]
    return out_dir
