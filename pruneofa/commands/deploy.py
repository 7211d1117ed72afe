"""`pruneofa export`, `eval` and `predict`: the model leaves torch, verified, and runs on an engine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pruneofa.commands.options import Task, check_output_file, check_output_folder, on_interrupt, opt
from pruneofa.core.errors import PruneofaError


def export(
    model: Annotated[Path, typer.Argument(help="A `pruneofa train` output folder (stage 2 exports int8).")],
    output_dir: Annotated[Path, opt("--output_dir", help="The export folder to create.")],
    format: Annotated[
        str, opt("--format", help="Comma-separated: onnx, openvino (both by default).")
    ] = "onnx,openvino",
    precision: Annotated[
        str,
        opt(
            "--precision",
            help="auto (int8 for a QAT model, else fp32), int8, or fp32 (a QAT model's float weights).",
        ),
    ] = "auto",
    overwrite: Annotated[bool, opt("--overwrite", help="Replace an existing --output_dir.")] = False,
    validation_file: Annotated[
        Path | None, opt("--validation_file", help="Dev file for the check (GLUE tasks offline).")
    ] = None,
    max_eval_samples: Annotated[
        int | None, opt("--max_eval_samples", help="Check on the first N dev examples only.")
    ] = None,
    tolerance: Annotated[
        float, opt("--tolerance", help="Allowed main-metric drop vs torch, as a fraction (0.005 = 0.5 points).")
    ] = 0.005,
    no_verify: Annotated[bool, opt("--no_verify", help="Skip the dev-set check (not recommended).")] = False,
    float_embeddings: Annotated[
        bool,
        opt(
            "--float_embeddings",
            help="int8 exports: keep the embedding tables float (by default they are int8 with per-row scales "
            "when the dev score holds within 0.1 point).",
        ),
    ] = False,
    trim_vocab: Annotated[
        str | None,
        opt(
            "--trim_vocab",
            help="Edge bundles: keep only the tokens this corpus uses (a text file, one text per line, or "
            "'rotten_tomatoes' for the built-in train + unlabeled text); other words become [UNK]. Off by default; "
            "the dev check reports what it costs.",
        ),
    ] = None,
    sparse_form: Annotated[
        bool,
        opt(
            "--sparse_form/--no_sparse_form",
            help="int8 exports: also write model.sparse.onnx, the model for `--engine openvino-sparse` (pruneofa's "
            "sparse int8 kernel inside OpenVINO: the zero weights are skipped, the weights stored as 4-wide groups "
            "of non-zeros), checked to predict what the QDQ model predicts on >= 99.9% of the dev set where the "
            "kernel is built (else written and marked unverified). On by default; --no_sparse_form leaves it out.",
        ),
    ] = True,
    cache_dir: Annotated[Path | None, opt("--cache_dir", help="Built-in data cache.")] = None,
) -> None:
    """Export a trained model to ONNX (QDQ int8 or fp32) and OpenVINO IR, verified against torch on the dev set.
    An int8 export is also scored on OpenVINO at its default precision (bf16 float ops on CPUs that have them):
    where that holds within --tolerance, predict, eval and bench run it so on AMX CPUs (faster), else f32."""
    from pruneofa import ExportConfig, export_model

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
        int8_embeddings=not float_embeddings,
        trim_vocab=trim_vocab,
        sparse_form=sparse_form,
    )
    check_output_folder(output_dir, "--output_dir")
    from pruneofa.data.loading import check_data_file, named_files

    if validation_file is not None and not no_verify:  # found before the model is exported, not after
        check_data_file(validation_file, f"--validation_file {validation_file}")
    with named_files({"--validation_file": validation_file}):
        manifest = export_model(model, cfg)
    for name, info in manifest["runtime"].items():
        typer.echo(f"{name}: {info['int8_matmuls']} int8 matmuls (of {info['quantized_linears']} Linears)")
    check = manifest["verification"]
    if check["status"] == "passed":
        split, metric = check["split"], check["main_metric"]
        engines = [e for e in ("torch", *manifest["runtime"], "openvino-sparse") if e in check]
        scores = {e: check[e]["metrics"][split][metric] for e in engines}
        typer.echo(f"{metric} on {check['num_examples']} {split} examples: {scores}")
        _echo_default_precision(check, split, metric)
    else:
        typer.echo(f"WARNING: the export was NOT verified on dev data: {check['reason']}", err=True)
    _echo_sparse_form(manifest["sparse_form"])
    if manifest["vocabulary"]["trimmed"]:
        v = manifest["vocabulary"]
        typer.echo(f"vocabulary trimmed to {v['rows_after']} of {v['rows_before']} tokens ({v['corpus']})")
    emb = manifest["embeddings"]
    typer.echo(f"embeddings: {emb['dtype']}" + (f" ({emb['reason']})" if emb.get("reason") else ""))
    sizes = {name: f["bytes"] for name, f in manifest["files"].items()}
    typer.echo(
        f"{manifest['precision']} export, sparsity {manifest['sparsity']['overall']:.2%} -> {output_dir} {sizes}"
    )


def _echo_default_precision(verification: dict[str, Any], split: str, metric: str) -> None:
    from pruneofa.runtime.engines import DEFAULT_PRECISION_CHECK, OPENVINO_SPARSE, SPARSE_DEFAULT_PRECISION_CHECK

    for key, engine in ((DEFAULT_PRECISION_CHECK, "openvino"), (SPARSE_DEFAULT_PRECISION_CHECK, OPENVINO_SPARSE)):
        check = verification.get(key)
        if not check:
            continue
        used = check["precision_used"]
        if check["held"]:
            score, agree = check["metrics"][split][metric], check["label_agreement_with_f32"]
            typer.echo(
                f"{engine} at its default precision ({used}): {metric} {score:.4f}, {agree:.2%} of labels as with "
                f"f32: held, so predict, eval and bench run it at {used} here"
            )
        else:
            typer.echo(f"{engine} at its default precision ({used}): not taken ({check['reason']})")


def _echo_sparse_form(sparse: dict[str, Any]) -> None:
    if not sparse["written"]:
        typer.echo(f"sparse form: not written ({sparse['reason']})")
        return
    typer.echo(
        f"sparse form: {sparse['file']}, {sparse['layers_rewritten']} of {sparse['quantized_linears']} Linears, "
        f"weights {sparse['weight_bytes']} B vs {sparse['dense_int8_bytes']} B dense int8, group fill "
        f"{sparse['group_fill']:.0%}"
    )
    check = sparse["verification"]
    if check["status"] == "passed":
        typer.echo(f"{sparse['file']}: {check['summary']}")
    else:
        typer.echo(f"WARNING: {sparse['file']}: {check['summary']}", err=True)


def bundle(
    export_dir: Annotated[Path, typer.Argument(help="A `pruneofa export` folder (checked against its manifest).")],
    output: Annotated[Path, opt("--output", "-o", help="The bundle file to write, e.g. model.tar.gz.")],
    openvino: Annotated[
        bool, opt("--openvino", help="Also ship the OpenVINO IR (both engines run the ONNX model without it).")
    ] = False,
    overwrite: Annotated[bool, opt("--overwrite", help="Replace an existing bundle file.")] = False,
) -> None:
    """Pack an export into one file to ship: model (sparse int8 weights packed), tokenizer, labels, manifest with
    the sha256 of every member, and a README. `pruneofa predict` and `pruneofa eval` take the file directly."""
    from pruneofa import BundleConfig
    from pruneofa import bundle as make_bundle

    cfg = BundleConfig(output=output, with_openvino=openvino, overwrite=overwrite)
    check_output_file(output, "--output", "model.tar.gz")
    doc = make_bundle(export_dir, cfg)
    typer.echo(f"{len(doc['members'])} members, {doc['bytes'] / 1e6:.2f} MB -> {output}")


def eval_(
    model: Annotated[
        Path,
        typer.Argument(help="A `pruneofa train` output, a `pruneofa export` folder or a bundle file (model.tar.gz)."),
    ],
    task_name: Task,
    validation_file: Annotated[Path | None, opt("--validation_file", help="Dev file (GLUE tasks offline).")] = None,
    engine: Annotated[
        str,
        opt(
            "--engine",
            help="auto, torch (training output), or for an export folder onnxruntime, openvino or openvino-sparse "
            "(OpenVINO with pruneofa's sparse int8 kernel, on the export's model.sparse.onnx). auto: torch for a "
            "training output; for an export the fastest `pruneofa bench` measured for it on this machine, else "
            "onnxruntime (the metrics JSON's engine_choice says which and why).",
        ),
    ] = "auto",
    max_eval_samples: Annotated[int | None, opt("--max_eval_samples", help="Use the first N dev examples.")] = None,
    batch_size: Annotated[int, opt("--batch_size", help="Examples per forward pass.")] = 32,
    threads: Annotated[int | None, opt("--threads", help="Inference threads (engine default if unset).")] = None,
    output: Annotated[Path | None, opt("--output", help="Also write the metrics JSON to this file.")] = None,
    cache_dir: Annotated[Path | None, opt("--cache_dir", help="Built-in data cache.")] = None,
) -> None:
    """Score a model on the task's dev set; prints the metrics JSON ({"validation": {"accuracy": ...}, ...})."""
    import json

    from pruneofa import EvalConfig, evaluate

    _check_threads(threads)
    cfg = EvalConfig(
        task_name=task_name,
        validation_file=validation_file,
        engine=engine,  # type: ignore[arg-type]  # validated by EvalConfig
        max_eval_samples=max_eval_samples,
        batch_size=batch_size,
        threads=threads,
        cache_dir=cache_dir,
    )
    if output is not None:  # before the eval, not after it
        check_output_file(output, "--output", "metrics.json")
    from pruneofa.data.loading import check_data_file, named_files

    if validation_file is not None:  # a missing or non-UTF-8 dev file is found before the model is loaded
        check_data_file(validation_file, f"--validation_file {validation_file}")
    with named_files({"--validation_file": validation_file}):
        result = evaluate(model, cfg)
    text = json.dumps(result, indent=2)
    if output is not None:
        from pruneofa.core.files import write_json_atomic

        write_json_atomic(output, result)
    typer.echo(text)


def predict(
    bundle: Annotated[
        Path, typer.Argument(help="A `pruneofa export` folder or a `pruneofa bundle` file (model.tar.gz).")
    ],
    text: Annotated[
        str | None, typer.Argument(help="Text to classify; leave out (or '-') to read JSONL from stdin.")
    ] = None,
    text_pair: Annotated[str | None, typer.Argument(help="Second text, for pair tasks.")] = None,
    engine: Annotated[
        str | None,
        opt(
            "--engine",
            help="onnxruntime, openvino, or openvino-sparse (pruneofa's sparse int8 kernel inside OpenVINO, on the "
            "export's model.sparse.onnx). Default: the fastest `pruneofa bench` measured for this model on this "
            "machine, else onnxruntime; stderr says which and why.",
        ),
    ] = None,
    batch_size: Annotated[int, opt("--batch_size", help="Rows per engine call for JSONL input.")] = 32,
    threads: Annotated[int | None, opt("--threads", help="Inference threads (engine default if unset).")] = None,
) -> None:
    """Label + probabilities as JSON lines, with only an inference engine and `tokenizers` (no torch).

    JSONL rows on stdin: {"text": ..., "text_pair": ...} or GLUE columns (sentence, premise/hypothesis, ...).
    """
    import json

    from pruneofa import Predictor
    from pruneofa.runtime.engines import ENGINES
    from pruneofa.runtime.predict import argument_rows, check_text, predict_stream, read_rows

    if engine is not None and engine not in ENGINES:
        raise PruneofaError(f"--engine {engine!r}: unknown; use one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise PruneofaError(f"--batch_size {batch_size}: must be at least 1")
    _check_threads(threads)
    from_stdin = text is None or text == "-"
    if not from_stdin:  # undecodable argv bytes: refused before the model is loaded
        check_text(text or "", "the text argument")
    if text_pair is not None:
        check_text(text_pair, "the text_pair argument")
    printed = [0]
    on_interrupt(
        lambda args: (
            f"{printed[0]} prediction(s) were printed, each a complete line, for the first rows of the input; "
            "the rows after them were not predicted: run again on those"
        )
    )
    predictor = Predictor(bundle, engine, threads, batch_size=batch_size if from_stdin else 1)
    if predictor.engine_choice.from_record:  # the engine depends on this machine's measurement: say which
        typer.echo(f"engine {predictor.engine_choice.reason}", err=True)
    if from_stdin:
        # bytes, decoded by read_rows: a line that is not UTF-8 is then named, whatever the locale's encoding
        rows = read_rows(getattr(sys.stdin, "buffer", sys.stdin), "stdin", predictor)
    else:
        rows = iter(argument_rows(predictor, text or "", text_pair))
    for prediction in predict_stream(predictor, rows, batch_size):
        typer.echo(json.dumps(prediction))
        printed[0] += 1


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise PruneofaError(f"--threads {threads}: must be at least 1 (or left out for the engine's default)")
