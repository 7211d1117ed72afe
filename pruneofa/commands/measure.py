"""`pruneofa bench` and `pruneofa gate`: speed measured side by side, and the CI verdict."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pruneofa.commands.options import check_output_folder, opt
from pruneofa.core.errors import PruneofaError


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PruneofaError(f"{flag} {text!r}: give whole numbers separated by commas, e.g. 1,8") from None


def bench(
    sparse_int8_export: Annotated[Path, typer.Argument(help="The sparse-int8 `pruneofa export` folder.")],
    baseline: Annotated[
        Path, opt("--baseline", help="The dense-FP32 export folder, or a dense training output (exported here).")
    ],
    output_dir: Annotated[Path, opt("--output_dir", help="Where bench.json, bench.md and bench.png go.")] = Path(
        "bench"
    ),
    batch_sizes: Annotated[str, opt("--batch_sizes", help="Comma-separated batch sizes.")] = "1,8",
    seq_len: Annotated[int, opt("--seq_len", help="Tokens per sequence (real text, padded/truncated).")] = 128,
    threads: Annotated[
        int | None, opt("--threads", help="Threads for every engine (default: all physical cores).")
    ] = None,
    streams: Annotated[int, opt("--streams", help="OpenVINO NUM_STREAMS (one request is in flight).")] = 1,
    engines: Annotated[
        str,
        opt(
            "--engines",
            help="Comma list of onnxruntime, openvino, openvino-sparse (the export's model.sparse.onnx on pruneofa's "
            "sparse int8 kernel inside OpenVINO; recorded as unavailable, with the reason, where the kernel is not "
            "built), torch.",
        ),
    ] = "onnxruntime,openvino,openvino-sparse,torch",
    openvino_default: Annotated[
        bool,
        opt(
            "--openvino_default/--no_openvino_default",
            help="Also time the dense export on OpenVINO at its default precision (variant openvino-default: "
            "bf16 on AMX / AVX512-BF16 CPUs, often the fastest dense engine); --no_openvino_default leaves it out. "
            "Headline speedups are over the fastest dense variant measured.",
        ),
    ] = True,
    warmup: Annotated[int, opt("--warmup", help="Untimed runs per variant before timing.")] = 3,
    iterations: Annotated[int, opt("--iterations", help="At most this many timed runs per variant...")] = 200,
    duration: Annotated[float, opt("--duration", help="...or about this many seconds per variant.")] = 10.0,
    rounds: Annotated[int, opt("--rounds", help="Interleaved rounds the runs are spread over.")] = 5,
    sparse_rate: Annotated[
        float | None,
        opt(
            "--sparse_rate",
            help="Time the int8 model with OpenVINO's sparse-weights decompression at this zero fraction "
            "(CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE, e.g. 0.5; AMX CPUs only). Off by default: it engages on "
            "pruneofa's IR but measured slower than OpenVINO's dense int8 kernel on an AMX Xeon.",
        ),
    ] = None,
    torch_model: Annotated[
        Path | None, opt("--torch_model", help="Training output for torch FP32 (default: the baseline's source).")
    ] = None,
    cache_dir: Annotated[Path | None, opt("--cache_dir", help="Built-in data cache (benchmark texts).")] = None,
    overwrite: Annotated[bool, opt("--overwrite", help="Replace bench.* files in --output_dir.")] = False,
) -> None:
    """Time sparse-int8 against dense FP32 on onnxruntime, OpenVINO and torch, interleaved in one run, and
    against the best dense baseline: the fastest dense variant per batch size (OpenVINO's default bf16 included).
    The sparse export's model.sparse.onnx is timed on pruneofa's sparse kernel too (openvino-sparse). The fastest
    engine per batch is recorded for this model on this machine ($PRUNEOFA_CACHE/engine-choice.json): predict
    and eval then run on it when no --engine is named."""
    from pruneofa import BenchConfig, benchmark
    from pruneofa.bench.report import check_outputs, write_outputs

    cfg = BenchConfig(
        batch_sizes=_int_list(batch_sizes, "--batch_sizes"),
        seq_len=seq_len,
        threads=threads,
        streams=streams,
        engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
        openvino_default=openvino_default,
        warmup=warmup,
        iterations=iterations,
        duration=duration,
        rounds=rounds,
        sparse_rate=sparse_rate,
        torch_model=torch_model,
        cache_dir=cache_dir,
    )
    check_output_folder(output_dir, "--output_dir")
    check_outputs(output_dir, overwrite)  # before minutes of measuring, not after
    with _progress_bar() as progress:
        doc = benchmark(sparse_int8_export, baseline, cfg, progress)
    _print_bench(doc)
    for path in write_outputs(doc, output_dir, overwrite):
        typer.echo(f"wrote {path}")
    from pruneofa.runtime import engine_choice

    # predict/eval then default to the fastest engine measured here (this machine's fact, kept per machine)
    choices = engine_choice.record(sparse_int8_export, doc["fastest_engine"], doc["cpu"], doc["created"], cache_dir)
    if choices is not None:
        typer.echo(f"recorded the fastest engine per batch for this model on this machine in {choices}")


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

    from pruneofa.bench import report

    console = Console(width=140)
    for title, header, rows in (
        ("best dense baseline (fastest dense per batch)", report.BEST_DENSE_HEADER, report.best_dense_rows(doc)),
        ("headline: sparse-int8 over the best dense baseline", report.HEADLINE_HEADER, report.headline_rows(doc)),
        ("fastest engine on the sparse-int8 export (--engine)", report.FASTEST_HEADER, report.fastest_rows(doc)),
        ("latency and throughput (median-based seq/s)", report.RESULT_HEADER, report.result_rows(doc)),
        ("sparse-int8 speedup (throughput ratio)", report.SPEEDUP_HEADER, report.speedup_rows(doc)),
    ):
        if rows:
            table = Table(title=title)
            for i, name in enumerate(header):
                table.add_column(name, justify="left" if i == 0 else "right")
            for row in rows:
                table.add_row(*row)
            console.print(table)
    for line in report.facts(doc):
        console.print(line, highlight=False, markup=False)


def gate(
    eval_json: Annotated[Path | None, opt("--eval", help="`pruneofa eval --output` JSON of the model to ship.")] = None,
    reference: Annotated[
        Path | None, opt("--reference", help="eval JSON of the teacher / dense model (for accuracy.max_drop).")
    ] = None,
    bench_json: Annotated[Path | None, opt("--bench", help="bench.json from `pruneofa bench`.")] = None,
    rules: Annotated[Path | None, opt("--rules", help="gates.toml (see README, 'CI gates').")] = None,
    min_accuracy: Annotated[float | None, opt("--min_accuracy", help="Floor on the main metric (0..1).")] = None,
    max_accuracy_drop: Annotated[
        float | None, opt("--max_accuracy_drop", help="Largest allowed drop below --reference (0..1).")
    ] = None,
    max_p90_ms: Annotated[
        list[str] | None, opt("--max_p90_ms", help="VARIANT=MS, e.g. openvino-int8-b1=50 (repeatable).")
    ] = None,
    max_p99_ms: Annotated[list[str] | None, opt("--max_p99_ms", help="VARIANT=MS (repeatable).")] = None,
    min_throughput: Annotated[list[str] | None, opt("--min_throughput", help="VARIANT=SEQ_PER_S (repeatable).")] = None,
    min_speedup: Annotated[
        list[str] | None, opt("--min_speedup", help="NAME=X, e.g. openvino-b1=1.5 (repeatable).")
    ] = None,
) -> None:
    """Check eval/bench results against floors and ceilings: exit 0 when every rule passes, 1 when any fails."""
    from pruneofa import GateConfig, gates
    from pruneofa import gate as gate_verb

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
    outcomes = gate_verb(
        GateConfig(
            rules={k: v for k, v in table.items() if v},
            rules_file=rules,
            eval_json=eval_json,
            reference_json=reference,
            bench_json=bench_json,
        )
    )
    _print_gate(outcomes)
    failed = gates.failures(outcomes)
    for line in failed:
        typer.echo(f"FAILED {line}", err=True)
    typer.echo(f"gate: {len(outcomes) - len(failed)} of {len(outcomes)} rules passed")
    if failed:
        raise typer.Exit(1)


def _print_gate(outcomes: list[Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="gate")
    for name in ("rule", "measured", "limit", "result", "what"):
        table.add_column(name, justify="right" if name in ("measured", "limit") else "left")
    for o in outcomes:
        sign = "<=" if o.rule.is_ceiling else ">="
        result = "[green]PASS[/green]" if o.passed else "[bold red]FAIL[/bold red]"
        # escape: rule names carry their target in brackets, which rich would take for markup and drop
        table.add_row(escape(o.rule.name), f"{o.measured:.4g}", f"{sign} {o.rule.limit:g}", result, escape(o.detail))
    Console(width=140).print(table)
