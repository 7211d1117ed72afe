"""`pruneofa train`: one stage of fine-tuning (plain, stage 1 or stage 2), single process or under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pruneofa.commands.options import Task, check_output_folder, on_interrupt, opt


def train(
    task_name: Task,
    output_dir: Annotated[Path, opt("--output_dir", help="Where the best model, pruneofa.json and metrics.jsonl go.")],
    model_name_or_path: Annotated[
        str,
        opt(
            "--model_name_or_path",
            help="Student: a folder, a Hub id (online) or a built-in name: minilm-l6, tiny-bert.",
        ),
    ] = "minilm-l6",
    teacher_model_name_or_path: Annotated[
        str | None, opt("--teacher_model_name_or_path", help="Dense teacher fine-tuned on the task.")
    ] = None,
    train_file: Annotated[Path | None, opt("--train_file", help="csv/tsv/json/jsonl with the GLUE columns.")] = None,
    validation_file: Annotated[Path | None, opt("--validation_file", help="Dev file, same format.")] = None,
    max_seq_length: Annotated[int, opt("--max_seq_length", help="Truncate sequences to this many tokens.")] = 128,
    pad_to_max_length: Annotated[
        bool, opt("--pad_to_max_length", help="Pad every batch to --max_seq_length (else dynamic padding).")
    ] = False,
    use_slow_tokenizer: Annotated[bool, opt("--use_slow_tokenizer", help="Use the Python tokenizer.")] = False,
    batch_size: Annotated[
        int,
        opt(
            "--batch_size",
            "--per_device_train_batch_size",
            help="Batch size per device (per process under DDP).",
        ),
    ] = 8,
    learning_rate: Annotated[float, opt("--learning_rate", help="Peak learning rate (AdamW).")] = 5e-5,
    weight_decay: Annotated[float, opt("--weight_decay", help="AdamW weight decay (not on bias/LayerNorm).")] = 0.0,
    num_train_epochs: Annotated[int, opt("--num_train_epochs", help="Epochs; dev eval after each.")] = 3,
    max_train_steps: Annotated[int | None, opt("--max_train_steps", help="Overrides the epoch count.")] = None,
    gradient_accumulation_steps: Annotated[
        int, opt("--gradient_accumulation_steps", help="Micro-batches per optimizer step.")
    ] = 1,
    lr_scheduler_type: Annotated[str, opt("--lr_scheduler_type", help="linear, cosine, constant, ...")] = "linear",
    num_warmup_steps: Annotated[int, opt("--num_warmup_steps", help="Warm-up steps of the schedule.")] = 0,
    resume: Annotated[
        Path | None,
        opt(
            "--resume",
            help="Weights of the previous stage: its --output_dir (or the reference's <dir>/best_model.pt).",
        ),
    ] = None,
    seed: Annotated[int | None, opt("--seed", help="Random seed for reproducible runs.")] = None,
    do_prune: Annotated[
        bool, opt("--do_prune", help="Pattern lock: keep every zero of the encoder Linears zero.")
    ] = False,
    do_eval: Annotated[bool, opt("--do_eval", help="Accepted for compatibility; dev eval runs every epoch.")] = True,
    do_quantization: Annotated[
        bool, opt("--do_quantization", help="int8 quantization-aware training (stage 2).")
    ] = False,
    do_distillation: Annotated[bool, opt("--do_distillation", help="Knowledge distillation from the teacher.")] = False,
    temperature: Annotated[float, opt("--temperature", help="Distillation temperature T.")] = 1.0,
    loss_types: Annotated[
        tuple[str, str], opt("--loss_types", help="Hard-label loss and distillation loss, e.g. CE KL.")
    ] = ("CE", "KL"),
    loss_weights: Annotated[
        tuple[float, float],
        opt("--loss_weights", help="Weights of the two losses; 0 1 is pure distillation."),
    ] = (0.5, 0.5),
    hidden_distill_weight: Annotated[
        float,
        opt(
            "--hidden_distill_weight",
            help="Also match the teacher's hidden states, layer by layer (MSE on real tokens, embeddings included; "
            "TinyBERT), with this weight added to --loss_weights' losses. 0 = off. Needs a teacher with the "
            "student's number of layers and hidden size; the teacher then runs on every batch instead of once.",
        ),
    ] = 0.0,
    attention_distill_weight: Annotated[
        float,
        opt(
            "--attention_distill_weight",
            help="Also match the teacher's attention maps, per layer and head (KL on real tokens; MiniLM), with "
            "this weight. 0 = off. Needs the teacher's shape (layers, hidden size, heads) and the slower eager "
            "attention.",
        ),
    ] = 0.0,
    no_cuda: Annotated[bool, opt("--no_cuda", help="Train on CPU even if CUDA is available.")] = False,
    local_rank: Annotated[
        int | None,
        opt(
            "--local_rank",
            help="Set by torch.distributed.launch; the LOCAL_RANK environment variable wins.",
            hidden=True,
        ),
    ] = None,
    ddp_backend: Annotated[
        str | None, opt("--ddp_backend", help="gloo, nccl or mpi (default: nccl on CUDA, gloo on CPU).")
    ] = None,
    max_train_samples: Annotated[int | None, opt("--max_train_samples", help="Use the first N train examples.")] = None,
    max_eval_samples: Annotated[int | None, opt("--max_eval_samples", help="Use the first N dev examples.")] = None,
    overwrite_output_dir: Annotated[
        bool, opt("--overwrite_output_dir", help="Replace a finished run in --output_dir.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        opt(
            "--cache_dir",
            help="Built-in data and teacher logits cache (default $PRUNEOFA_CACHE or ~/.cache/pruneofa).",
        ),
    ] = None,
    checkpointing_steps: Annotated[
        int | None,
        opt(
            "--checkpointing_steps",
            help="Also save the training state every N optimizer steps (it is always saved each epoch).",
        ),
    ] = None,
    resume_from_checkpoint: Annotated[
        Path | None,
        opt(
            "--resume_from_checkpoint",
            help="Continue an "
            "interrupted run: its --output_dir (or a checkpoint "
            "folder). Same arguments as the original run.",
        ),
    ] = None,
) -> None:
    """Fine-tune one stage: plain (teacher), stage 1 (--do_prune --do_distillation) or stage 2 (+ --do_quantization
    --resume STAGE1_DIR)."""
    from pruneofa import TrainConfig
    from pruneofa import train as run_train
    from pruneofa.data.loading import check_data_file, named_files
    from pruneofa.training.distributed import check_backend

    cfg = TrainConfig(
        task_name=task_name,
        output_dir=output_dir,
        model_name_or_path=model_name_or_path,
        teacher_model_name_or_path=teacher_model_name_or_path,
        train_file=train_file,
        validation_file=validation_file,
        max_seq_length=max_seq_length,
        pad_to_max_length=pad_to_max_length,
        use_slow_tokenizer=use_slow_tokenizer,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        num_train_epochs=num_train_epochs,
        max_train_steps=max_train_steps,
        gradient_accumulation_steps=gradient_accumulation_steps,
        lr_scheduler_type=lr_scheduler_type,
        num_warmup_steps=num_warmup_steps,
        resume=resume,
        seed=seed,
        do_prune=do_prune,
        do_eval=do_eval,
        do_quantization=do_quantization,
        do_distillation=do_distillation,
        temperature=temperature,
        loss_types=loss_types,
        loss_weights=loss_weights,
        hidden_distill_weight=hidden_distill_weight,
        attention_distill_weight=attention_distill_weight,
        no_cuda=no_cuda,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        overwrite_output_dir=overwrite_output_dir,
        cache_dir=cache_dir,
        checkpointing_steps=checkpointing_steps,
        resume_from_checkpoint=resume_from_checkpoint,
    )
    backend = check_backend(ddp_backend)
    check_output_folder(output_dir, "--output_dir")
    for flag, path in (("--train_file", train_file), ("--validation_file", validation_file)):
        if path is not None:  # a missing or non-UTF-8 file is found before any model is loaded
            check_data_file(path, f"{flag} {path}")
    on_interrupt(lambda args: _interrupted(output_dir, args))
    with named_files({"--train_file": train_file, "--validation_file": validation_file}):
        result = run_train(cfg, ddp_backend=backend)
    if result.is_main:
        typer.echo(f"best epoch {result.best_epoch}: {result.best_metrics} -> {result.output_dir}")


_RESUME_FLAGS = ("--resume_from_checkpoint", "--resume-from-checkpoint")


def _interrupted(output_dir: Path, args: list[str]) -> str:
    """What Ctrl-C left: the training state of the last checkpoint, and the command that continues from it."""
    import shlex

    from pruneofa.core.errors import ModelError
    from pruneofa.training.state import find_checkpoint

    try:
        checkpoint = find_checkpoint(output_dir)
    except ModelError:
        return (
            f"no training state was saved yet in {output_dir} (one is saved every epoch and every "
            "--checkpointing_steps steps); run the same command again to start over"
        )
    resuming = any(a.split("=", 1)[0] in _RESUME_FLAGS for a in args)
    command = shlex.join(["pruneofa", *args, *([] if resuming else ["--resume_from_checkpoint", str(output_dir)])])
    how = "the same command" if resuming else f"the same arguments plus --resume_from_checkpoint {output_dir}"
    return f"the training state is saved in {checkpoint}; continue with {how}: {command}"
