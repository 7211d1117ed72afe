"""`export`: a training output -> a verified deployment folder (ONNX and/or OpenVINO IR, config, tokenizer, manifest).

Precision follows the source: a stage-2 (QAT) folder exports int8, any other folder fp32. `precision="fp32"` on a
QAT folder exports its float shadow weights (the float parameters QAT trained, without fake quantization): a
dense-precision model of the same sparsity whose score can differ slightly from the QAT model's, and is verified
against that float model, not against the QAT one. `precision="int8"` on a float folder is refused.

Verified, not assumed: int8 weights in the file equal the QAT model's (same zeros per layer); onnxruntime's
optimized graph and OpenVINO's runtime model are checked to run every quantized Linear in int8; and when the dev
set is at hand, every engine is scored against torch and must be within `tolerance` of its main metric. Any
failure raises with the numbers and leaves no folder behind (see layout.staged_folder).

int8 exports also get the sparse form (model.sparse.onnx, for the `openvino-sparse` engine: sparse_export), checked
the same way where pruneofa's OpenVINO extension runs, and recorded as unverified (with the reason) where not.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.outputs import check_not_an_input
from pruneofa.export import default_precision, layout, sparse_export
from pruneofa.export.dev_data import DevData, dev_data, recorded_dev_file
from pruneofa.export.embeddings import quantize_embeddings_
from pruneofa.export.openvino_layout import weights_as_rows
from pruneofa.export.to_onnx import OPSET, Precision, export_onnx, onnx_weights, qdq_counts
from pruneofa.export.vocab import trim_folder_vocabulary_
from pruneofa.runtime.engines import (
    DEFAULT_PRECISION_CHECK,
    ENGINES,
    IR_XML,
    ONNX_FILE,
    OPENVINO_SPARSE,
    SPARSE_DEFAULT_PRECISION_CHECK,
    Engine,
    EngineName,
    open_engine,
)
from pruneofa.training.trained import TrainedFolder, open_trained

FORMATS = ("onnx", "openvino")
ExportPrecision = Literal["auto", "int8", "fp32"]
MANIFEST_FORMAT = "pruneofa-export/1"


@dataclass(frozen=True)
class ExportConfig:
    output_dir: Path
    formats: tuple[str, ...] = FORMATS
    precision: ExportPrecision = "auto"
    overwrite: bool = False
    verify: bool = True
    validation_file: Path | None = None
    max_eval_samples: int | None = None
    # 0.5 accuracy points on the 0..1 scale compute_metrics uses.
    tolerance: float = 0.005
    # Edge bundles: keep only the tokens this corpus uses (a text file, one per line, or 'rotten_tomatoes').
    trim_vocab: str | None = None
    batch_size: int = 32
    cache_dir: Path | None = None
    # int8 exports store the embedding tables as int8 + per-row scales when the dev score holds within this
    # (0.001 = 0.1 points, measured on onnxruntime against the same model with float tables).
    int8_embeddings: bool = True
    embedding_tolerance: float = 0.001
    # int8 exports: also write model.sparse.onnx (the `openvino-sparse` engine's model), checked where it runs.
    sparse_form: bool = True

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise PruneofaError(f"--format {','.join(self.formats)}: use onnx, openvino or onnx,openvino")
        if self.precision not in ("auto", "int8", "fp32"):
            raise PruneofaError(f"--precision {self.precision!r}: use auto, int8 or fp32")
        if self.tolerance < 0:
            raise PruneofaError(f"--tolerance {self.tolerance}: must be >= 0 (accuracy fraction, 0.005 = 0.5 points)")
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise PruneofaError(f"--max_eval_samples {self.max_eval_samples}: must be at least 1 (or left out)")


def choose_precision(source: TrainedFolder, requested: ExportPrecision) -> Precision:
    if requested == "int8" and not source.is_qat:
        raise ModelError(
            f"{source.folder}: never went through QAT (no quantization.safetensors / quantization record), "
            "so it cannot export int8; run stage 2 (--do_quantization) first or pass --precision fp32"
        )
    if requested == "auto":
        return "int8" if source.is_qat else "fp32"
    return requested


def export(source_dir: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Write the verified export of `source_dir` to cfg.output_dir and return its manifest."""
    source = open_trained(source_dir)
    cfg = dataclasses.replace(cfg, validation_file=cfg.validation_file or recorded_dev_file(source))
    precision = choose_precision(source, cfg.precision)
    layout.check_sources(source.folder)
    if cfg.output_dir.resolve() == source.folder.resolve():
        raise PruneofaError(f"--output_dir {cfg.output_dir}: is the source folder; pass a new folder")
    check_not_an_input(
        cfg.output_dir, "--output_dir", {"MODEL": source.folder, "--validation_file": cfg.validation_file}
    )
    with layout.staged_folder(cfg.output_dir, cfg.overwrite) as staging:
        model = source.load_model(float_only=precision == "fp32")
        layout.write_config_and_tokenizer(source.folder, staging, source.max_seq_length)
        input_names = _input_names(staging)
        onnx_path = staging / ONNX_FILE
        layers = export_onnx(model, onnx_path, precision, input_names)
        pruned = list((source.meta.get("sparsity") or {}).get("layers") or {})
        weights = _check_weights(model, onnx_path, layers, precision, pruned)
        vocab = trim_folder_vocabulary_(staging, cfg.trim_vocab) if cfg.trim_vocab else None
        dev = dev_data(
            source, staging, cfg.verify, cfg.validation_file, cfg.max_eval_samples, cfg.cache_dir, bool(cfg.trim_vocab)
        )
        embeddings = _embeddings(source, staging, precision, input_names, dev, cfg)
        sparse = _sparse_form(staging, onnx_path, precision, cfg, len(layers))
        engines_used: list[EngineName] = []
        if "openvino" in cfg.formats:
            _write_openvino(onnx_path, staging)
            engines_used.append("openvino")
        if "onnx" in cfg.formats:
            engines_used.insert(0, "onnxruntime")
        else:
            onnx_path.unlink()
        runtime = _check_engines(staging, engines_used, precision, expected=len(layers))
        sparse_runs = sparse["written"] and sparse_export.check_runtime(staging, sparse)
        verification = _verify(
            source, model, staging, engines_used, precision, input_names, dev, cfg, sparse if sparse_runs else None
        )
        if sparse_runs and verification["status"] != "passed":
            sparse_export.skip_dev_check(sparse, verification["reason"])
        manifest = _manifest(source, cfg, precision, input_names, weights, runtime, verification)
        manifest["sparse_form"] = sparse
        manifest["embeddings"] = embeddings
        manifest["vocabulary"] = vocab or {"trimmed": False}
        manifest["files"] = layout.file_entries(staging)
        layout.write_manifest(staging, manifest)
    return manifest


def _input_names(folder: Path) -> list[str]:
    """The inputs the tokenizer produces (BERT: with token_type_ids; RoBERTa: without), in graph order."""
    from transformers import AutoTokenizer

    try:
        produced = AutoTokenizer.from_pretrained(str(folder)).model_input_names
    except (OSError, ValueError) as exc:
        raise ModelError(f"the tokenizer cannot be loaded ({exc}); re-save it with tokenizer.save_pretrained") from None
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in produced]


def _check_weights(
    model: Any, onnx_path: Path, layers: list[str], precision: Precision, pruned: list[str]
) -> dict[str, Any]:
    """Per-layer zeros in the file vs the torch model's; an int8 file must hold exactly the QAT int8 weights.

    For int8 the torch reference is the fake-quantized weight the QAT model computes with: it has every pruned
    zero plus any tiny weight that rounds to 0 (|w| < scale / 2). `float_zeros` records the float count too.
    """
    from pruneofa.compress.quantization import QATLinear, int8_weight

    in_file = onnx_weights(onnx_path)
    rows: dict[str, Any] = {}
    for layer in layers:
        name = f"{layer}.weight"
        module = model.get_submodule(layer)
        float_zeros = torch_zeros = int((module.weight == 0).sum())
        found = in_file.get(name)
        if found is None:
            raise ModelError(f"export bug: {name} has no weight initializer in {onnx_path.name}")
        if precision == "int8":
            assert isinstance(module, QATLinear)
            q, _ = int8_weight(module)
            if found["dtype"] != "int8":
                raise ModelError(f"export bug: {name} is stored as {found['dtype']}, not int8")
            torch_zeros = int((q == 0).sum())
        if found["zeros"] != torch_zeros:
            raise ModelError(
                f"{name}: {found['zeros']} zeros in {onnx_path.name} but {torch_zeros} in torch; the export "
                "did not keep the sparsity pattern"
            )
        if found["zeros"] < float_zeros:  # a pruned weight that is not 0 in the file: the pattern was lost
            raise ModelError(f"{name}: {found['zeros']} zeros in {onnx_path.name} but {float_zeros} in torch")
        rows[name] = {**found, "torch_sparsity": torch_zeros / found["numel"], "float_zeros": float_zeros}
    return {
        "layers": rows,
        # Over the layers training pruned (as pruneofa.json reports it), and over every Linear in the file.
        "overall": _overall([r for n, r in rows.items() if n in pruned] or list(rows.values())),
        "overall_all_linears": _overall(list(rows.values())),
        "qdq": qdq_counts(onnx_path),
    }


def _overall(rows: list[dict[str, Any]]) -> float:
    total = sum(r["numel"] for r in rows)
    return sum(r["zeros"] for r in rows) / total if total else 0.0


def _write_openvino(onnx_path: Path, folder: Path) -> None:
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's conversion errors are plain RuntimeErrors with long text
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"OpenVINO could not convert the ONNX model ({first})") from None
    weights_as_rows(model)  # the layout OpenVINO's sparse-weights path needs (openvino_layout.py); same numbers
    # fp32 kept for float weights (embeddings, LayerNorm, biases): the IR computes what was verified.
    ov.save_model(model, str(folder / IR_XML), compress_to_fp16=False)


def _sparse_form(folder: Path, qdq: Path, precision: Precision, cfg: ExportConfig, linears: int) -> dict[str, Any]:
    if precision != "int8":
        return sparse_export.not_written("fp32 export (the sparse form runs int8 weights)")
    if not cfg.sparse_form:
        return sparse_export.not_written("--no_sparse_form")
    return sparse_export.write(folder, qdq, linears)


def _check_engines(folder: Path, engines: list[EngineName], precision: Precision, expected: int) -> dict[str, Any]:
    """What each engine runs; an int8 export must run all `expected` quantized Linears as int8 matmuls."""
    runtime: dict[str, Any] = {}
    for name in engines:
        info = open_engine(folder, name).describe()
        if precision == "int8" and info["int8_matmuls"] < expected:
            raise ModelError(
                f"{name} runs {info['int8_matmuls']} of the {expected} quantized Linears as int8 matmuls; "
                "the rest would run in float, so the export is refused (report this with the versions)"
            )
        runtime[name] = {**info, "model": Path(info["model"]).name, "quantized_linears": expected}
    return runtime


def _verify(
    source: TrainedFolder,
    model: Any,
    folder: Path,
    engines: list[EngineName],
    precision: Precision,
    input_names: list[str],
    data: DevData,
    cfg: ExportConfig,
    sparse: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dev-set metrics of torch and each engine, their agreement, and the tolerance check; with `sparse` (the
    sparse form's facts, when it runs here), the sparse form's labels against the QDQ model's too."""
    from pruneofa import scoring
    from pruneofa.data.metrics import main_metric_value

    if isinstance(data, str):
        return {"status": "skipped", "reason": data}
    splits, pad = data.engine, data.pad_id
    ref_metrics, ref_logits = scoring.score(
        source.task, data.torch, scoring.torch_forward(model), pad, cfg.batch_size, input_names
    )
    dev = next(iter(splits))
    ref_value = main_metric_value(source.task, ref_metrics[dev])
    result: dict[str, Any] = {
        "status": "passed",
        "split": dev,
        "num_examples": len(splits[dev]),
        "main_metric": source.task.main_metric,
        "tolerance": cfg.tolerance,
        "torch": {"model": "qat" if precision == "int8" else "fp32", "metrics": ref_metrics},
    }

    def score(engine: Engine) -> tuple[dict[str, Any], Any]:
        metrics, logits = scoring.score(
            source.task, splits, scoring.engine_forward(engine), pad, cfg.batch_size, input_names
        )
        return metrics, logits[dev]

    failures, dev_logits = [], {"torch": ref_logits[dev]}
    for name in engines:
        metrics, dev_logits[name] = score(open_engine(folder, name, precision="f32"))
        value = main_metric_value(source.task, metrics[dev])
        result[name] = {"metrics": metrics, **scoring.logit_agreement(ref_logits[dev], dev_logits[name])}
        if value < ref_value - cfg.tolerance:
            failures.append(f"{name} {source.task.main_metric} {value:.4f} vs torch {ref_value:.4f}")
    if failures:
        raise PruneofaError(
            f"export verification failed on {len(splits[dev])} {dev} examples: {'; '.join(failures)} "
            f"(allowed drop {cfg.tolerance:.4f}); nothing was written to {cfg.output_dir}"
        )
    if sparse is not None:
        result[OPENVINO_SPARSE] = sparse_export.check_on_dev(folder, sparse, score, dev_logits, dev, cfg.output_dir)
    if precision == "int8" and "openvino" in engines:
        result[DEFAULT_PRECISION_CHECK] = default_precision.check_on_dev(
            folder, source.task, score, dev_logits, dev, ref_value, cfg.tolerance
        )
    if precision == "int8" and OPENVINO_SPARSE in dev_logits:  # the sparse form ran (and passed) above
        result[SPARSE_DEFAULT_PRECISION_CHECK] = default_precision.check_on_dev(
            folder, source.task, score, dev_logits, dev, ref_value, cfg.tolerance, OPENVINO_SPARSE
        )
    return result


def _embeddings(
    source: TrainedFolder,
    folder: Path,
    precision: Precision,
    input_names: list[str],
    dev: DevData,
    cfg: ExportConfig,
) -> dict[str, Any]:
    """Make the embedding tables int8 (int8 exports) when the dev score on onnxruntime holds; say what was done."""
    import onnx

    from pruneofa import scoring
    from pruneofa.data.metrics import main_metric_value

    if precision != "int8" or not cfg.int8_embeddings:
        why = "fp32 export" if precision != "int8" else "--float_embeddings"
        return {"dtype": "float32", "reason": why}
    path = folder / ONNX_FILE
    proto = onnx.load(str(path))
    tables = quantize_embeddings_(proto)
    if not tables:
        return {"dtype": "float32", "reason": "no embedding Gather found in the graph"}
    facts: dict[str, Any] = {"tables": tables, "tolerance": cfg.embedding_tolerance}
    if isinstance(dev, str):
        onnx.save(proto, str(path))
        return {"dtype": "int8", "checked": False, "reason": f"not checked on dev data: {dev}", **facts}
    splits, pad = dev.engine, dev.pad_id
    split = next(iter(splits))

    def dev_score() -> float:
        engine = open_engine(folder, "onnxruntime")
        metrics, _ = scoring.score(
            source.task, splits, scoring.engine_forward(engine), pad, cfg.batch_size, input_names
        )
        return main_metric_value(source.task, metrics[split])

    with_float = dev_score()
    float_bytes = path.read_bytes()
    onnx.save(proto, str(path))
    with_int8 = dev_score()
    facts.update(checked=True, split=split, main_metric_float=with_float, main_metric_int8=with_int8)
    if with_int8 < with_float - cfg.embedding_tolerance:
        path.write_bytes(float_bytes)
        reason = f"int8 tables cost {with_float - with_int8:.4f} {source.task.main_metric} on {split}"
        return {"dtype": "float32", "reason": reason, **facts}
    return {"dtype": "int8", **facts}


def _manifest(
    source: TrainedFolder,
    cfg: ExportConfig,
    precision: Precision,
    input_names: list[str],
    weights: dict[str, Any],
    runtime: dict[str, Any],
    verification: dict[str, Any],
) -> dict[str, Any]:
    from pruneofa.core.versions import package_versions

    config = layout.read_json(source.folder / "config.json")
    meta = source.meta
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "task_name": source.task.name,
        "text_fields": list(source.task.text_keys),  # one field: single sentences; two: pairs (predict checks)
        "labels": {str(k): v for k, v in config["id2label"].items()},
        "precision": precision,
        "weights": "int8 symmetric (zero-point 0), per output channel" if precision == "int8" else "fp32",
        "activations": "uint8 per-tensor (QuantizeLinear/DequantizeLinear)" if precision == "int8" else "fp32",
        "formats": [f for f in FORMATS if f in cfg.formats],
        "onnx": {"file": ONNX_FILE, "opset": OPSET, "exporter": "torch.onnx TorchScript (dynamo=False)"}
        if "onnx" in cfg.formats
        else None,
        "openvino": {"file": IR_XML, "compress_to_fp16": False} if "openvino" in cfg.formats else None,
        "inputs": {name: {"dtype": "int64", "shape": ["batch", "sequence"]} for name in input_names},
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", len(config["id2label"])]}},
        "max_seq_length": source.max_seq_length,
        "sparsity": {k: weights[k] for k in ("overall", "overall_all_linears", "layers")},
        "qdq": weights["qdq"],
        "runtime": runtime,
        "verification": verification,
        "source": {
            "folder": str(source.folder.resolve()),
            "stage": meta.get("stage"),
            "best_epoch": meta.get("best_epoch"),
            "metrics": meta.get("metrics"),
            "teacher_metrics": meta.get("teacher_metrics"),
            "sparsity_overall": (meta.get("sparsity") or {}).get("overall"),
            "files_sha256": meta.get("files_sha256"),
        },
        "versions": package_versions(),
    }


__all__ = ["ENGINES", "ExportConfig", "choose_precision", "export"]
