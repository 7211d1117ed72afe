"""The `pruneofa` command line: options -> config -> library call. The only place that exits.

Flags are spelled as in the reference script (`--task_name`); dashed aliases (`--task-name`) work too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

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
    method: Annotated[
        str,
        _opt(
            "--method",
            help="magnitude (one shot) or gradual (cubic schedule + hidden-state "
            "distillation from the dense model on --text_file).",
        ),
    ] = "magnitude",
    text_file: Annotated[
        str | None,
        _opt(
            "--text_file",
            help="Unlabeled text, one per line, or 'rotten_tomatoes' "
            "(built-in: plot summaries + train snippets, never dev/test).",
        ),
    ] = None,
    steps: Annotated[int, _opt("--steps", help="gradual: optimizer steps in all.")] = 600,
    prune_every: Annotated[int, _opt("--prune_every", help="gradual: steps between pruning events.")] = 20,
    learning_rate: Annotated[float, _opt("--learning_rate", help="gradual: AdamW learning rate.")] = 5e-5,
    batch_size: Annotated[int, _opt("--batch_size", help="gradual: texts per step.")] = 32,
    max_seq_length: Annotated[int, _opt("--max_seq_length", help="gradual: truncate texts to this.")] = 128,
    seed: Annotated[int, _opt("--seed", help="gradual: shuffling and init seed.")] = 0,
    overwrite_output_dir: Annotated[bool, _opt("--overwrite_output_dir", help="Replace an existing folder.")] = False,
) -> None:
    """Make a sparse pre-trained starting point from a dense model: one-shot magnitude pruning, or the gradual
    prune-once step (cubic schedule while distilling the dense model's hidden states on unlabeled text)."""
    from pruneofa.prune_once import GradualConfig
    from pruneofa.sparsify import sparsify as run_sparsify

    if method not in ("magnitude", "gradual"):
        raise PruneofaError(f"--method {method!r}: unknown; use magnitude or gradual")
    gradual = GradualConfig(target=sparsity_level, steps=steps, prune_every=prune_every, learning_rate=learning_rate,
                            batch_size=batch_size, max_seq_length=max_seq_length, seed=seed)  # fmt: skip
    report = run_sparsify(model, output_dir, sparsity_level, method, text_file, gradual, overwrite_output_dir)  # type: ignore[arg-type]
    for name, row in report["layers"].items():
        typer.echo(f"{row['sparsity']:7.2%}  {name}")
    gap = report.get("held_out_hidden_mse")
    typer.echo(
        f"overall sparsity {report['overall']:.2%} over {len(report['layers'])} layers ({method})"
        + (f", held-out hidden-state MSE vs dense {gap:.4f}" if gap is not None else "")
        + f" -> {output_dir}"
    )


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
        from pruneofa.files import write_json_atomic

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


@app.command()
def pipeline(
    recipe: Annotated[
        str | None,
        _opt("--recipe", help="A recipe .toml, or a shipped one: default (offline, built-in), sst2, mnli, qqp, qnli."),
    ] = None,
    output_dir: Annotated[Path, _opt("--output_dir", help="Where every step's folder and report.md go.")] = Path(
        "runs/pipeline"
    ),
    dry_run: Annotated[bool, _opt("--dry_run", help="Validate the recipe and list the steps; run nothing.")] = False,
    no_cuda: Annotated[bool, _opt("--no_cuda", help="Train on CPU even if CUDA is available.")] = False,
) -> None:
    """The whole flow in one command: teacher, sparse student (prune-once), stage 1, stage 2, export, eval, bench,
    gate, report. Finished steps are skipped on a re-run; changed ones are redone; a killed run continues."""
    from pruneofa.pipeline import run_pipeline
    from pruneofa.recipe import load_recipe
    from pruneofa.runtime import runtime

    chosen = load_recipe(recipe)
    with runtime(no_cuda=no_cuda) as rt:
        state = run_pipeline(chosen, output_dir, rt, dry_run=dry_run, say=lambda line: typer.echo(line, err=True))
    if dry_run:
        typer.echo(f"recipe {chosen.name!r} is valid; nothing was run")
        return
    gate = state["steps"].get("gate", {}).get("summary") or {}
    typer.echo(f"report: {output_dir / 'report.md'}")
    if gate and not gate.get("passed"):
        for line in gate.get("failures", []):
            typer.echo(f"gate failed: {line}", err=True)
        raise typer.Exit(1)


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PruneofaError(f"{flag} {text!r}: give whole numbers separated by commas, e.g. 1,8") from None


@app.command()
def bench(
    sparse_int8_export: Annotated[Path, typer.Argument(help="The sparse-int8 `pruneofa export` folder.")],
    baseline: Annotated[
        Path, _opt("--baseline", help="The dense-FP32 export folder, or a dense training output (exported here).")
    ],
    output_dir: Annotated[Path, _opt("--output_dir", help="Where bench.json, bench.md and bench.png go.")] = Path(
        "bench"
    ),
    batch_sizes: Annotated[str, _opt("--batch_sizes", help="Comma-separated batch sizes.")] = "1,8",
    seq_len: Annotated[int, _opt("--seq_len", help="Tokens per sequence (real text, padded/truncated).")] = 128,
    threads: Annotated[
        int | None, _opt("--threads", help="Threads for every engine (default: all physical cores).")
    ] = None,
    streams: Annotated[int, _opt("--streams", help="OpenVINO NUM_STREAMS (one request is in flight).")] = 1,
    engines: Annotated[str, _opt("--engines", help="Comma list of onnxruntime, openvino, torch.")] = (
        "onnxruntime,openvino,torch"
    ),
    warmup: Annotated[int, _opt("--warmup", help="Untimed runs per variant before timing.")] = 3,
    iterations: Annotated[int, _opt("--iterations", help="At most this many timed runs per variant...")] = 200,
    duration: Annotated[float, _opt("--duration", help="...or about this many seconds per variant.")] = 10.0,
    rounds: Annotated[int, _opt("--rounds", help="Interleaved rounds the runs are spread over.")] = 5,
    sparse_rate: Annotated[
        float, _opt("--sparse_rate", help="OpenVINO CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE for the int8 model.")
    ] = 0.5,
    torch_model: Annotated[
        Path | None, _opt("--torch_model", help="Training output for torch FP32 (default: the baseline's source).")
    ] = None,
    cache_dir: Annotated[Path | None, _opt("--cache_dir", help="Built-in data cache (benchmark texts).")] = None,
    overwrite: Annotated[bool, _opt("--overwrite", help="Replace bench.* files in --output_dir.")] = False,
) -> None:
    """Time sparse-int8 against dense FP32 on onnxruntime, OpenVINO and torch, interleaved in one run."""
    from pruneofa.bench import BenchConfig, run_bench
    from pruneofa.bench_report import check_outputs, write_outputs

    cfg = BenchConfig(
        batch_sizes=_int_list(batch_sizes, "--batch_sizes"),
        seq_len=seq_len,
        threads=threads,
        streams=streams,
        engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
        warmup=warmup,
        iterations=iterations,
        duration=duration,
        rounds=rounds,
        sparse_rate=sparse_rate,
        torch_model=torch_model,
        cache_dir=cache_dir,
    )
    check_outputs(output_dir, overwrite)  # before minutes of measuring, not after
    with _progress_bar() as progress:
        doc = run_bench(sparse_int8_export, baseline, cfg, progress)
    _print_bench(doc)
    for path in write_outputs(doc, output_dir, overwrite):
        typer.echo(f"wrote {path}")


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress(key, done, total) callback drawing a tqdm bar on stderr (created on the first call)."""
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(key: str, done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="bench", unit="block", file=sys.stderr))
        bars[0].set_postfix_str(key)
        bars[0].update(done - bars[0].n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _print_bench(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from pruneofa.bench_report import RESULT_HEADER, SPEEDUP_HEADER, facts, result_rows, speedup_rows

    console = Console(width=140)
    for title, header, rows in (
        ("latency and throughput (median-based seq/s)", RESULT_HEADER, result_rows(doc)),
        ("sparse-int8 speedup (throughput ratio)", SPEEDUP_HEADER, speedup_rows(doc)),
    ):
        if rows:
            table = Table(title=title)
            for i, name in enumerate(header):
                table.add_column(name, justify="left" if i == 0 else "right")
            for row in rows:
                table.add_row(*row)
            console.print(table)
    for line in facts(doc):
        console.print(line, highlight=False, markup=False)


@app.command()
def gate(
    eval_json: Annotated[
        Path | None, _opt("--eval", help="`pruneofa eval --output` JSON of the model to ship.")
    ] = None,
    reference: Annotated[
        Path | None, _opt("--reference", help="eval JSON of the teacher / dense model (for accuracy.max_drop).")
    ] = None,
    bench_json: Annotated[Path | None, _opt("--bench", help="bench.json from `pruneofa bench`.")] = None,
    rules: Annotated[Path | None, _opt("--rules", help="gates.toml (see README, 'CI gates').")] = None,
    min_accuracy: Annotated[float | None, _opt("--min_accuracy", help="Floor on the main metric (0..1).")] = None,
    max_accuracy_drop: Annotated[
        float | None, _opt("--max_accuracy_drop", help="Largest allowed drop below --reference (0..1).")
    ] = None,
    max_p90_ms: Annotated[
        list[str] | None, _opt("--max_p90_ms", help="VARIANT=MS, e.g. openvino-int8-b1=50 (repeatable).")
    ] = None,
    max_p99_ms: Annotated[list[str] | None, _opt("--max_p99_ms", help="VARIANT=MS (repeatable).")] = None,
    min_throughput: Annotated[
        list[str] | None, _opt("--min_throughput", help="VARIANT=SEQ_PER_S (repeatable).")
    ] = None,
    min_speedup: Annotated[
        list[str] | None, _opt("--min_speedup", help="NAME=X, e.g. openvino-b1=1.5 (repeatable).")
    ] = None,
) -> None:
    """Check eval/bench results against floors and ceilings: exit 0 when every rule passes, 1 when any fails."""
    from pruneofa import gates

    table: dict[str, object] = {"accuracy": {}, "latency": {}, "throughput": {}, "speedup": {}}
    accuracy = {"min": min_accuracy, "max_drop": max_accuracy_drop}
    table["accuracy"] = {k: v for k, v in accuracy.items() if v is not None}
    table["latency"] = {
        key: gates.flag_pairs(values, flag)
        for key, flag, values in (
            ("max_p90_ms", "--max_p90_ms", max_p90_ms),
            ("max_p99_ms", "--max_p99_ms", max_p99_ms),
        )
        if values
    }
    if min_throughput:
        table["throughput"] = {"min_seq_s": gates.flag_pairs(min_throughput, "--min_throughput")}
    if min_speedup:
        table["speedup"] = {"min": gates.flag_pairs(min_speedup, "--min_speedup")}
    from_flags = gates.parse_rules({k: v for k, v in table.items() if v}, "flags")
    merged = gates.merge(gates.load_rules_file(rules), from_flags) if rules else from_flags
    docs = [
        gates.read_result(path, flag) if path is not None else None
        for path, flag in ((eval_json, "--eval"), (reference, "--reference"), (bench_json, "--bench"))
    ]
    outcomes = gates.evaluate(merged, *docs)
    _print_gate(outcomes)
    failed = gates.failures(outcomes)
    for line in failed:
        typer.echo(f"FAILED {line}", err=True)
    typer.echo(f"gate: {len(outcomes) - len(failed)} of {len(outcomes)} rules passed")
    if failed:
        raise typer.Exit(1)


def _print_gate(outcomes: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gate")
    for name in ("rule", "measured", "limit", "result", "what"):
        table.add_column(name, justify="right" if name in ("measured", "limit") else "left")
    for o in outcomes:
        sign = "<=" if o.rule.is_ceiling else ">="
        result = "[green]PASS[/green]" if o.passed else "[bold red]FAIL[/bold red]"
        table.add_row(o.rule.name, f"{o.measured:.4g}", f"{sign} {o.rule.limit:g}", result, o.detail)
    Console(width=140).print(table)


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
