"""What `bench` times: one callable per (engine, precision), loaded once and shared by every batch size, plus
a description of what really ran (versions, threads, streams, precision hint, int8 matmuls, kernels).

onnxruntime goes through `engines.open_engine` (the same session options as export, eval and predict). OpenVINO
is compiled here because a benchmark needs settings the shared engine does not expose (NUM_STREAMS and the
sparse-weights decompression rate); every setting is read back from the compiled model, not echoed from the
request. torch runs the float model eagerly under `inference_mode`.

OpenVINO runs the dense export with `INFERENCE_PRECISION_HINT=f32` and the int8 one at the precision export verified
for it (f32, or OpenVINO's default where the int8 model held its dev score there: export/default_precision.py;
the row's `precision_used` says which), and the dense one also at its default precision
(no hint: `openvino-default`), which is bf16 on CPUs with AVX512-BF16 or AMX-BF16 and the fastest dense engine
there; the precision it picked is read back from the compiled model, with the CPU flags that explain it
(`default_precision_facts`, a pure function).

`openvino-sparse` is the same OpenVINO compile of the export's model.sparse.onnx with pruneofa's extension added
to the Core (its Linears run pruneofa's sparse int8 kernel); it is timed only where the extension can run, else
`bench` records it as unavailable with the reason.

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
from pruneofa.runtime.engines import (
    OPENVINO_SPARSE,
    EngineName,
    model_file,
    open_engine,
    openvino_int8_matmuls,
    openvino_runtime_layers,
    openvino_sparse_linears,
    sparse_kernel_isa,
)

Runner = Callable[[dict[str, np.ndarray]], object]
# The dense model's float layers run in f32: the CPU default (bf16 where supported) is not an FP32 baseline.
OPENVINO_PRECISION_HINT = "f32"
# The dense export on OpenVINO with no precision hint: whatever the CPU plugin picks (bf16 where the CPU has it).
OPENVINO_DEFAULT = "openvino-default"
_PRECISION_KEY = "INFERENCE_PRECISION_HINT"
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


def openvino_config(
    threads: int, streams: int, sparse_rate: float | None, precision_hint: str | None = OPENVINO_PRECISION_HINT
) -> dict[str, Any]:
    """The compile options; `precision_hint=None` leaves the inference precision to OpenVINO (its default)."""
    config: dict[str, Any] = {} if precision_hint is None else {_PRECISION_KEY: precision_hint}
    config.update(INFERENCE_NUM_THREADS=threads, NUM_STREAMS=streams)
    if sparse_rate is not None:
        config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = sparse_rate
    return config


def load_openvino(
    folder: Path,
    threads: int,
    streams: int,
    sparse_rate: float | None,
    cpu: dict[str, Any],
    precision_hint: str | None = OPENVINO_PRECISION_HINT,
    engine: EngineName = "openvino",
) -> Loaded:
    """The IR of `folder` compiled for the CPU; `precision_hint=None`: at OpenVINO's default precision.
    `engine="openvino-sparse"`: its sparse form, with pruneofa's extension (the caller checked it can run)."""
    import openvino as ov

    path = model_file(folder, engine)
    config = openvino_config(threads, streams, sparse_rate, precision_hint)
    core = ov.Core()
    if engine == OPENVINO_SPARSE:
        from pruneofa.kernels import openvino_op

        openvino_op.add_to(core)
    try:
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text for any bad model or option
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: OpenVINO cannot compile it with {config} ({first})") from None
    request = compiled.create_infer_request()
    names = [port.get_any_name() for port in compiled.inputs]

    def run(feeds: dict[str, np.ndarray]) -> object:
        return request.infer({k: feeds[k] for k in names})

    read_back = dict.fromkeys((*config, _PRECISION_KEY, "PERFORMANCE_HINT"))  # the precision even when not hinted
    compiled_config = {key: _readback(compiled, key) for key in read_back}

    def kernels() -> dict[str, Any]:
        layers = openvino_runtime_layers(compiled)
        int8, sparse = openvino_int8_matmuls(layers)
        out = {"int8_matmuls": int8, "sparse_kernels": sparse, "matmul_kernels": matmul_kernels(layers)}
        if engine == OPENVINO_SPARSE:
            linears = openvino_sparse_linears(model, layers)
            out.update(int8_matmuls=int8 + linears, sparse_linears=linears, kernel_isa=sparse_kernel_isa())
        if sparse_rate is not None:
            out["sparse_weights"] = sparse_weights_status(layers, cpu, compiled_config.get(_RATE_KEY, sparse_rate))
        return out

    info = {
        "engine": engine,
        "version": ov.get_version(),
        "model": str(path),
        "requested": config,
        "compiled": compiled_config,
        "precision_used": compiled_config[_PRECISION_KEY],
        **kernels(),
    }
    if precision_hint is None:
        info["default_precision"] = default_precision_facts(compiled_config[_PRECISION_KEY], cpu)
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


def default_precision_facts(used: str | None, cpu: dict[str, Any]) -> dict[str, Any]:
    """The precision OpenVINO picked when none was hinted, the CPU flags that decide it, and a line saying why."""
    flags = {
        "avx512_bf16": bool(cpu.get("avx512_bf16")),
        "amx_bf16": "amx_bf16" in (cpu.get("amx_flags") or []),
        "amx": bool(cpu.get("amx")),
    }
    have = [name for name, key in (("AMX-BF16", "amx_bf16"), ("AVX512-BF16", "avx512_bf16")) if flags[key]]
    if used == "bf16":
        why = f"this CPU has {' and '.join(have)}" if have else "no bf16 flag was read from /proc/cpuinfo"
        note = f"OpenVINO's default ran the float layers in bf16 ({why})"
    elif used == "f32" and not have:
        note = "OpenVINO's default is f32 here (no AVX512-BF16 or AMX-BF16), the same as the f32-hint baseline"
    else:
        shown = f" although the CPU has {' and '.join(have)}" if have else ""
        note = f"OpenVINO's default ran the float layers in {used}{shown}"
    return {"precision_used": used, "cpu_flags": flags, "note": note}


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
            f"AMX present but no int8 matmul used the sparse kernel: it needs 2-D int8 weights laid out [N, K] "
            f"(as `pruneofa export` writes the IR; re-export an older one), both dims divisible by 64 and a zero "
            f"fraction >= the decompression rate {rate}"
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
