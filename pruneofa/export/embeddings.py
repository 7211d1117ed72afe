"""int8 embedding tables in the ONNX graph: the word (and position / token-type) embeddings are most of a small
model's file (MiniLM: 30522 x 384 floats = 47 MB of a 59 MB int8 export).

Each float table that a Gather reads becomes an int8 table with one float scale per row (symmetric, zero-point 0):

    Gather(table_f32, ids)  ->  Mul(Cast<float>(Gather(table_i8, ids)), Gather(scales[V, 1], ids))

Plain Gather/Cast/Mul run in every engine (onnxruntime and OpenVINO alike; DequantizeLinear cannot express a
per-row scale after a gather). The exporter keeps the result only where the dev score holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INT8_SUFFIX = ".int8"
SCALE_SUFFIX = ".row_scale"


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: q = round(row / scale), scale = max|row| / 127 (1 for an all-zero row)."""
    peak = np.abs(table).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
    return q, scale


def _is_row_gather(node: Any) -> bool:
    axis = [a.i for a in node.attribute if a.name == "axis"]
    return bool(node.op_type == "Gather" and (not axis or axis[0] == 0))


def embedding_tables(graph: Any) -> list[str]:
    """2-D float initializers read only as the rows of a Gather (the embedding tables); a table used any other
    way (a tied output projection, say) is left float."""
    from onnx import TensorProto

    floats = {t.name for t in graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    gathered = {n.input[0] for n in graph.node if _is_row_gather(n) and n.input[0] in floats}
    other_uses = {
        name
        for n in graph.node
        for i, name in enumerate(n.input)
        if name in gathered and (i != 0 or not _is_row_gather(n))
    }
    return sorted(gathered - other_uses)


def quantize_embeddings_(proto: Any) -> dict[str, dict[str, Any]]:
    """Rewrite every embedding Gather of `proto` (an onnx.ModelProto) in place; returns per-table facts."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    tables = embedding_tables(graph)
    inits = {t.name: t for t in graph.initializer}
    report: dict[str, dict[str, Any]] = {}
    for name in tables:
        floats = numpy_helper.to_array(inits[name])
        q, scale = quantize_rows(floats)
        graph.initializer.remove(inits[name])
        graph.initializer.extend(
            [numpy_helper.from_array(q, name + INT8_SUFFIX), numpy_helper.from_array(scale, name + SCALE_SUFFIX)]
        )
        dequantized = q.astype(np.float32) * scale
        report[name] = {
            "shape": list(floats.shape),
            "bytes_float": int(floats.nbytes),
            "bytes_int8": int(q.nbytes + scale.nbytes),
            "max_abs_error": float(np.abs(dequantized - floats).max()),
        }
    if not tables:
        return report
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        if not _is_row_gather(node) or node.input[0] not in report:
            graph.node.append(node)
            continue
        table, ids = node.input[0], node.input[1]
        base = node.name or f"{table}_gather"
        rows, row_scale, as_float = f"{base}.q_rows", f"{base}.q_scale", f"{base}.q_float"
        graph.node.extend(
            [
                helper.make_node("Gather", [table + INT8_SUFFIX, ids], [rows], name=f"{base}_int8"),
                helper.make_node("Gather", [table + SCALE_SUFFIX, ids], [row_scale], name=f"{base}_scale"),
                helper.make_node("Cast", [rows], [as_float], name=f"{base}_cast", to=1),  # 1 = FLOAT
                helper.make_node("Mul", [as_float, row_scale], list(node.output), name=f"{base}_dequant"),
            ]
        )
    return report
