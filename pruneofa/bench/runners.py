"""What `bench` times: one callable per (engine, precision), loaded once and shared by every batch size, plus
a description of what really ran (versions, threads, streams, precision hint, int8 matmuls, kernels).

onnxruntime goes through `engines.open_engine` (the same session options as export, eval and predict). OpenVINO
is compiled here because a benchmark needs settings the shared engine does not expose (NUM_STREAMS and the
sparse-weights decompression rate); every setting is read back from the compiled model, not echoed from the
request. torch runs the float model eagerly under `inference_mode`.

OpenVINO's sparse-weights path: `sparse_weights_status` reads the runtime model's primitive types (a pure
function, so tests feed it made-up layer lists and CPUs). The path needs AMX (stack.md); on a CPU without it
the report says "unavailable" instead of implying sparsity was exploited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.core.errors import ModelError
from pruneofa.runtime.engines import model_file, open_engine, openvino_int8_matmuls, openvino_runtime_layers

Runner = Callable[[dict[str, np.ndarray]], object]
# Float layers of both OpenVINO models run in f32: the CPU default (bf16 where supported) is not an FP32 baseline.
OPENVINO_PRECISION_HINT = "f32"
_OV_MATMUL_TYPES = ("FullyConnected", "MatMul")


@dataclass
class Loaded:
    """A model loaded in one engine: `run` maps int64 feeds to logits; `info` says what ran."""

    run: Runner
    info: dict[str, Any]
    input_names: list[str]
    # Re-reads what can only be known after inferences ran (OpenVINO picks kernels at the first inference of a
    # dynamic-shape model: before it, every primitive reads "undef").
    refresh: Callable[[], dict[str, Any]] | None = None


def load_onnxruntime(folder: Path, threads: int) -> Loaded:
    engine = open_engine(folder, "onnxruntime", threads=threads)
    return Loaded(engine.run, {**engine.describe(), "threads": threads}, engine.input_names)


def openvino_config(threads: int, streams: int, sparse_rate: float | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION_HINT,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": streams,
    }
    if sparse_rate is not None:
        config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = sparse_rate
    return config


def load_openvino(folder: Path, threads: int, streams: int, sparse_rate: float | None, cpu: dict[str, Any]) -> Loaded:
    import openvino as ov

    path = model_file(folder, "openvino")
    config = openvino_config(threads, streams, sparse_rate)
    try:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text for any bad model or option
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: OpenVINO cannot compile it with {config} ({first})") from None
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]

    def run(feeds: dict[str, np.ndarray]) -> object:
        return request.infer({k: feeds[k] for k in names})

    compiled_config = {key: _readback(compiled, key) for key in (*config, "PERFORMANCE_HINT")}

    def kernels() -> dict[str, Any]:
        layers = openvino_runtime_layers(compiled)
        int8, sparse = openvino_int8_matmuls(layers)
        out = {"int8_matmuls": int8, "sparse_kernels": sparse, "matmul_kernels": matmul_kernels(layers)}
        if sparse_rate is not None:
            out["sparse_weights"] = sparse_weights_status(layers, cpu, compiled_config.get(_RATE_KEY, sparse_rate))
        return out

    info = {
        "engine": "openvino",
        "version": ov.get_version(),
        "model": str(path),
        "requested": config,
        "compiled": compiled_config,
        **kernels(),
    }
    return Loaded(run, info, names, refresh=kernels)


_RATE_KEY = "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"


def _readback(compiled: Any, key: str) -> Any:
    try:
        value = compiled.get_property(key)
    except RuntimeError:
        return None
    name = getattr(value, "get_type_name", None)  # element types ("<Type: 'float32'>") -> "f32"
    return str(name()) if callable(name) else value


def load_torch(source: Path, threads: int, input_names: list[str]) -> Loaded:
    """The float (FP32) model of a `pruneofa train` output, eager, in inference mode, fed `input_names`."""
    import torch

    from pruneofa.training.trained import open_trained

    trained = open_trained(source)
    model = trained.load_model(float_only=True)
    torch.set_num_threads(threads)

    def run(feeds: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(feeds[k]) for k in input_names}).logits

    info = {
        "engine": "torch",
        "version": torch.__version__,
        "model": str(source),
        "threads": torch.get_num_threads(),
        "mode": "eager, inference_mode, fp32 float weights",
    }
    return Loaded(run, info, list(input_names))


def matmul_kernels(layers: list[dict[str, str]]) -> dict[str, int]:
    """How many FullyConnected/MatMul nodes run each primitive (e.g. brgemm_avx512_I8: 72)."""
    counts: dict[str, int] = {}
    for row in layers:
        if row["layer_type"] in _OV_MATMUL_TYPES:
            counts[row["primitive_type"] or "?"] = counts.get(row["primitive_type"] or "?", 0) + 1
    return dict(sorted(counts.items()))


def sparse_weights_status(layers: list[dict[str, str]], cpu: dict[str, Any], rate: float) -> dict[str, Any]:
    """Whether OpenVINO's sparse-weights int8 kernel ran, from the runtime model, and why not when it did not."""
    int8, sparse = openvino_int8_matmuls(layers)
    if sparse:
        status, note = "active", f"sparse kernel in {sparse} of {int8} int8 matmuls"
    elif not cpu.get("amx"):
        status = "unavailable"
        note = "no AMX on this CPU: OpenVINO's sparse-weights kernel needs AMX (Sapphire Rapids or newer)"
    else:
        status = "inactive"
        note = (
            f"AMX present but no int8 matmul used the sparse kernel: it needs 2-D int8 weights with both dims "
            f"divisible by 64 and a zero fraction >= the decompression rate {rate}"
        )
    return {
        "status": status,
        "active": bool(sparse),
        "sparse_kernels": sparse,
        "int8_matmuls": int8,
        "decompression_rate": rate,
        "amx": bool(cpu.get("amx")),
        "note": note,
    }
