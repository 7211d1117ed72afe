"""The compiled kernel library through ctypes: which paths this CPU runs, and the two entry points.

The libraries are built by the package's install step (setup.py runs CMake on native/) into this folder. Where
the build failed, `availability()` says why (the reason the build step wrote) and everything else in pruneofa
keeps working without the sparse engine.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pruneofa.core.errors import PruneofaError
from pruneofa.kernels.group_weights import GroupWeights

HERE = Path(__file__).parent
KERNEL_LIBRARY = HERE / "libpruneofa_sparse.so"
OPENVINO_LIBRARY = HERE / "libpruneofa_openvino.so"
BUILD_ERROR_FILE = HERE / "BUILD_ERROR.txt"  # written by setup.py when CMake failed
ISA_ENV = "PRUNEOFA_SPARSE_ISA"
ISA_NAMES = ("scalar", "avx2", "avx512_vnni", "amx")  # indices = the C enum
AUTO = -1
ACTIVATIONS = {"none": 0, "gelu": 1}  # POFA_ACT_* of pruneofa_sparse.h
TYPES = {"f32": (0, np.float32), "u8": (1, np.uint8)}  # POFA_TYPE_* of pruneofa_sparse.h, and numpy's dtypes


class _Weights(ctypes.Structure):
    _fields_ = [
        ("rows", ctypes.c_int32),
        ("cols", ctypes.c_int32),
        ("row_ptr", ctypes.c_void_p),
        ("groups", ctypes.c_void_p),
        ("values", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # why not, or which library


def not_built_reason(library: Path) -> str:
    if BUILD_ERROR_FILE.is_file():
        detail = BUILD_ERROR_FILE.read_text(errors="replace").strip().splitlines()
        return f"the install step could not build it ({detail[0] if detail else 'no detail'}); see {BUILD_ERROR_FILE}"
    return f"{library.name} is not built; reinstall pruneofa (`pip install -e .` or `make setup`), which builds native/"


@functools.cache
def _library() -> ctypes.CDLL | None:
    if not KERNEL_LIBRARY.is_file():
        return None
    lib = ctypes.CDLL(str(KERNEL_LIBRARY))
    lib.pofa_isa_name.restype = ctypes.c_char_p
    lib.pofa_isa_supported.argtypes = [ctypes.c_int]
    lib.pofa_sparse_gemm_s32.argtypes = [
        ctypes.POINTER(_Weights),
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.pofa_sparse_linear_typed.argtypes = [
        ctypes.POINTER(_Weights), ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float, ctypes.c_int32,
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
        ctypes.c_int32, ctypes.c_int, ctypes.c_int,
    ]  # fmt: skip
    return lib


def availability() -> Availability:
    if _library() is None:
        return Availability(False, not_built_reason(KERNEL_LIBRARY))
    return Availability(True, str(KERNEL_LIBRARY))


def library() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise PruneofaError(f"the sparse kernel is unavailable: {not_built_reason(KERNEL_LIBRARY)}")
    return lib


def supported_isas() -> list[str]:
    """The paths this CPU (and OS) can run, slowest first."""
    lib = library()
    return [name for index, name in enumerate(ISA_NAMES) if lib.pofa_isa_supported(index)]


def selected_isa() -> str:
    """The path the kernel uses by default: $PRUNEOFA_SPARSE_ISA when set, else the best supported one."""
    index = library().pofa_isa_selected()
    if index < 0:
        raise PruneofaError(
            f"${ISA_ENV}={os.environ.get(ISA_ENV)!r}: not a path this CPU can run; use one of "
            f"{', '.join(supported_isas())}, or unset it"
        )
    return ISA_NAMES[index]


def _isa_index(isa: str | None) -> int:
    if isa is None:
        selected_isa()  # a clear error for a bad $PRUNEOFA_SPARSE_ISA
        return AUTO
    if isa not in ISA_NAMES:
        raise PruneofaError(f"kernel path {isa!r}: unknown; use one of {', '.join(ISA_NAMES)}")
    if isa not in supported_isas():
        raise PruneofaError(f"kernel path {isa!r}: this CPU cannot run it; it runs {', '.join(supported_isas())}")
    return ISA_NAMES.index(isa)


def _struct(w: GroupWeights) -> _Weights:
    for name, array, dtype in (("row_ptr", w.row_ptr, np.int32), ("groups", w.groups, np.uint16)):
        if array.dtype != dtype or not array.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous {np.dtype(dtype)}")
    return _Weights(w.rows, w.cols, w.row_ptr.ctypes.data, w.groups.ctypes.data, w.values.ctypes.data)


def gemm_s32(w: GroupWeights, x: np.ndarray, isa: str | None = None, threads: int = 1) -> np.ndarray:
    """Exact int32 x @ W.T for u8 x [tokens, cols]."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != w.cols:
        raise ValueError(f"x must be [tokens, {w.cols}], got {x.shape}")
    out = np.empty((x.shape[0], w.rows), dtype=np.int32)
    code = library().pofa_sparse_gemm_s32(ctypes.byref(_struct(w)), x.ctypes.data, x.shape[0], out.ctypes.data,
                                          _isa_index(isa), threads)  # fmt: skip
    if code != 0:
        raise PruneofaError(f"sparse kernel failed (code {code}): malformed weights (build them with pack_groups)")
    return out


def linear(
    w: GroupWeights,
    x: np.ndarray,
    x_scale: float,
    x_zero_point: int,
    mult: np.ndarray,
    offset: np.ndarray,
    out_type: str = "f32",
    out_scale: float = 1.0,
    out_zero_point: int = 0,
    isa: str | None = None,
    threads: int = 1,
    activation: str = "none",
) -> np.ndarray:
    """The fused layer as the OpenVINO op runs it: x float32 [tokens, cols] quantized as QuantizeLinear (or uint8,
    already quantized: x_scale and x_zero_point unused; by its dtype), sparse int8 matmul, acc * mult + offset,
    `activation` ("none" or "gelu": 0.5 y (1 + erf(y / sqrt 2))); the result as `out_type` "f32" or "u8"
    (quantized as QuantizeLinear with out_scale and out_zero_point)."""
    x_type = next((name for name, (_, dtype) in TYPES.items() if x.dtype == dtype), None)
    if x_type is None or out_type not in TYPES or activation not in ACTIVATIONS:
        raise ValueError(f"x dtype {x.dtype} / out_type {out_type!r} / activation {activation!r} not supported")
    x = np.ascontiguousarray(x)
    mult = np.ascontiguousarray(mult, dtype=np.float32)
    offset = np.ascontiguousarray(offset, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != w.cols or mult.shape != (w.rows,) or offset.shape != (w.rows,):
        raise ValueError(f"x must be [tokens, {w.cols}] and mult/offset [{w.rows}]")
    out = np.empty((x.shape[0], w.rows), dtype=TYPES[out_type][1])
    code = library().pofa_sparse_linear_typed(
        ctypes.byref(_struct(w)), x.ctypes.data, TYPES[x_type][0], x.shape[0], x_scale, x_zero_point,
        mult.ctypes.data, offset.ctypes.data, ACTIVATIONS[activation], out.ctypes.data, TYPES[out_type][0],
        out_scale, out_zero_point, _isa_index(isa), threads,
    )  # fmt: skip
    if code != 0:
        raise PruneofaError(f"sparse kernel failed (code {code}): scales must be > 0, zero points 0..255")
    return out
