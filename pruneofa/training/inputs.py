"""What one training stage works on: the student (fresh or resumed), tokenized data, and the teacher's logits.

The teacher runs once over the training set (sharded across ranks, gathered) and its logits are cached on disk,
keyed by everything that changes them: teacher weights, task, data content, max length, padding and tokenizer.
Intermediate-layer distillation (hidden states, attention maps) needs more than logits: the teacher is then kept,
frozen on the training device, and runs on every batch instead (no cache pass).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pruneofa.compress import sparsity
from pruneofa.compress.distillation import cache_key, load_logits_cache, save_logits_cache
from pruneofa.compress.quantization import QuantConfig, load_quant_state_, prepare_qat_
from pruneofa.core.cache import default_cache_dir
from pruneofa.core.errors import ModelError
from pruneofa.data.loading import load_raw_splits, make_collator, select_first, split_fingerprint, tokenize_splits
from pruneofa.data.tasks import TaskSpec, get_task
from pruneofa.models.folder import load_quant_state, read_meta, resolve_resume, verify_files
from pruneofa.models.loading import (
    check_same_vocabulary,
    load_classifier,
    load_teacher,
    load_tokenizer,
    resolve_model,
    same_model,
)
from pruneofa.training.config import TrainConfig
from pruneofa.training.distributed import Runtime
from pruneofa.training.evaluation import evaluate, predict
from pruneofa.training.state import rng_state, set_rng_state


@dataclass
class StageInputs:
    task: TaskSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    train: Dataset
    eval_splits: dict[str, Dataset]
    collate: Callable[[list[dict[str, Any]]], Any]
    prunable: list[str]
    sparsity_start: dict[str, dict[str, Any]]
    teacher_logits: torch.Tensor | None
    teacher_metrics: dict[str, dict[str, float]] | None
    resumed_from: Path | None
    # The teacher itself, frozen on the training device, only for intermediate-layer distillation (it runs on every
    # batch); None when distilling logits only, which come from `teacher_logits`.
    live_teacher: torch.nn.Module | None = None


@contextmanager
def own_random_streams() -> Iterator[None]:
    """Run a block without moving the caller's random streams (torch CPU and CUDA, Python, NumPy).

    What a cold cache does and a warm one skips (materializing a built-in, running the teacher: every DataLoader
    iteration draws a seed from the global generator) must not shift the student's dropout and initialization,
    or a seeded run would give other weights the second time."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def load_student(cfg: TrainConfig, task: TaskSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path | None]:
    """The model to train: from --resume (the previous stage's folder) or from --model_name_or_path."""
    if cfg.resume is None:
        with own_random_streams():
            path = resolve_model(cfg.model_name_or_path, cfg.cache_dir)
        return load_classifier(path, task, "model"), load_tokenizer(path, cfg.use_slow_tokenizer), None
    folder = resolve_resume(cfg.resume)
    meta = read_meta(folder)
    verify_files(folder, meta)
    if meta.get("task_name") != task.name:
        raise ModelError(
            f"--resume {cfg.resume}: trained on task {meta.get('task_name')!r}, not {task.name!r}; "
            "resume from a run of the same task"
        )
    recorded = str(meta.get("model_name_or_path", ""))
    if recorded and not same_model(recorded, cfg.model_name_or_path):
        raise ModelError(
            f"--resume {cfg.resume}: was trained from {recorded!r} but --model_name_or_path is "
            f"{cfg.model_name_or_path!r}; pass the same model as the previous stage"
        )
    model = load_classifier(str(folder), task, "resumed model")
    qstate = load_quant_state(folder)
    if qstate is not None:
        if not cfg.do_quantization:
            raise ModelError(
                f"--resume {cfg.resume}: is a quantization-aware (stage 2) model; pass --do_quantization to go on "
                "training it, or resume from the stage-1 folder"
            )
        prepare_qat_(model, QuantConfig())
        load_quant_state_(model, qstate)
    return model, load_tokenizer(str(folder), cfg.use_slow_tokenizer), folder


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}|{text}".encode()).hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Content hash of the weights: two teachers with equal weights share a cache entry, whatever their path."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_data(
    cfg: TrainConfig, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, rt: Runtime
) -> tuple[Dataset, dict[str, Dataset], str]:
    """Tokenized train and eval splits; rank 0 builds any cache first, the other ranks then read it."""
    cache_dir = cfg.cache_dir or default_cache_dir()
    with rt.local_main_first():
        raw = load_raw_splits(task, cfg.train_file, cfg.validation_file, cache_dir)
    missing = [s for s in ("train", task.eval_splits[0]) if s not in raw]
    if missing:
        raise ModelError(
            f"task {task.name!r}: the data has no {missing[0]!r} split; pass it with --train_file/--validation_file"
        )
    raw["train"] = select_first(raw["train"], cfg.max_train_samples)
    for split in task.eval_splits:
        if split in raw:
            raw[split] = select_first(raw[split], cfg.max_eval_samples)
    data_id = split_fingerprint(raw["train"])
    tokenized = tokenize_splits(raw, tokenizer, task, cfg.max_seq_length, cfg.pad_to_max_length)
    evals = {s: tokenized[s] for s in task.eval_splits if s in tokenized}
    return tokenized["train"], evals, data_id


def load_checked_teacher(
    cfg: TrainConfig, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, rt: Runtime
) -> torch.nn.Module:
    """The teacher, refused early (before the data is built) if its labels or vocabulary don't fit the student."""
    assert cfg.teacher_model_name_or_path is not None  # guaranteed by TrainConfig validation
    with rt.local_main_first():
        path = resolve_model(cfg.teacher_model_name_or_path, cfg.cache_dir)
    teacher_tokenizer = load_tokenizer(path, cfg.use_slow_tokenizer)
    check_same_vocabulary(tokenizer, teacher_tokenizer, cfg.teacher_model_name_or_path)
    teacher: torch.nn.Module = load_teacher(path, task)
    return teacher


def teacher_side(
    cfg: TrainConfig, inputs: StageInputs, teacher: torch.nn.Module, data_id: str, rt: Runtime
) -> tuple[torch.Tensor | None, dict[str, dict[str, float]]]:
    """Score the teacher on dev (as the reference does) and get its train logits, from the cache or computed;
    no logits when the teacher runs live on every batch (intermediate-layer distillation)."""
    teacher.to(rt.device)
    metrics = evaluate(teacher, inputs.eval_splits, inputs.task, rt, cfg.batch_size, inputs.collate)
    rt.print0(f"[pruneofa] teacher {cfg.teacher_model_name_or_path}: {json.dumps(metrics)}")
    if cfg.layer_distillation.active:
        return None, metrics
    digest, key = cache_key(
        teacher=model_fingerprint(teacher),
        task=inputs.task.name,
        data=data_id,
        max_seq_length=str(cfg.max_seq_length),
        pad_to_max_length=str(cfg.pad_to_max_length),
        tokenizer=tokenizer_fingerprint(inputs.tokenizer),
    )
    cache_file = (cfg.cache_dir or default_cache_dir()) / "teacher_logits" / f"{digest}.safetensors"
    logits = load_logits_cache(cache_file, key)
    # Every rank must agree on whether to compute: a cache visible to some ranks only (no shared disk) is redone.
    if logits is None or not all(rt.all_gather_objects(logits is not None)):
        logits = predict(teacher, inputs.train, rt, cfg.batch_size, inputs.collate)
        if rt.is_main:
            save_logits_cache(cache_file, logits, key)
    else:
        rt.print0(f"[pruneofa] teacher logits from cache {cache_file}")
    return logits, metrics


def prepare_stage(cfg: TrainConfig, rt: Runtime) -> StageInputs:
    """Everything a stage trains on. Only the student's own initialization draws from the seeded random streams:
    data, built-in caches and the teacher run aside (`own_random_streams`), so a cold or a warm cache gives the
    same run."""
    task = get_task(cfg.task_name)
    with rt.local_main_first():  # a built-in model may be materialized into the cache on first use
        model, tokenizer, resumed_from = load_student(cfg, task)
    with own_random_streams():
        teacher = load_checked_teacher(cfg, task, tokenizer, rt) if cfg.do_distillation else None
        if teacher is not None and cfg.layer_distillation.active:
            prepare_live_teacher(cfg, model, teacher)
        train, evals, data_id = load_data(cfg, task, tokenizer, rt)
    prunable = sparsity.prunable_weight_names(model)
    inputs = StageInputs(
        task=task,
        model=model,
        tokenizer=tokenizer,
        train=train,
        eval_splits=evals,
        collate=make_collator(tokenizer, cfg.pad_to_max_length),
        prunable=prunable,
        sparsity_start=sparsity.sparsity_report(model, prunable),
        teacher_logits=None,
        teacher_metrics=None,
        resumed_from=resumed_from,
    )
    if teacher is not None:
        with own_random_streams():
            inputs.teacher_logits, inputs.teacher_metrics = teacher_side(cfg, inputs, teacher, data_id, rt)
        if cfg.layer_distillation.active:
            inputs.live_teacher = teacher  # on rt.device since teacher_side; never DDP-wrapped: it is not trained
        del teacher
    return inputs


def prepare_live_teacher(cfg: TrainConfig, student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """For intermediate-layer distillation: a teacher of the student's shape (refused before the data is built),
    frozen, and both models on eager attention when attention maps are distilled (sdpa returns none)."""
    from pruneofa.compress.intermediate import check_same_shape, use_eager_attention_

    layers = cfg.layer_distillation
    check_same_shape(student, teacher, layers, str(cfg.teacher_model_name_or_path))
    teacher.eval().requires_grad_(False)
    if layers.attention_weight > 0:
        use_eager_attention_(student)
        use_eager_attention_(teacher)
