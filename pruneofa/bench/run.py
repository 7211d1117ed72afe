"""`bench`: a sparse-int8 export against its dense-FP32 baseline on onnxruntime, OpenVINO and torch eager, timed
side by side in one interleaved run -> a result dict (what bench.json holds). No pass/fail here: that is `gate`.

The dense export also runs on OpenVINO at its default precision (`openvino-default`: bf16 on AMX / AVX512-BF16
CPUs), and per batch size the fastest dense variant is the best dense baseline that headline speedups are over
(`compare`): a sparse model is only worth shipping if it beats the best this machine does without it. The sparse
export's model.sparse.onnx runs on `openvino-sparse` (pruneofa's sparse int8 kernel inside OpenVINO) beside its
QDQ model on the dense int8 engines; `fastest_engine` names the fastest engine on the sparse export per batch.

Honesty rules: a variant that cannot run (no IR in a folder, no torch weights, the sparse kernel not built here)
is listed under `not_measured` with the reason, never estimated; speedups are ratios of the throughputs reported
beside them; whether OpenVINO's sparse-weights kernel ran is read from its runtime model, with the CPU flags that
explain why not. Every model measured is of the sparse export's task (the `task_name` its manifest, or a training
folder's pruneofa.json, records).
"""

from __future__ import annotations

import contextlib
import datetime
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pruneofa.bench import inputs as bench_inputs
from pruneofa.bench import runners as bench_runners
from pruneofa.bench.compare import best_dense, best_dense_speedups, fastest_engine, speedups
from pruneofa.bench.timing import StopRule, Variant, latency_stats, time_variants
from pruneofa.core import hardware
from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.files import read_json
from pruneofa.runtime.engines import (
    IR_XML,
    ONNX_FILE,
    OPENVINO_SPARSE,
    SPARSE_ONNX,
    sparse_unavailable,
    verified_precision,
)
from pruneofa.runtime.manifest import read_manifest, verify_export

BENCH_FORMAT = "pruneofa-bench/1"
BENCH_ENGINES = ("onnxruntime", "openvino", OPENVINO_SPARSE, "torch")
_MODEL_FILES: dict[str, str] = {"onnxruntime": ONNX_FILE, "openvino": IR_XML, OPENVINO_SPARSE: SPARSE_ONNX}
SPARSE_KERNEL = f"{OPENVINO_SPARSE}-int8"  # the model key of the sparse form on pruneofa's kernel
_HOW: dict[str, str] = {OPENVINO_SPARSE: " (`pruneofa export` writes it for int8 models unless --no_sparse_form)"}


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_len: int = 128
    threads: int | None = None  # None: all physical cores
    streams: int = 1
    engines: tuple[str, ...] = BENCH_ENGINES
    openvino_default: bool = True  # also the dense export on OpenVINO at its default precision (openvino-default)
    warmup: int = 3
    iterations: int = 200
    duration: float = 10.0
    rounds: int = 5
    # OpenVINO's sparse-weights decompression for the int8 model: off unless asked for. It engages only on AMX
    # CPUs (with the [N, K] weight layout `export` writes), and there it measured 0.90-0.98x of OpenVINO's dense
    # int8 kernel on BERT-base (NOTES.md, issue 14): on by default, it would slow the int8 row it stands for.
    sparse_rate: float | None = None
    torch_model: Path | None = None
    cache_dir: Path | None = None
    distinct_batches: int = 8

    def __post_init__(self) -> None:
        unknown = [e for e in self.engines if e not in BENCH_ENGINES]
        if unknown or not self.engines:
            raise PruneofaError(f"--engines {','.join(self.engines)}: use a comma list of {', '.join(BENCH_ENGINES)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise PruneofaError(f"--batch_sizes {self.batch_sizes}: give positive sizes, e.g. 1,8")
        for flag, value in (("--seq_len", self.seq_len), ("--streams", self.streams), ("--rounds", self.rounds)):
            if value < 1:
                raise PruneofaError(f"{flag} {value}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise PruneofaError(f"--threads {self.threads}: must be at least 1 (or left out for all physical cores)")
        if self.iterations < 1 or self.duration <= 0 or self.warmup < 0:
            raise PruneofaError("--iterations must be >= 1, --duration > 0 seconds and --warmup >= 0")
        if self.sparse_rate is not None and not 0.0 <= self.sparse_rate <= 1.0:
            raise PruneofaError(f"--sparse_rate {self.sparse_rate}: a zero fraction in [0, 1], e.g. 0.5")

    def stop_rule(self) -> StopRule:
        return StopRule(self.iterations, self.duration, min(self.rounds, self.iterations), self.warmup)


@dataclass(frozen=True)
class Models:
    """The two export folders, and the torch source (None: torch not measured, `torch_note` says why)."""

    sparse: Path
    baseline: Path
    torch_source: Path | None
    torch_note: str
    baseline_given: Path  # what the user passed: an export folder, or a training folder bench exported


def export_folder(path: Path, role: str, precision: str) -> dict[str, Any]:
    """The manifest of a `pruneofa export` folder of the expected precision, or a one-line error."""
    if not path.exists():
        raise ModelError(f"{role} {path}: no such folder; pass a folder written by `pruneofa export`")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is None:
        raise ModelError(f"{role} {path}: no manifest.json, so not a `pruneofa export` folder; export it first")
    if manifest.get("precision") != precision:
        raise ModelError(
            f"{role} {path}: is a {manifest.get('precision')} export; {role} must be the {precision} one"
            + (" (export the stage-2 model)" if precision == "int8" else " (export the dense/teacher model)")
        )
    verify_export(path)  # time the files the export verified, not whatever is there now
    return manifest


def recorded_task(doc: dict[str, Any], what: str, fix: str) -> str:
    """The `task_name` an export manifest or a training folder's pruneofa.json records."""
    task = doc.get("task_name")
    if not isinstance(task, str) or not task.strip():
        raise ModelError(f"{what}: records no task_name, so its task is unknown; {fix}")
    return task


def training_task(folder: Path, role: str) -> str:
    """The task a `pruneofa train` output was trained on (its pruneofa.json)."""
    from pruneofa.models.folder import META_FILE, read_meta

    return recorded_task(read_meta(folder), f"{role} {folder / META_FILE}", "re-run that training stage")


def same_task(benched: tuple[str, str], other: tuple[str, str]) -> None:
    """(what, task) of the sparse export and of a model it is measured against: one task, or a refusal."""
    (what, task), (other_what, other_task) = benched, other
    if task.strip().lower() != other_task.strip().lower():
        raise ModelError(
            f"{what} is task {task!r} but {other_what} is task {other_task!r}; bench it against a dense model "
            f"trained on {task!r} (its export or its `pruneofa train` output)"
        )


def torch_source(
    manifest: dict[str, Any], override: Path | None, benched: tuple[str, str] | None = None
) -> tuple[Path | None, str]:
    """Where torch's float weights come from: --torch_model, else the baseline's recorded training folder.

    Either must be of the task `benched` names ((what, task); default: the baseline manifest's): a --torch_model
    of another task is refused, a recorded folder since reused for another task is not measured (note says why).
    """
    from pruneofa.training.trained import is_training_output

    benched = benched or ("--baseline", recorded_task(manifest, "--baseline", "re-export it with `pruneofa export`"))
    if override is not None:
        if not is_training_output(override):
            raise ModelError(f"--torch_model {override}: not a `pruneofa train` output (no pruneofa.json)")
        same_task(benched, (f"--torch_model {override}", training_task(override, "--torch_model")))
        return override, "--torch_model"
    recorded = (manifest.get("source") or {}).get("folder")
    if recorded and is_training_output(Path(recorded)):
        task = training_task(Path(recorded), "the baseline's source folder")
        if task.strip().lower() != benched[1].strip().lower():
            return None, (
                f"no torch weights: the baseline's source folder {recorded!r} now holds a {task!r} model, not "
                f"{benched[1]!r}; pass --torch_model TRAIN_DIR"
            )
        return Path(recorded), "the baseline manifest's source folder"
    return None, f"no torch weights: the baseline's source folder {recorded!r} is gone; pass --torch_model TRAIN_DIR"


@contextlib.contextmanager
def resolve_models(sparse: Path, baseline: Path, cfg: BenchConfig) -> Iterator[tuple[Models, dict[str, Any]]]:
    """Both exports checked, of one task; a dense training output as --baseline is exported to fp32 in a temp
    folder first (after its task is checked, not minutes later)."""
    from pruneofa.training.trained import is_training_output

    manifests = {"sparse": export_folder(sparse, "SPARSE_INT8_EXPORT", "int8")}
    benched = (f"SPARSE_INT8_EXPORT {sparse}", _export_task(manifests["sparse"], "SPARSE_INT8_EXPORT", sparse))
    with tempfile.TemporaryDirectory(prefix="pruneofa-bench-") as tmp:
        exported = baseline.is_dir() and is_training_output(baseline)
        if exported:
            same_task(benched, (f"--baseline {baseline}", training_task(baseline, "--baseline")))
            from pruneofa.export.exporter import ExportConfig, export

            target = Path(tmp) / "baseline-fp32"
            export(baseline, ExportConfig(output_dir=target, precision="fp32", verify=False))
            baseline_folder = target
        else:
            baseline_folder = baseline
        manifests["baseline"] = export_folder(baseline_folder, "--baseline", "fp32")
        same_task(benched, (f"--baseline {baseline}", _export_task(manifests["baseline"], "--baseline", baseline)))
        override = cfg.torch_model or (baseline if exported else None)
        source, note = torch_source(manifests["baseline"], override, benched)
        if source is None and "torch" in cfg.engines:
            note = f"not measured: {note}"
        yield Models(sparse, baseline_folder, source, note, baseline), manifests


def _export_task(manifest: dict[str, Any], role: str, folder: Path) -> str:
    return recorded_task(manifest, f"{role} {folder}", "re-export it with `pruneofa export`")


def check_compatible(manifests: dict[str, dict[str, Any]], models: Models, seq_len: int) -> list[str]:
    """Same task, model inputs, vocabulary and label count on both sides, and seq_len within the position table."""
    sparse, base = manifests["sparse"], manifests["baseline"]
    same_task(
        (f"SPARSE_INT8_EXPORT {models.sparse}", _export_task(sparse, "SPARSE_INT8_EXPORT", models.sparse)),
        (f"--baseline {models.baseline_given}", _export_task(base, "--baseline", models.baseline_given)),
    )
    names = list(sparse.get("inputs") or {})
    if names != list(base.get("inputs") or {}):
        raise ModelError(
            f"the models take different inputs: {models.sparse} {names} vs {models.baseline} "
            f"{list(base.get('inputs') or {})}; benchmark exports of the same architecture"
        )
    vocab = [bench_inputs.load_tokenizer(f).get_vocab_size() for f in (models.sparse, models.baseline)]
    if vocab[0] != vocab[1]:
        raise ModelError(
            f"the models have different vocabularies ({vocab[0]} vs {vocab[1]} tokens); same tokenizer needed"
        )
    if len(sparse.get("labels") or {}) != len(base.get("labels") or {}):
        raise ModelError("the models have different label counts; benchmark two models of the same task")
    for folder in (models.sparse, models.baseline):
        limit = int(read_json(folder / "config.json").get("max_position_embeddings") or seq_len)
        if seq_len > limit:
            raise PruneofaError(f"--seq_len {seq_len}: {folder} has only {limit} positions; use at most {limit}")
    return names


def model_sizes(manifest: dict[str, Any]) -> dict[str, Any]:
    """Raw and gzip bytes of each model file, from the manifest (the .xml + .bin pair counted together)."""
    files = manifest.get("files") or {}
    out: dict[str, Any] = {}
    pairs = (
        ("onnx", [ONNX_FILE]),
        ("openvino", [IR_XML, IR_XML.replace(".xml", ".bin")]),
        ("sparse_form", [SPARSE_ONNX]),
    )
    for label, names in pairs:
        entries = [files[n] for n in names if n in files]
        if entries:
            out[label] = {
                "bytes": sum(e["bytes"] for e in entries),
                "gzip_bytes": sum(e["gzip_bytes"] for e in entries),
            }
    return out


def load_runners(
    models: Models, cfg: BenchConfig, threads: int, cpu: dict[str, Any], names: list[str]
) -> tuple[dict[str, bench_runners.Loaded], dict[str, str]]:
    """Every (engine, precision) that can run, and for the rest the reason it was not measured."""
    loaded: dict[str, bench_runners.Loaded] = {}
    skipped: dict[str, str] = {}
    for engine in cfg.engines:
        if engine == "torch":
            if models.torch_source is None:
                skipped["torch-fp32"] = models.torch_note
            else:
                loaded["torch-fp32"] = bench_runners.load_torch(models.torch_source, threads, names)
            continue
        for key, folder in export_variants(engine, models, cfg):
            if not (folder / _MODEL_FILES[engine]).is_file():
                skipped[key] = f"not measured: no {_MODEL_FILES[engine]} in {folder}" + _HOW.get(engine, "")
            elif key == SPARSE_KERNEL:
                problem = sparse_unavailable()
                if problem:
                    skipped[key] = f"unavailable: {problem}"
                else:
                    hint = verified_precision(folder, OPENVINO_SPARSE)  # as for the int8 IR, by its own check
                    loaded[key] = bench_runners.load_openvino(
                        folder, threads, cfg.streams, None, cpu, precision_hint=hint, engine=OPENVINO_SPARSE
                    )
            elif engine == "onnxruntime":
                loaded[key] = bench_runners.load_onnxruntime(folder, threads)
            elif key == bench_runners.OPENVINO_DEFAULT:
                loaded[key] = bench_runners.load_openvino(folder, threads, cfg.streams, None, cpu, precision_hint=None)
            else:
                int8 = key.endswith("-int8")
                rate = cfg.sparse_rate if int8 else None
                # The int8 export at the precision export verified for it (OpenVINO's default where the dev score
                # held there: bf16 float ops on CPUs that have them); the dense FP32 baseline at f32, as the seed.
                hint = verified_precision(folder) if int8 else bench_runners.OPENVINO_PRECISION_HINT
                loaded[key] = bench_runners.load_openvino(folder, threads, cfg.streams, rate, cpu, precision_hint=hint)
    return loaded, skipped


def _sparse_weights(cfg: BenchConfig, ov_int8: Any, skipped: dict[str, str]) -> dict[str, Any]:
    """What OpenVINO's sparse-weights path did in the int8 row: its status when asked for, else why not."""
    if ov_int8 is not None and "sparse_weights" in ov_int8.info:
        return dict(ov_int8.info["sparse_weights"])
    if ov_int8 is not None:
        note = "not requested (--sparse_rate 0.5 asks OpenVINO to decompress sparse int8 weights; AMX CPUs only)"
        return {"status": "off", "active": False, "note": note}
    return {"status": "not measured", "note": skipped.get("openvino-int8", "openvino not requested")}


def export_variants(engine: str, models: Models, cfg: BenchConfig) -> list[tuple[str, Path]]:
    """(model key, export folder) an export engine runs: the sparse int8 and dense fp32 exports, and on OpenVINO
    the dense one at its default precision too, unless turned off; openvino-sparse runs only the sparse export."""
    if engine == OPENVINO_SPARSE:
        return [(SPARSE_KERNEL, models.sparse)]
    pairs = [(f"{engine}-int8", models.sparse), (f"{engine}-fp32", models.baseline)]
    if engine == "openvino" and cfg.openvino_default:
        pairs.append((bench_runners.OPENVINO_DEFAULT, models.baseline))
    return pairs


def run_bench(
    sparse: Path, baseline: Path, cfg: BenchConfig, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Measure every variant in one interleaved run and return the bench.json document."""
    cpu = hardware.cpu_info()
    threads = cfg.threads or hardware.default_threads(cpu)
    with resolve_models(sparse, baseline, cfg) as (models, manifests):
        names = check_compatible(manifests, models, cfg.seq_len)
        loaded, skipped = load_runners(models, cfg, threads, cpu, names)
        if not loaded:
            raise PruneofaError("nothing to measure: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        texts = bench_inputs.dev_texts(cfg.cache_dir)
        feeds = {
            b: bench_inputs.token_batches(models.sparse, texts, cfg.seq_len, b, cfg.distinct_batches, names)
            for b in cfg.batch_sizes
        }
        variants = [Variant(*_split(key), b) for b in cfg.batch_sizes for key in loaded]
        runners = {key: item.run for key, item in loaded.items()}
        latencies, order = time_variants(variants, runners, feeds, cfg.stop_rule(), progress)
        for item in loaded.values():  # kernels as they ran (chosen at the first inference), not as compiled
            if item.refresh is not None:
                item.info.update(item.refresh(), kernels_read="after the timed runs")
        return _document(cfg, threads, cpu, models, manifests, loaded, skipped, variants, latencies, order, feeds)


def _document(
    cfg: BenchConfig,
    threads: int,
    cpu: dict[str, Any],
    models: Models,
    manifests: dict[str, dict[str, Any]],
    loaded: dict[str, bench_runners.Loaded],
    skipped: dict[str, str],
    variants: list[Variant],
    latencies: dict[str, list[float]],
    order: list[list[str]],
    feeds: dict[int, Any],
) -> dict[str, Any]:
    from pruneofa.core.versions import package_versions

    results = {
        v.key: {
            "engine": v.engine,
            "precision": v.precision,
            "batch": v.batch,
            **latency_stats(latencies[v.key], v.batch),
        }
        for v in variants
    }
    ov_int8 = loaded.get("openvino-int8")
    engines = {key: item.info for key, item in loaded.items()}
    best = best_dense(results, engines)
    return {
        "format": BENCH_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {**_config_json(cfg), "threads": threads, "threads_default": cfg.threads is None},
        "stop_rule": asdict(cfg.stop_rule()),
        "inputs": bench_inputs.describe_inputs(feeds[cfg.batch_sizes[0]], cfg.seq_len),
        "models": _models_json(models, manifests),
        "cpu": cpu,
        "versions": package_versions(),
        "engines": engines,
        "openvino_sparse_weights": _sparse_weights(cfg, ov_int8, skipped),
        "sparse_kernel": _sparse_kernel(loaded, skipped),
        "round_order": order,
        "results": results,
        "best_dense": best,
        "fastest_engine": fastest_engine(results),
        "speedups": {**speedups(results, cfg.batch_sizes), **best_dense_speedups(results, best)},
        "not_measured": skipped,
    }


def _sparse_kernel(loaded: dict[str, bench_runners.Loaded], skipped: dict[str, str]) -> dict[str, Any]:
    """Whether the sparse form ran on pruneofa's kernel (openvino-sparse), and why not when it did not."""
    item = loaded.get(SPARSE_KERNEL)
    if item is not None:
        facts = {k: item.info.get(k) for k in ("kernel_isa", "sparse_linears")}
        return {"status": "measured", "variant": SPARSE_KERNEL, **facts}
    if SPARSE_KERNEL in skipped:
        why = skipped[SPARSE_KERNEL]
        status = "unavailable" if why.startswith("unavailable") else "not measured"
        return {"status": status, "variant": SPARSE_KERNEL, "note": why}
    return {"status": "not requested", "variant": SPARSE_KERNEL, "note": f"--engines has no {OPENVINO_SPARSE}"}


def _split(model_key: str) -> tuple[str, str]:
    """'openvino-sparse-int8' -> ('openvino-sparse', 'int8'); the precision is the last part."""
    engine, _, precision = model_key.rpartition("-")
    return engine, precision


def _config_json(cfg: BenchConfig) -> dict[str, Any]:
    data = asdict(cfg)
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


def _models_json(models: Models, manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def entry(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {
            "folder": str(folder),
            "precision": manifest.get("precision"),
            "sparsity": (manifest.get("sparsity") or {}).get("overall"),
            "sizes": model_sizes(manifest),
        }

    baseline = entry(models.baseline_given, manifests["baseline"])
    if models.baseline_given != models.baseline:
        baseline["exported_by_bench"] = "fp32 export of this training folder into a temp folder, unverified"
    return {
        "sparse_int8": entry(models.sparse, manifests["sparse"]),
        "dense_fp32": baseline,
        "torch_fp32": {"folder": str(models.torch_source) if models.torch_source else None, "from": models.torch_note},
    }
