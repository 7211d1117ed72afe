"""One stage of Prune Once For All fine-tuning, read top to bottom.

fine-tune (no --do_*), stage 1 (--do_prune --do_distillation) or stage 2 (the same + --do_quantization, resumed
from stage 1) are the same loop with parts switched on: the pattern lock re-masks after every optimizer step, the
loss mixes hard labels with the teacher's cached logits (or, to distill its hidden states and attention maps
too, with the teacher run live on each batch), and QAT wraps every Linear with fake quantization.
A training state is saved every epoch (and every --checkpointing_steps), so a killed run continues where it was.
No argument parsing and no process-group setup here: the caller passes a config and a Runtime.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm
from transformers import get_scheduler, set_seed

from pruneofa.compress import sparsity
from pruneofa.compress.distillation import DistillConfig, distillation_loss, student_loss
from pruneofa.compress.intermediate import live_distillation_loss
from pruneofa.compress.quantization import QuantConfig, is_quantized, prepare_qat_, quant_params, quant_state
from pruneofa.core.errors import PruneofaError
from pruneofa.core.files import sha256_file, write_json_atomic
from pruneofa.core.outputs import check_not_an_input, folder_kind
from pruneofa.core.versions import package_versions
from pruneofa.data.metrics import main_metric_value
from pruneofa.models.folder import META_FILE, read_meta, save_model_dir
from pruneofa.training.config import TrainConfig, recorded_arg
from pruneofa.training.distributed import Runtime
from pruneofa.training.evaluation import evaluate, model_inputs
from pruneofa.training.inputs import StageInputs, prepare_stage
from pruneofa.training.state import (
    CHECKPOINTS_DIR,
    Position,
    TrainingState,
    check_same_run,
    find_checkpoint,
    load_training_state,
    read_checkpoint_meta,
    rng_state,
    save_training_state,
    set_rng_state,
)

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    output_dir: Path
    best_epoch: int
    best_metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]]
    is_main: bool = True  # False on the other ranks of a torchrun job: only the main process reports


@dataclass
class Loop:
    """The moving parts of one run, so each function below stays short."""

    model: nn.Module  # what forward/backward run on (DDP-wrapped when distributed)
    inner: nn.Module  # the plain model: masks, saving, evaluation
    optimizer: torch.optim.Optimizer
    scheduler: Any
    masks: dict[str, torch.Tensor] | None
    max_steps: int
    epochs: int
    position: Position = field(default_factory=Position)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "score": -math.inf, "eval": {}})


def check_output_dir(cfg: TrainConfig) -> None:
    """Never clobber an earlier run silently (continuing or replacing it must be asked for), never write into a
    folder of anything else, and never over an input of this run."""
    if cfg.output_dir.exists() and not cfg.output_dir.is_dir():
        raise PruneofaError(f"--output_dir {cfg.output_dir}: exists and is not a folder; choose another path")
    resume = cfg.resume.parent if cfg.resume is not None and cfg.resume.suffix == ".pt" else cfg.resume
    inputs = {
        "--model_name_or_path": cfg.model_name_or_path,
        "--teacher_model_name_or_path": cfg.teacher_model_name_or_path,
        "--resume": resume,
        "--train_file": cfg.train_file,
        "--validation_file": cfg.validation_file,
    }
    check_not_an_input(cfg.output_dir, "--output_dir", inputs)
    kind = folder_kind(cfg.output_dir)
    if kind not in (None, "training run"):
        what = "files not made by pruneofa" if kind == "other files" else ("an " if kind == "export" else "a ") + kind
        raise PruneofaError(
            f"--output_dir {cfg.output_dir}: is not empty and holds {what}, not a training run; train into an empty "
            "or new folder (--overwrite_output_dir only replaces an earlier training run)"
        )
    earlier = kind == "training run"
    if earlier and not (cfg.overwrite_output_dir or cfg.resume_from_checkpoint):
        raise PruneofaError(
            f"--output_dir {cfg.output_dir}: holds an earlier run; continue it with --resume_from_checkpoint "
            f"{cfg.output_dir}, replace it with --overwrite_output_dir, or choose another folder"
        )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights, as in the reference."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_loader(inputs: StageInputs, cfg: TrainConfig, rt: Runtime) -> tuple[DataLoader, DistributedSampler]:
    """Per-device batches; each rank a disjoint shard, reshuffled every epoch via sampler.set_epoch."""
    sampler: DistributedSampler = DistributedSampler(
        inputs.train,
        num_replicas=rt.world_size,
        rank=rt.rank,
        shuffle=True,
        seed=cfg.seed if cfg.seed is not None else 0,
    )
    # Its own generator: creating an epoch's iterator must not draw from the global RNG, or a run continued
    # mid-epoch would see other dropout masks than the uninterrupted one.
    loader = DataLoader(
        inputs.train,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=inputs.collate,
        generator=torch.Generator().manual_seed(cfg.seed or 0),
    )
    return loader, sampler


def compute_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], inputs: StageInputs, cfg: TrainConfig, rt: Runtime
) -> torch.Tensor:
    features = model_inputs(batch, rt.device)
    labels = batch["labels"].to(rt.device)
    if inputs.live_teacher is None and inputs.teacher_logits is None:
        return student_loss(model(**features).logits, labels, inputs.task.is_regression)
    kd = DistillConfig(loss_types=cfg.loss_types, loss_weights=cfg.loss_weights, temperature=cfg.temperature)
    if inputs.live_teacher is not None:  # intermediate layers too: the teacher runs on this very batch
        layers, regression = cfg.layer_distillation, inputs.task.is_regression
        return live_distillation_loss(model, inputs.live_teacher, features, labels, kd, layers, regression)
    assert inputs.teacher_logits is not None
    teacher = inputs.teacher_logits[batch["example_id"]].to(rt.device)
    return distillation_loss(model(**features).logits, teacher, labels, kd, inputs.task.is_regression)


def optimizer_step(loop: Loop) -> None:
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    if loop.masks is not None:
        # The pattern lock: pruned weights go back to exactly zero after every update.
        sparsity.apply_masks_(loop.inner, loop.masks)
    loop.position.step += 1


def train_epoch(loop: Loop, loader: DataLoader, inputs: StageInputs, cfg: TrainConfig, rt: Runtime) -> dict[str, float]:
    loop.model.train()
    pos = loop.position
    skip = pos.micro_in_epoch  # batches this epoch already trained on before an interruption
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {pos.epoch}",
        disable=not rt.is_main,
        dynamic_ncols=True,
        leave=False,
        initial=skip,
    )
    for micro, batch in enumerate(bar):
        if micro < skip:
            continue
        loss = compute_loss(loop.model, batch, inputs, cfg, rt)
        (loss / cfg.gradient_accumulation_steps).backward()
        total_loss += loss.item() * len(batch["labels"])
        seen += len(batch["labels"])
        pos.micro_in_epoch = micro + 1
        if pos.micro_in_epoch % cfg.gradient_accumulation_steps == 0 or pos.micro_in_epoch == len(loader):
            optimizer_step(loop)
            if cfg.checkpointing_steps and pos.step % cfg.checkpointing_steps == 0 and pos.step < loop.max_steps:
                save_state(loop, cfg, rt)
        bar.set_postfix(
            loss=f"{total_loss / seen:.4f}",
            seq_s=f"{seen * rt.world_size / (time.perf_counter() - started):.1f}",
        )
        if pos.step >= loop.max_steps:
            break
    elapsed = time.perf_counter() - started
    # The loss over every rank's examples, so the logged curve does not depend on the number of processes.
    total_loss, seen_all = rt.all_reduce_sum([total_loss, float(seen)])
    return {
        "train_loss": total_loss / max(seen_all, 1.0),
        "epoch_seconds": elapsed,
        "train_seq_per_s": seen_all / max(elapsed, 1e-9),
    }


def save_state(loop: Loop, cfg: TrainConfig, rt: Runtime) -> None:
    """Every rank contributes its RNG streams; rank 0 writes. All ranks leave together."""
    rt.sync_buffers(loop.inner)
    rngs = rt.all_gather_objects(rng_state())
    if rt.is_main:
        save_training_state(
            cfg.output_dir,
            loop.inner.state_dict(),
            loop.optimizer,
            loop.scheduler,
            loop.masks,
            rngs,
            loop.position,
            {"args": cfg.to_json(), "history": loop.history, "best": loop.best},
        )
    rt.barrier()


def restore_state(loop: Loop, cfg: TrainConfig, rt: Runtime) -> None:
    assert cfg.resume_from_checkpoint is not None
    folder = find_checkpoint(cfg.resume_from_checkpoint)
    state: TrainingState = load_training_state(folder, rt.rank, rt.world_size)
    check_same_run(state.meta["args"], cfg.to_json(), folder)
    loop.inner.load_state_dict(state.model)
    loop.optimizer.load_state_dict(state.optimizer)
    loop.scheduler.load_state_dict(state.scheduler)
    if loop.masks is not None and state.masks is not None:
        loop.masks = {k: v.to(next(iter(loop.masks.values())).device) for k, v in state.masks.items()}
    set_rng_state(state.rng)
    loop.position = state.position
    loop.history = state.meta["history"]
    loop.best = state.meta["best"]
    rt.print0(f"[pruneofa] continuing from {folder}: epoch {loop.position.epoch}, step {loop.position.step}")


def check_continuation(cfg: TrainConfig) -> None:
    """Before any work, from the checkpoint's JSON alone: --resume_from_checkpoint must name a run with something
    left to do, continued with its own arguments, into a folder that will end up holding its best model."""
    if cfg.resume_from_checkpoint is None:
        return
    given = cfg.resume_from_checkpoint
    folder = find_checkpoint(given)
    saved = read_checkpoint_meta(folder)
    # A checkpoint lives in RUN/checkpoints/{last,.previous}; the best model so far is in RUN itself.
    run_dir = folder.parent.parent if folder.parent.name == CHECKPOINTS_DIR else None
    elsewhere = run_dir is None or run_dir.resolve() != cfg.output_dir.resolve()
    if elsewhere and run_dir is not None and (run_dir / META_FILE).is_file() and read_meta(run_dir).get("finished"):
        raise PruneofaError(
            f"--resume_from_checkpoint {given}: the run in {run_dir} is finished, there is nothing to continue; "
            f"to train again leave --resume_from_checkpoint out (--overwrite_output_dir replaces a run in "
            f"--output_dir, or choose a new --output_dir), to go on from its weights use --resume {run_dir}"
        )
    check_same_run(saved.get("args", {}), cfg.to_json(), folder)
    best_epoch = saved.get("best", {}).get("epoch", -1)
    if elsewhere and best_epoch >= 0 and not (cfg.output_dir / META_FILE).is_file():
        where = f"in {run_dir}" if run_dir is not None else "in the --output_dir of the run that wrote it"
        fix = f"--output_dir {run_dir}" if run_dir is not None else "that --output_dir"
        raise PruneofaError(
            f"--resume_from_checkpoint {given}: the run's best model so far (epoch {best_epoch}) is {where}, not in "
            f"--output_dir {cfg.output_dir}, which would end without it; continue with {fix}"
        )


def data_file_records(cfg: TrainConfig) -> dict[str, Any]:
    """The user's data files this run read, resolved and hashed, so an export can verify on the same dev file
    and tell when it changed."""
    files = {"train_file": cfg.train_file, "validation_file": cfg.validation_file}
    return {
        key: {"path": str(path.resolve()), "sha256": sha256_file(path)}
        for key, path in files.items()
        if path is not None and path.is_file()
    }


def build_meta(cfg: TrainConfig, inputs: StageInputs, loop: Loop, finished: bool) -> dict[str, Any]:
    report = sparsity.sparsity_report(loop.inner, inputs.prunable)
    return {
        "format": "pruneofa-train/1",
        "stage": cfg.stage,
        "finished": finished,
        "task_name": inputs.task.name,
        "label_names": list(inputs.task.label_names),
        "main_metric": inputs.task.main_metric,
        "model_name_or_path": recorded_arg("model_name_or_path", cfg.model_name_or_path),
        "resumed_from": str(inputs.resumed_from.resolve()) if inputs.resumed_from else None,
        "args": cfg.to_json(),
        "data_files": data_file_records(cfg),
        "best_epoch": loop.best["epoch"],
        "metrics": loop.best["eval"],
        "teacher_metrics": inputs.teacher_metrics,
        "history": loop.history,
        "sparsity": {
            "locked": cfg.do_prune,
            "overall_start": sparsity.overall_sparsity(inputs.sparsity_start),
            "overall": sparsity.overall_sparsity(report),
            "start": inputs.sparsity_start,
            "layers": report,
        },
        "quantization": (
            {"config": dataclasses.asdict(QuantConfig()), "layers": quant_params(loop.inner)}
            if cfg.do_quantization
            else None
        ),
        "versions": package_versions(),
    }


def save_best(loop: Loop, inputs: StageInputs, cfg: TrainConfig) -> None:
    state = loop.inner.state_dict()
    qstate = quant_state(loop.inner) if cfg.do_quantization else {}
    floats = {k: v for k, v in state.items() if k not in qstate}
    meta = build_meta(cfg, inputs, loop, finished=False)
    save_model_dir(cfg.output_dir, loop.inner, inputs.tokenizer, meta, floats, qstate or None)  # type: ignore[arg-type]


def write_metrics_log(cfg: TrainConfig, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl mirrors the history: rewritten whole, so a continued run never repeats an epoch."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    tmp = cfg.output_dir / f".{METRICS_FILE}.tmp"
    tmp.write_text(text)
    tmp.replace(cfg.output_dir / METRICS_FILE)


def end_of_epoch(loop: Loop, inputs: StageInputs, cfg: TrainConfig, rt: Runtime, stats: dict[str, float]) -> None:
    """Check the lock, evaluate on the whole dev set, keep the best model, save the training state."""
    if loop.masks is not None:
        sparsity.check_pattern(loop.inner, loop.masks)
    rt.sync_buffers(loop.inner)  # every rank evaluates and saves with the same QAT observers
    scores = evaluate(loop.inner, inputs.eval_splits, inputs.task, rt, cfg.batch_size, inputs.collate)
    score = main_metric_value(inputs.task, scores[inputs.task.eval_splits[0]])
    record = {"epoch": loop.position.epoch, "step": loop.position.step, **stats, "eval": scores}
    loop.history.append(record)
    rt.print0(f"[pruneofa] {json.dumps(record)}")
    if score > loop.best["score"]:  # every rank saw the same gathered scores, so all agree on the best
        loop.best = {"epoch": loop.position.epoch, "score": score, "eval": scores}
        if rt.is_main:
            save_best(loop, inputs, cfg)
    if rt.is_main:
        write_metrics_log(cfg, loop.history)
    loop.position = Position(epoch=loop.position.epoch + 1, micro_in_epoch=0, step=loop.position.step)
    save_state(loop, cfg, rt)


def build_loop(cfg: TrainConfig, inputs: StageInputs, steps_per_epoch: int, rt: Runtime) -> Loop:
    model: nn.Module = inputs.model
    model.to(rt.device)
    masks = sparsity.capture_masks(model, inputs.prunable) if cfg.do_prune else None
    if cfg.do_quantization and not is_quantized(model):
        prepare_qat_(model, QuantConfig())  # after capture: masks are keyed by parameter name, which QAT keeps
        model.to(rt.device)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-6
    )
    max_steps = cfg.max_train_steps or cfg.num_train_epochs * steps_per_epoch
    scheduler = get_scheduler(
        cfg.lr_scheduler_type, optimizer, num_warmup_steps=cfg.num_warmup_steps, num_training_steps=max_steps
    )
    wrapped: nn.Module = DistributedDataParallel(model) if rt.distributed else model
    return Loop(
        model=wrapped,
        inner=model,
        optimizer=optimizer,
        scheduler=scheduler,
        masks=masks,
        max_steps=max_steps,
        epochs=math.ceil(max_steps / steps_per_epoch),
    )


def start_output_dir(cfg: TrainConfig, rt: Runtime) -> None:
    if rt.is_main:
        if cfg.overwrite_output_dir and not cfg.resume_from_checkpoint and cfg.output_dir.is_dir():
            # check_output_dir made sure this is an earlier training run: replace all of it, so nothing of the old
            # run (a quantization file, a tokenizer file, checkpoints) is left beside the new one
            for entry in cfg.output_dir.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
    rt.barrier()


def train(cfg: TrainConfig, rt: Runtime) -> TrainResult:
    """Run one stage and leave the best epoch's model in cfg.output_dir."""
    check_output_dir(cfg)
    check_continuation(cfg)
    if cfg.seed is not None:
        set_seed(cfg.seed)
    inputs = prepare_stage(cfg, rt)
    loader, sampler = train_loader(inputs, cfg, rt)
    loop = build_loop(cfg, inputs, math.ceil(len(loader) / cfg.gradient_accumulation_steps), rt)
    start_output_dir(cfg, rt)
    if cfg.resume_from_checkpoint:
        restore_state(loop, cfg, rt)
    rt.print0(
        f"[pruneofa] {cfg.stage}: {len(inputs.train)} train examples, {loop.epochs} epochs, "
        f"{loop.max_steps} steps, world size {rt.world_size}, device {rt.device}"
    )
    while loop.position.epoch < loop.epochs and loop.position.step < loop.max_steps:
        sampler.set_epoch(loop.position.epoch)
        stats = train_epoch(loop, loader, inputs, cfg, rt)
        end_of_epoch(loop, inputs, cfg, rt, stats)
    if loop.masks is not None:
        sparsity.check_pattern(loop.inner, loop.masks)
    if rt.is_main:
        meta = read_meta(cfg.output_dir)
        meta.update(history=loop.history, finished=True)
        write_json_atomic(cfg.output_dir / META_FILE, meta)
    rt.barrier()
    return TrainResult(cfg.output_dir, loop.best["epoch"], loop.best["eval"], loop.history, rt.is_main)
