"""Compact storage of a sparse int8 ONNX model, unpacked to the exact original file.

An int8 initializer with many zeros is stored as a bitmask of its non-zeros (np.packbits) plus the non-zero
values in order; the rest of the model (graph, float tensors, scales) stays a normal ONNX "skeleton" whose packed
initializers have empty raw_data. At 90% zeros that is 1 bit + 0.1 byte per weight instead of 1 byte, before
gzip. `unpack` refills the raw bytes and re-serializes: onnx round-trips byte-exactly, and the caller checks the
sha256 against the export's manifest. No pickle: the arrays are a plain .npz read with allow_pickle=False.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

SKELETON_FILE = "model.skeleton.onnx"
ARRAYS_FILE = "model.packed.npz"
MIN_ELEMENTS = 1024  # small tensors are not worth a mask
MIN_ZERO_FRACTION = 0.5  # below this a bitmask + values is larger than the raw int8 bytes


def pack(model_bytes: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """(skeleton ONNX bytes, .npz bytes, facts) for a serialized ONNX model."""
    import onnx
    from onnx import TensorProto

    proto = onnx.load_from_string(model_bytes)
    arrays: dict[str, np.ndarray] = {}
    packed_bytes = raw_bytes = 0
    for index, tensor in enumerate(proto.graph.initializer):
        if tensor.data_type != TensorProto.INT8 or not tensor.raw_data:
            continue
        values = np.frombuffer(tensor.raw_data, dtype=np.int8)
        nonzero = values != 0
        if values.size < MIN_ELEMENTS or 1.0 - nonzero.mean() < MIN_ZERO_FRACTION:
            continue
        arrays[f"{index}.mask"] = np.packbits(nonzero)
        arrays[f"{index}.values"] = values[nonzero]
        packed_bytes += arrays[f"{index}.mask"].nbytes + arrays[f"{index}.values"].nbytes
        raw_bytes += values.nbytes
        tensor.raw_data = b""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types the first kwarg as allow_pickle
    facts = {"tensors": len(arrays) // 2, "raw_bytes": raw_bytes, "packed_bytes": packed_bytes}
    return proto.SerializeToString(), buffer.getvalue(), facts


def unpack(skeleton: bytes, packed: bytes) -> bytes:
    """The original serialized ONNX model from `pack`'s two parts."""
    import onnx

    proto = onnx.load_from_string(skeleton)
    arrays = np.load(io.BytesIO(packed), allow_pickle=False)
    indices = sorted({int(key.split(".")[0]) for key in arrays.files})
    for index in indices:
        tensor = proto.graph.initializer[index]
        size = int(np.prod(tensor.dims))
        nonzero = np.unpackbits(arrays[f"{index}.mask"], count=size).astype(bool)
        values = np.zeros(size, dtype=np.int8)
        values[nonzero] = arrays[f"{index}.values"]
        tensor.raw_data = values.tobytes()
    return bytes(proto.SerializeToString())
