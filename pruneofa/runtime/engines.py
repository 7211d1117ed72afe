"""One thin inference layer over onnxruntime and OpenVINO, shared by `eval`, `predict` and `bench`.

`openvino-sparse` is OpenVINO running the export's sparse form (model.sparse.onnx: every int8 Linear one
SparseInt8Linear node) with pruneofa's native extension added to the Core; where the extension cannot run here
(not built, built for another OpenVINO) opening it is one error naming the reason and the fix.

An engine takes the exported folder's inputs (int64 arrays by name) and returns logits, and can describe itself:
version, threads, precision hint, and how many matmuls really run in int8 in the graph the engine executes
(onnxruntime's optimized graph, OpenVINO's compiled runtime model), so "int8" is measured, never assumed.

No torch and no transformers here: the edge runtime (`predict`) runs on this module, numpy and `tokenizers` only.
The engine libraries are imported inside the functions that need them, so importing this module is instant.
"""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pruneofa.core.errors import ModelError, PruneofaError
from pruneofa.core.hardware import amx_runs_bf16, cpu_info
from pruneofa.runtime.manifest import read_manifest

EngineName = Literal["onnxruntime", "openvino", "openvino-sparse"]
OPENVINO_SPARSE: EngineName = "openvino-sparse"
ENGINES: tuple[EngineName, ...] = ("onnxruntime", "openvino", OPENVINO_SPARSE)
ONNX_FILE = "model.onnx"
IR_XML = "openvino_model.xml"
IR_BIN = "openvino_model.bin"
SPARSE_ONNX = "model.sparse.onnx"  # the sparse form (pruneofa/kernels/sparse_form.py), int8 exports only
# What to do when the sparse form's extension was not built (its reason does not always say).
_BUILD_FIX = "install cmake and a C++17 compiler (gcc or clang), then reinstall pruneofa (`pip install -e .`)"
# ORT's MatMulAddFusion turns the 2-D pooler/classifier MatMul+Add into a float Gemm before its QDQ fusions run,
# which leaves those two Linears in fp32. Every session here (verification, eval, predict, bench) disables it,
# so what runs is what export verified.
ORT_DISABLED_OPTIMIZERS = ("MatMulAddFusion",)
# Kernels that consume int8/uint8 operands in ORT's optimized graph.
_ORT_INT8_OPS = ("MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeMatMul", "QGemm", "QLinearMatMul")
_OV_MATMUL_TYPES = ("FullyConnected", "MatMul")


class Engine(Protocol):
    """What eval, predict and bench need from a runtime."""

    @property
    def input_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits [batch, labels] for int64 feeds keyed by input name (extra keys are ignored)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Engine, version, threads, precision, int8 matmul count of the executed graph."""
        ...


def model_file(folder: Path, engine: EngineName) -> Path:
    """The model file `engine` runs from an export folder (or the file itself when given one): onnxruntime runs
    model.onnx; OpenVINO its IR, or model.onnx where there is no IR (OpenVINO reads ONNX itself; a bundle
    ships only ONNX)."""
    if folder.is_file():
        return folder
    if engine == OPENVINO_SPARSE:
        if (folder / SPARSE_ONNX).is_file():
            return folder / SPARSE_ONNX
        raise ModelError(
            f"{folder}: no {SPARSE_ONNX} for engine {OPENVINO_SPARSE} (`pruneofa export` writes it for int8 models "
            "unless --no_sparse_form; a bundle rebuilds it from model.onnx on unpacking when its export had one); "
            "re-export the int8 model (and re-bundle it), or use --engine openvino"
        )
    names = [ONNX_FILE] if engine == "onnxruntime" else [IR_XML, ONNX_FILE]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    other = " (it has the other format: pass the other --engine)" if (folder / IR_XML).is_file() else ""
    raise ModelError(f"{folder}: no {names[0]} for engine {engine}{other}; pass a folder written by `pruneofa export`")


def default_engine(folder: Path) -> EngineName:
    """onnxruntime when the folder has model.onnx, else OpenVINO when it has the IR."""
    if (folder / ONNX_FILE).is_file() or folder.suffix == ".onnx":
        return "onnxruntime"
    if (folder / IR_XML).is_file() or folder.suffix == ".xml":
        return "openvino"
    raise ModelError(f"{folder}: neither {ONNX_FILE} nor {IR_XML}; pass a folder written by `pruneofa export`")


# The manifest's verification entry saying whether the int8 export held its dev score at OpenVINO's default
# precision (export/default_precision.py).
DEFAULT_PRECISION_CHECK = "openvino_default_precision"
SPARSE_DEFAULT_PRECISION_CHECK = "openvino_sparse_default_precision"  # the same check of the sparse form
VERIFIED = "verified"  # open_engine's default precision: what export checked on the dev set


def open_engine(
    folder: Path, engine: EngineName, threads: int | None = None, precision: str | None = VERIFIED
) -> Engine:
    """Load the exported model in `engine` on CPU.

    threads: intra-op threads (None: the engine's default). precision: OpenVINO's INFERENCE_PRECISION_HINT.
    By default ("verified") the precision export checked: OpenVINO's own default (bf16 on CPUs that have it) where
    the manifest says the int8 export held its dev score there, else "f32", because OpenVINO otherwise runs float
    layers in bf16, which is not the model that was verified; the sparse form likewise, by its own check. None
    keeps the device default. onnxruntime always computes float layers in fp32.
    """
    if threads is not None and threads < 1:
        raise ModelError(f"threads {threads}: must be at least 1 (or left out for the engine default)")
    path = model_file(folder, engine)
    if engine == "onnxruntime":
        return OrtEngine(path, threads)
    if engine == "openvino":
        return OpenVinoEngine(path, threads, verified_precision(folder) if precision == VERIFIED else precision)
    if engine == OPENVINO_SPARSE:
        problem = sparse_unavailable()
        if problem:
            raise ModelError(f"engine {OPENVINO_SPARSE}: {problem}")
        hint = verified_precision(folder, OPENVINO_SPARSE) if precision == VERIFIED else precision
        return OpenVinoEngine(path, threads, hint, sparse=True)
    raise ModelError(f"engine {engine!r}: unknown; use one of {', '.join(ENGINES)}")


def verified_precision(folder: Path, engine: EngineName = "openvino") -> str | None:
    """OpenVINO's precision hint for export `folder` on `engine` (its IR, or its sparse form): None (OpenVINO's
    default, bf16 float ops) where its manifest records that this model held its dev score at the default
    precision and AMX runs bf16 here, else "f32". Measured on BERT-base int8 (NOTES.md, issue 14): bf16 float
    ops 1.10x / 1.18x (batch 1 / 8) with AMX, 0.95x with AVX512-BF16 alone (AMX capped by $ONEDNN_MAX_CPU_ISA),
    where OpenVINO still defaults to bf16; the sparse form likewise (its Linears are pruneofa's op either way)."""
    verification = (read_manifest(folder) or {}).get("verification") or {}
    key = SPARSE_DEFAULT_PRECISION_CHECK if engine == OPENVINO_SPARSE else DEFAULT_PRECISION_CHECK
    held = (verification.get(key) or {}).get("held") is True
    return None if held and amx_runs_bf16(cpu_info(), os.environ.get("ONEDNN_MAX_CPU_ISA")) else "f32"


def sparse_unavailable() -> str | None:
    """Why the openvino-sparse engine cannot run on this install, with the fix (None when it can): the reason
    pruneofa.kernels gives (extension not built, or built against another OpenVINO release)."""
    from pruneofa.kernels import openvino_op

    state = openvino_op.availability()
    if state.ok:
        return None
    fix = "" if "reinstall" in state.reason else f"; {_BUILD_FIX}"
    return f"the native sparse kernel is unavailable: {state.reason}{fix}"


# ---------------------------------------------------------------- onnxruntime


def ort_session_options(threads: int | None, optimized_model_path: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return options


def ort_session(path: Path, threads: int | None, optimized_model_path: Path | None = None) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            str(path),
            ort_session_options(threads, optimized_model_path),
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS),
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for a corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: onnxruntime cannot load it ({first}); re-run `pruneofa export`") from None


def ort_optimized_op_counts(path: Path, threads: int | None = None) -> collections.Counter[str]:
    """Op types of the graph onnxruntime actually executes (its optimized graph, same options as every session)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="pruneofa-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        ort_session(path, threads, optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
        return collections.Counter(node.op_type for node in graph.node)


def int8_op_count(ops: collections.Counter[str]) -> int:
    return sum(n for op, n in ops.items() if op in _ORT_INT8_OPS)


class OrtEngine:
    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = path
        self.threads = threads
        self.session = ort_session(path, threads)
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._int8: int | None = None

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        logits = self.session.run(["logits"], {k: feeds[k].astype(np.int64) for k in self._inputs})[0]
        return np.asarray(logits, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        if self._int8 is None:  # one more session build: only when asked
            self._int8 = int8_op_count(ort_optimized_op_counts(self.path, self.threads))
        return {
            "engine": "onnxruntime",
            "version": ort.__version__,
            "model": str(self.path),
            "threads": self.threads,
            "precision_hint": None,
            "disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
            "int8_matmuls": self._int8,
            "sparse_kernels": 0,  # ORT's CPU provider has no sparse-weight kernels
        }


# ---------------------------------------------------------------- OpenVINO


def openvino_runtime_layers(compiled: Any) -> list[dict[str, str]]:
    """(name, layer type, runtime precision, primitive type) of every node of the compiled runtime model."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()

        def get(key: str, info: Any = info) -> str:
            return str(info[key].astype(str)) if key in info else ""

        rows.append(
            {
                "name": op.get_friendly_name(),
                "layer_type": get("layerType"),
                "runtime_precision": get("runtimePrecision"),
                "primitive_type": get("primitiveType"),
            }
        )
    return rows


def openvino_int8_matmuls(layers: list[dict[str, str]]) -> tuple[int, int]:
    """(int8 FullyConnected/MatMul count, how many of them use a sparse-weights kernel)."""
    int8 = [
        row
        for row in layers
        if row["layer_type"] in _OV_MATMUL_TYPES
        and (row["runtime_precision"].upper() in ("I8", "U8") or "i8" in row["primitive_type"].lower())
    ]
    return len(int8), sum("sparse" in row["primitive_type"].lower() for row in int8)


def openvino_sparse_linears(model: Any, layers: list[dict[str, str]]) -> int:
    """How many of `model`'s Linears run as SparseInt8Linear ops in the compiled runtime model `layers` (each op
    runs the extension's kernel: OpenVINO has no other implementation of it; one op can compute several Linears
    that read the same input, its `linears` attribute)."""
    from pruneofa.kernels.openvino_op import OP_TYPE

    carried = {
        op.get_friendly_name(): int(op.get_attributes().get("linears", 1))
        for op in model.get_ordered_ops()
        if op.get_type_name() == OP_TYPE
    }
    return sum(carried.get(row["name"], 0) for row in layers)


def sparse_kernel_isa() -> str:
    """The kernel path the extension runs here (amx, avx512_vnni, avx2 or scalar; $PRUNEOFA_SPARSE_ISA forces one)."""
    from pruneofa.kernels import native

    try:
        return native.selected_isa()
    except PruneofaError as exc:
        return f"unknown ({exc})"


class OpenVinoEngine:
    def __init__(self, path: Path, threads: int | None, precision: str | None, sparse: bool = False) -> None:
        """`sparse`: the model is a sparse form; pruneofa's extension is added to the Core before reading it."""
        import openvino as ov

        self.path = path
        self.threads = threads
        self.precision = precision
        self.sparse = sparse
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        if sparse:
            from pruneofa.kernels import openvino_op

            openvino_op.add_to(core)
        try:
            self.model = core.read_model(str(path))
            self.compiled = core.compile_model(self.model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text for any bad model or option
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{path}: OpenVINO cannot load it ({first}); re-run `pruneofa export`") from None
        self.request = self.compiled.create_infer_request()
        self._inputs = [port.get_any_name() for port in self.compiled.inputs]
        self._ran = False

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.request.infer({k: feeds[k].astype(np.int64) for k in self._inputs})
        self._ran = True
        return np.array(self.request.get_tensor("logits").data, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        if not self._ran:
            # A dynamic-shape model gets its kernels at the first inference; before it they all read `undef_*`.
            self.run({name: np.ones((1, 8), dtype=np.int64) for name in self._inputs})
        layers = openvino_runtime_layers(self.compiled)
        int8, sparse = openvino_int8_matmuls(layers)
        info = {
            "engine": OPENVINO_SPARSE if self.sparse else "openvino",
            "version": ov.get_version(),
            "model": str(self.path),
            "threads": self.threads,
            "precision_hint": self.precision,
            "inference_precision": _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "int8_matmuls": int8,
            "sparse_kernels": sparse,
        }
        if self.sparse:  # the Linears run pruneofa's kernel: int8 matmuls that skip the zero weight groups
            linears = openvino_sparse_linears(self.model, layers)
            info.update(int8_matmuls=int8 + linears, sparse_linears=linears, kernel_isa=sparse_kernel_isa())
        return info


def _type_name(value: Any) -> str:
    """OpenVINO element types print as "<Type: 'float32'>"; their short name ("f32") is what the hint takes."""
    name = getattr(value, "get_type_name", None)
    return str(name()) if callable(name) else str(value)
