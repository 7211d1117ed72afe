"""The `pruneofa` command line: options -> config -> library call. The only place that exits.

Flags are spelled as in the reference script (`--task_name`); dashed aliases (`--task-name`) work too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pruneofa.errors import PruneofaError

app = typer.Typer(
    name="pruneofa",
    help=(
        "Prune Once For All: fine-tune a sparse pre-trained transformer with pattern lock + distillation "
        "(stage 1), then int8 quantization-aware training (stage 2).\n\n"
        "Typical flow: `pruneofa train` (dense teacher), `pruneofa sparsify` (sparse student), "
        "`pruneofa train --do_prune --do_distillation` (stage 1), the same with `--do_quantization --resume` "
        "(stage 2)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    local_rank: Annotated[
        int | None,
        typer.Option("--local_rank", "--local-rank", hidden=True, help="Set by torch.distributed.launch; ignored."),
    ] = None,
) -> None:
    # `python -m torch.distributed.launch ... $(which pruneofa) train ...` puts --local-rank=N before the command;
    # the rank itself is read from the LOCAL_RANK environment variable, which the launcher also sets.
    del local_rank


def _opt(*names: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    """An option under its reference spelling plus the dashed alias."""
    aliases = [n.replace("_", "-") for n in names if "_" in n]
    return typer.Option(*names, *aliases, help=help, **kwargs)  # type: ignore[arg-type]


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


Task = Annotated[
    str,
    _opt(
        "--task_name",
        help="GLUE task (cola mnli mrpc qnli qqp rte sst2 stsb wnli) or the built-in offline task rotten_tomatoes.",
    ),
]


@app.command()
def train(
    task_name: Task,
    output_dir: Annotated[Path, _opt("--output_dir", help="Where the best model, pruneofa.json and metrics.jsonl go.")],
    model_name_or_path: Annotated[
        str,
        _opt(
            "--model_name_or_path",
            help="Student: a folder, a Hub id (online) or a built-in name: minilm-l6, tiny-bert.",
        ),
    ] = "minilm-l6",
    teacher_model_name_or_path: Annotated[
        str | None, _opt("--teacher_model_name_or_path", help="Dense teacher fine-tuned on the task.")
    ] = None,
    train_file: Annotated[Path | None, _opt("--train_file", help="csv/tsv/json/jsonl with the GLUE columns.")] = None,
    validation_file: Annotated[Path | None, _opt("--validation_file", help="Dev file, same format.")] = None,
    max_seq_length: Annotated[int, _opt("--max_seq_length", help="Truncate sequences to this many tokens.")] = 128,
    pad_to_max_length: Annotated[
        bool, _opt("--pad_to_max_length", help="Pad every batch to --max_seq_length (else dynamic padding).")
    ] = False,
    use_slow_tokenizer: Annotated[bool, _opt("--use_slow_tokenizer", help="Use the Python tokenizer.")] = False,
    batch_size: Annotated[
        int,
        _opt(
            "--batch_size",
            "--per_device_train_batch_size",
            help="Batch size per device (per process under DDP).",
        ),
    ] = 8,
    learning_rate: Annotated[float, _opt("--learning_rate", help="Peak learning rate (AdamW).")] = 5e-5,
    weight_decay: Annotated[float, _opt("--weight_decay", help="AdamW weight decay (not on bias/LayerNorm).")] = 0.0,
    num_train_epochs: Annotated[int, _opt("--num_train_epochs", help="Epochs; dev eval after each.")] = 3,
    max_train_steps: Annotated[int | None, _opt("--max_train_steps", help="Overrides the epoch count.")] = None,
    gradient_accumulation_steps: Annotated[
        int, _opt("--gradient_accumulation_steps", help="Micro-batches per optimizer step.")
    ] = 1,
    lr_scheduler_type: Annotated[str, _opt("--lr_scheduler_type", help="linear, cosine, constant, ...")] = "linear",
    num_warmup_steps: Annotated[int, _opt("--num_warmup_steps", help="Warm-up steps of the schedule.")] = 0,
    resume: Annotated[
        Path | None,
        _opt(
            "--resume",
            help="Weights of the previous stage: its --output_dir (or the reference's <dir>/best_model.pt).",
        ),
    ] = None,
    seed: Annotated[int | None, _opt("--seed", help="Random seed for reproducible runs.")] = None,
    do_prune: Annotated[
        bool, _opt("--do_prune", help="Pattern lock: keep every zero of the encoder Linears zero.")
    ] = False,
    do_eval: Annotated[bool, _opt("--do_eval", help="Accepted for compatibility; dev eval runs every epoch.")] = True,
    do_quantization: Annotated[
        bool, _opt("--do_quantization", help="int8 quantization-aware training (stage 2).")
    ] = False,
    do_distillation: Annotated[
        bool, _opt("--do_distillation", help="Knowledge distillation from the teacher.")
    ] = False,
    temperature: Annotated[float, _opt("--temperature", help="Distillation temperature T.")] = 1.0,
    loss_types: Annotated[
        tuple[str, str], _opt("--loss_types", help="Hard-label loss and distillation loss, e.g. CE KL.")
    ] = ("CE", "KL"),
    loss_weights: Annotated[
        tuple[float, float],
        _opt("--loss_weights", help="Weights of the two losses; 0 1 is pure distillation."),
    ] = (0.5, 0.5),
    no_cuda: Annotated[bool, _opt("--no_cuda", help="Train on CPU even if CUDA is available.")] = False,
    local_rank: Annotated[
        int | None,
        _opt(
            "--local_rank",
            help="Set by torch.distributed.launch; the LOCAL_RANK environment variable wins.",
            hidden=True,
        ),
    ] = None,
    ddp_backend: Annotated[str | None, _opt("--ddp_backend", help="gloo or nccl (default: by device).")] = None,
    max_train_samples: Annotated[
        int | None, _opt("--max_train_samples", help="Use the first N train examples.")
    ] = None,
    max_eval_samples: Annotated[int | None, _opt("--max_eval_samples", help="Use the first N dev examples.")] = None,
    overwrite_output_dir: Annotated[
        bool, _opt("--overwrite_output_dir", help="Replace a finished run in --output_dir.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        _opt(
            "--cache_dir",
            help="Built-in data and teacher logits cache (default $PRUNEOFA_CACHE or ~/.cache/pruneofa).",
        ),
    ] = None,
    checkpointing_steps: Annotated[
        int | None,
        _opt(
            "--checkpointing_steps",
            help="Also save the training state every N optimizer steps (it is always saved each epoch).",
        ),
    ] = None,
    resume_from_checkpoint: Annotated[
        Path | None,
        _opt(
            "--resume_from_checkpoint",
            help="Continue an "
            "interrupted run: its --output_dir (or a checkpoint "
            "folder). Same arguments as the original run.",
        ),
    ] = None,
) -> None:
    """Fine-tune one stage: plain (teacher), stage 1 (--do_prune --do_distillation) or stage 2 (+ --do_quantization
    --resume STAGE1_DIR)."""
    from pruneofa.config import TrainConfig
    from pruneofa.runtime import runtime
    from pruneofa.train import train as run_train

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
        no_cuda=no_cuda,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        overwrite_output_dir=overwrite_output_dir,
        cache_dir=cache_dir,
        checkpointing_steps=checkpointing_steps,
        resume_from_checkpoint=resume_from_checkpoint,
    )
    with runtime(no_cuda=no_cuda, backend=ddp_backend) as rt:
        result = run_train(cfg, rt)
    if rt.is_main:
        typer.echo(f"best epoch {result.best_epoch}: {result.best_metrics} -> {result.output_dir}")


@app.command()
def sparsify(
    model: Annotated[str, typer.Argument(help="Dense model: folder, Hub id or built-in name (minilm-l6, tiny-bert).")],
    output_dir: Annotated[Path, _opt("--output_dir", help="Where the sparse model folder is written.")],
    sparsity_level: Annotated[float, _opt("--sparsity", help="Fraction of zeros per layer, e.g. 0.9.")] = 0.9,
    overwrite_output_dir: Annotated[bool, _opt("--overwrite_output_dir", help="Replace an existing folder.")] = False,
) -> None:
    """One-shot magnitude pruning of the encoder Linears and pooler: a sparse starting point from a dense model."""
    from pruneofa.sparsify import sparsify_one_shot

    report = sparsify_one_shot(model, output_dir, sparsity_level, overwrite_output_dir)
    for name, row in report["layers"].items():
        typer.echo(f"{row['sparsity']:7.2%}  {name}")
    typer.echo(f"overall sparsity {report['overall']:.2%} over {len(report['layers'])} layers -> {output_dir}")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A `pruneofa train` output folder (stage 2 exports int8).")],
    output_dir: Annotated[Path, _opt("--output_dir", help="The export folder to create.")],
    format: Annotated[
        str, _opt("--format", help="Comma-separated: onnx, openvino (both by default).")
    ] = "onnx,openvino",
    precision: Annotated[
        str,
        _opt(
            "--precision",
            help="auto (int8 for a QAT model, else fp32), int8, or fp32 (a QAT model's float weights).",
        ),
    ] = "auto",
    overwrite: Annotated[bool, _opt("--overwrite", help="Replace an existing --output_dir.")] = False,
    validation_file: Annotated[
        Path | None, _opt("--validation_file", help="Dev file for the check (GLUE tasks offline).")
    ] = None,
    max_eval_samples: Annotated[
        int | None, _opt("--max_eval_samples", help="Check on the first N dev examples only.")
    ] = None,
    tolerance: Annotated[
        float, _opt("--tolerance", help="Allowed main-metric drop vs torch, as a fraction (0.005 = 0.5 points).")
    ] = 0.005,
    no_verify: Annotated[bool, _opt("--no_verify", help="Skip the dev-set check (not recommended).")] = False,
    cache_dir: Annotated[Path | None, _opt("--cache_dir", help="Built-in data cache.")] = None,
) -> None:
    """Export a trained model to ONNX (QDQ int8 or fp32) and OpenVINO IR, verified against torch on the dev set."""
    from pruneofa.export import ExportConfig
    from pruneofa.export import export as run_export

    cfg = ExportConfig(
        output_dir=output_dir,
        formats=tuple(f.strip() for f in format.split(",") if f.strip()),
        precision=precision,  # type: ignore[arg-type]  # validated by ExportConfig
        overwrite=overwrite,
        verify=not no_verify,
        validation_file=validation_file,
        max_eval_samples=max_eval_samples,
        tolerance=tolerance,
        cache_dir=cache_dir,
    )
    manifest = run_export(model, cfg)
    for name, info in manifest["runtime"].items():
        typer.echo(f"{name}: {info['int8_matmuls']} int8 matmuls (of {info['quantized_linears']} Linears)")
    check = manifest["verification"]
    if check["status"] == "passed":
        split, metric = check["split"], check["main_metric"]
        scores = {e: check[e]["metrics"][split][metric] for e in ("torch", *manifest["runtime"])}
        typer.echo(f"{metric} on {check['num_examples']} {split} examples: {scores}")
    else:
        typer.echo(f"verification skipped: {check['reason']}")
    sizes = {name: f["bytes"] for name, f in manifest["files"].items()}
    typer.echo(
        f"{manifest['precision']} export, sparsity {manifest['sparsity']['overall']:.2%} -> {output_dir} {sizes}"
    )


@app.command("eval")
def eval_(
    model: Annotated[Path, typer.Argument(help="A `pruneofa train` output or a `pruneofa export` folder.")],
    task_name: Task,
    validation_file: Annotated[Path | None, _opt("--validation_file", help="Dev file (GLUE tasks offline).")] = None,
    engine: Annotated[
        str, _opt("--engine", help="auto, torch (training output), onnxruntime or openvino (export folder).")
    ] = "auto",
    max_eval_samples: Annotated[int | None, _opt("--max_eval_samples", help="Use the first N dev examples.")] = None,
    batch_size: Annotated[int, _opt("--batch_size", help="Examples per forward pass.")] = 32,
    threads: Annotated[int | None, _opt("--threads", help="Inference threads (engine default if unset).")] = None,
    output: Annotated[Path | None, _opt("--output", help="Also write the metrics JSON to this file.")] = None,
    cache_dir: Annotated[Path | None, _opt("--cache_dir", help="Built-in data cache.")] = None,
) -> None:
    """Score a model on the task's dev set; prints the metrics JSON ({"validation": {"accuracy": ...}, ...})."""
    import json

    from pruneofa.scoring import EvalConfig, evaluate_folder

    cfg = EvalConfig(
        task_name=task_name,
        validation_file=validation_file,
        engine=engine,  # type: ignore[arg-type]  # validated by EvalConfig
        max_eval_samples=max_eval_samples,
        batch_size=batch_size,
        threads=threads,
        cache_dir=cache_dir,
    )
    result = evaluate_folder(model, cfg)
    text = json.dumps(result, indent=2)
    if output is not None:
        from pruneofa.checkpoint import write_json_atomic

        write_json_atomic(output, result)
    typer.echo(text)


@app.command()
def predict(
    bundle: Annotated[Path, typer.Argument(help="A `pruneofa export` folder.")],
    text: Annotated[
        str | None, typer.Argument(help="Text to classify; leave out (or '-') to read JSONL from stdin.")
    ] = None,
    text_pair: Annotated[str | None, typer.Argument(help="Second text, for pair tasks.")] = None,
    engine: Annotated[
        str | None, _opt("--engine", help="onnxruntime (default when model.onnx exists) or openvino.")
    ] = None,
    batch_size: Annotated[int, _opt("--batch_size", help="Rows per engine call for JSONL input.")] = 32,
    threads: Annotated[int | None, _opt("--threads", help="Inference threads (engine default if unset).")] = None,
) -> None:
    """Label + probabilities as JSON lines, with only an inference engine and `tokenizers` (no torch).

    JSONL rows on stdin: {"text": ..., "text_pair": ...} or GLUE columns (sentence, premise/hypothesis, ...).
    """
    import json

    from pruneofa.engines import ENGINES
    from pruneofa.predict import Predictor, predict_stream, read_rows

    if engine is not None and engine not in ENGINES:
        raise PruneofaError(f"--engine {engine!r}: unknown; use one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise PruneofaError(f"--batch_size {batch_size}: must be at least 1")
    predictor = Predictor(bundle, engine, threads)
    rows = iter([(text, text_pair)]) if text is not None and text != "-" else read_rows(sys.stdin)
    for prediction in predict_stream(predictor, rows, batch_size):
        typer.echo(json.dumps(prediction))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, prog_name="pruneofa")
    except PruneofaError as exc:
        from pruneofa.runtime import rank_label

        typer.echo(f"error: {rank_label()}{exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
