"""One stage of Prune Once For All fine-tuning, read top to bottom.

fine-tune (no --do_*), stage 1 (--do_prune --do_distillation) or stage 2 (the same + --do_quantization, resumed
from stage 1) are the same loop with parts switched on: the pattern lock re-masks after every optimizer step, the
loss mixes hard labels with the teacher's cached logits, and QAT wraps every Linear with fake quantization.
No argument parsing and no process-group setup here: the caller passes a config and a Runtime.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm
from transformers import get_scheduler, set_seed

from pruneofa import sparsity
from pruneofa.checkpoint import META_FILE, read_meta, save_model_dir, write_json_atomic
from pruneofa.config import TrainConfig
from pruneofa.distill import DistillConfig, distillation_loss, student_loss
from pruneofa.errors import PruneofaError
from pruneofa.evaluation import evaluate, model_inputs
from pruneofa.metrics import main_metric_value
from pruneofa.quant import QuantConfig, is_quantized, prepare_qat_, quant_params, quant_state
from pruneofa.runtime import Runtime
from pruneofa.stage_inputs import StageInputs, prepare_stage
from pruneofa.versions import package_versions

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    output_dir: Path
    best_epoch: int
    best_metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]]


def check_output_dir(cfg: TrainConfig) -> None:
    """Never clobber a finished run silently."""
    if (cfg.output_dir / META_FILE).exists() and not cfg.overwrite_output_dir:
        raise PruneofaError(
            f"--output_dir {cfg.output_dir}: already holds a finished run; choose another folder or pass "
            "--overwrite_output_dir"
        )
    if cfg.output_dir.exists() and not cfg.output_dir.is_dir():
        raise PruneofaError(f"--output_dir {cfg.output_dir}: exists and is not a folder; choose another path")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights, as in the reference."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_loader(inputs: StageInputs, cfg: TrainConfig, rt: Runtime) -> tuple[DataLoader, DistributedSampler]:
    """Per-device batches; each rank a disjoint shard, reshuffled every epoch via sampler.set_epoch."""
    sampler = DistributedSampler(
        inputs.train,  # type: ignore[arg-type]
        num_replicas=rt.world_size,
        rank=rt.rank,
        shuffle=True,
        seed=cfg.seed if cfg.seed is not None else 0,
    )
    loader = DataLoader(
        inputs.train,  # type: ignore[arg-type]
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=inputs.collate,
    )
    return loader, sampler


def compute_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], inputs: StageInputs, cfg: TrainConfig, rt: Runtime
) -> torch.Tensor:
    logits = model(**model_inputs(batch, rt.device)).logits
    labels = batch["labels"].to(rt.device)
    if inputs.teacher_logits is None:
        return student_loss(logits, labels, inputs.task.is_regression)
    teacher = inputs.teacher_logits[batch["example_id"]].to(rt.device)
    kd = DistillConfig(loss_types=cfg.loss_types, loss_weights=cfg.loss_weights, temperature=cfg.temperature)
    return distillation_loss(logits, teacher, labels, kd, inputs.task.is_regression)


@dataclass
class Loop:
    """The moving parts of one run, so the epoch function stays short."""

    model: nn.Module  # what forward/backward run on (DDP-wrapped when distributed)
    inner: nn.Module  # the plain model: masks, saving, evaluation
    optimizer: torch.optim.Optimizer
    scheduler: Any
    masks: dict[str, torch.Tensor] | None
    step: int = 0


def train_epoch(loop: Loop, loader: DataLoader, inputs: StageInputs, cfg: TrainConfig, rt: Runtime, epoch: int,
                max_steps: int) -> dict[str, float]:
    loop.model.train()
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not rt.is_main, dynamic_ncols=True, leave=False)
    for micro, batch in enumerate(bar):
        loss = compute_loss(loop.model, batch, inputs, cfg, rt)
        (loss / cfg.gradient_accumulation_steps).backward()
        total_loss += loss.item() * len(batch["labels"])
        seen += len(batch["labels"])
        if (micro + 1) % cfg.gradient_accumulation_steps == 0 or micro + 1 == len(loader):
            loop.optimizer.step()
            loop.scheduler.step()
            loop.optimizer.zero_grad(set_to_none=True)
            if loop.masks is not None:
                # The pattern lock: pruned weights go back to exactly zero after every update.
                sparsity.apply_masks_(loop.inner, loop.masks)
            loop.step += 1
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", seq_s=f"{seen * rt.world_size / (time.perf_counter() - started):.1f}")
        if loop.step >= max_steps:
            break
    elapsed = time.perf_counter() - started
    return {"train_loss": total_loss / max(seen, 1), "epoch_seconds": elapsed,
            "train_seq_per_s": seen * rt.world_size / max(elapsed, 1e-9)}


def build_meta(cfg: TrainConfig, inputs: StageInputs, history: list[dict[str, Any]], best: dict[str, Any],
               model: nn.Module) -> dict[str, Any]:
    report = sparsity.sparsity_report(model, inputs.prunable)
    return {
        "format": "pruneofa-train/1",
        "stage": cfg.stage,
        "task_name": inputs.task.name,
        "label_names": list(inputs.task.label_names),
        "main_metric": inputs.task.main_metric,
        "model_name_or_path": cfg.model_name_or_path,
        "resumed_from": str(inputs.resumed_from) if inputs.resumed_from else None,
        "args": cfg.to_json(),
        "best_epoch": best["epoch"],
        "metrics": best["eval"],
        "teacher_metrics": inputs.teacher_metrics,
        "history": history,
        "sparsity": {
            "locked": cfg.do_prune,
            "overall_start": sparsity.overall_sparsity(inputs.sparsity_start),
            "overall": sparsity.overall_sparsity(report),
            "start": inputs.sparsity_start,
            "layers": report,
        },
        "quantization": (
            {"config": dataclasses.asdict(QuantConfig()), "layers": quant_params(model)}
            if cfg.do_quantization
            else None
        ),
        "versions": package_versions(),
    }


def save_best(loop: Loop, inputs: StageInputs, cfg: TrainConfig, meta: dict[str, Any]) -> None:
    state = loop.inner.state_dict()
    qstate = quant_state(loop.inner) if cfg.do_quantization else {}
    floats = {k: v for k, v in state.items() if k not in qstate}
    save_model_dir(cfg.output_dir, loop.inner, inputs.tokenizer, meta, floats, qstate or None)  # type: ignore[arg-type]


def log_epoch(cfg: TrainConfig, rt: Runtime, record: dict[str, Any]) -> None:
    if not rt.is_main:
        return
    with (cfg.output_dir / METRICS_FILE).open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    rt.print0(f"[pruneofa] {json.dumps(record)}")


def train(cfg: TrainConfig, rt: Runtime) -> TrainResult:
    """Run one stage and leave the best epoch's model in cfg.output_dir."""
    check_output_dir(cfg)
    if cfg.seed is not None:
        set_seed(cfg.seed)
    inputs = prepare_stage(cfg, rt)
    model = inputs.model.to(rt.device)
    masks = sparsity.capture_masks(model, inputs.prunable) if cfg.do_prune else None
    if cfg.do_quantization and not is_quantized(model):
        prepare_qat_(model, QuantConfig())  # after capture: masks are keyed by parameter name, which QAT keeps
        model.to(rt.device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate, betas=(0.9, 0.999),
                                  eps=1e-6)
    loader, sampler = train_loader(inputs, cfg, rt)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    max_steps = cfg.max_train_steps or cfg.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=cfg.num_warmup_steps,
                              num_training_steps=max_steps)
    wrapped: nn.Module = DistributedDataParallel(model) if rt.distributed else model
    loop = Loop(model=wrapped, inner=model, optimizer=optimizer, scheduler=scheduler, masks=masks)
    if rt.is_main:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        (cfg.output_dir / METRICS_FILE).unlink(missing_ok=True)
    rt.print0(f"[pruneofa] {cfg.stage}: {len(inputs.train)} train examples, {epochs} epochs, {max_steps} steps, "
              f"world size {rt.world_size}, device {rt.device}")
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "score": -math.inf, "eval": {}}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        stats = train_epoch(loop, loader, inputs, cfg, rt, epoch, max_steps)
        if masks is not None:
            sparsity.check_pattern(model, masks)
        scores = evaluate(model, inputs.eval_splits, inputs.task, rt, cfg.batch_size, inputs.collate)
        score = main_metric_value(inputs.task, scores[inputs.task.eval_splits[0]])
        record = {"epoch": epoch, "step": loop.step, **stats, "eval": scores}
        history.append(record)
        log_epoch(cfg, rt, record)
        if score > best["score"]:
            best = {"epoch": epoch, "score": score, "eval": scores}
            if rt.is_main:
                save_best(loop, inputs, cfg, build_meta(cfg, inputs, history, best, model))
        rt.barrier()
        if loop.step >= max_steps:
            break
    if rt.is_main:
        meta = read_meta(cfg.output_dir)
        meta["history"] = history
        write_json_atomic(cfg.output_dir / META_FILE, meta)
    rt.barrier()
    return TrainResult(output_dir=cfg.output_dir, best_epoch=best["epoch"], best_metrics=best["eval"], history=history)
