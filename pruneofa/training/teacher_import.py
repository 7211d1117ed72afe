"""Bring a teacher fine-tuned elsewhere (a folder or Hub id) into the pipeline as a scored training folder.

The dense FP32 baseline that `bench` compares against is exported from a training folder; a given teacher gets
one here: its weights, tokenizer, dev metrics and a pruneofa.json like a fine-tuning run's, written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruneofa.compress import sparsity
from pruneofa.core.versions import package_versions
from pruneofa.data.tasks import get_task
from pruneofa.models.folder import save_model_dir
from pruneofa.models.loading import load_teacher, load_tokenizer, resolve_model
from pruneofa.training.config import TrainConfig, recorded_arg
from pruneofa.training.distributed import Runtime
from pruneofa.training.evaluation import evaluate
from pruneofa.training.inputs import load_data


def import_teacher(ref: str, task_name: str, out: Path, data_args: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    task = get_task(task_name)
    path = resolve_model(ref)
    model = load_teacher(path, task)
    tokenizer = load_tokenizer(path)
    cfg = TrainConfig(output_dir=out, model_name_or_path=ref, **data_args)
    _, evals, _ = load_data(cfg, task, tokenizer, rt)
    from pruneofa.data.loading import make_collator

    metrics = evaluate(model, evals, task, rt, cfg.batch_size, make_collator(tokenizer, cfg.pad_to_max_length))
    names = sparsity.prunable_weight_names(model)
    report = sparsity.sparsity_report(model, names)
    meta = {
        "format": "pruneofa-train/1",
        "stage": "imported-teacher",
        "finished": True,
        "task_name": task.name,
        "label_names": list(task.label_names),
        "main_metric": task.main_metric,
        "model_name_or_path": recorded_arg("model_name_or_path", ref),
        "resumed_from": None,
        "args": cfg.to_json(),
        "best_epoch": 0,
        "metrics": metrics,
        "teacher_metrics": None,
        "history": [],
        "quantization": None,
        "versions": package_versions(),
        "sparsity": {"locked": False, "overall": sparsity.overall_sparsity(report), "layers": report},
    }
    if rt.is_main:
        save_model_dir(out, model, tokenizer, meta, model.state_dict())
    rt.barrier()
    return {"metrics": metrics}
