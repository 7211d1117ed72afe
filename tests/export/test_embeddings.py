"""int8 embedding tables: per-row quantization, and the rewritten Gather computes exactly q[ids] * scale[ids]
on onnxruntime and OpenVINO (checked against numpy), leaving tables used any other way alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pruneofa.export.embeddings import embedding_tables, quantize_embeddings_, quantize_rows
from pruneofa.runtime.engines import open_engine


def test_rows_round_to_within_half_a_step_and_zero_rows_stay_zero() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 8)).astype(np.float32)
    table[3] = 0.0
    q, scale = quantize_rows(table)
    assert q.dtype == np.int8 and scale.shape == (50, 1)
    assert np.all(np.abs(q.astype(np.float32) * scale - table) <= scale / 2 + 1e-7)
    assert np.abs(q).max(axis=1).tolist().count(127) == 49  # every non-zero row uses the full range
    assert np.all(q[3] == 0) and scale[3, 0] == 1.0


def _graph(tmp: Path, table: np.ndarray, also_matmul: bool = False) -> Path:
    # engines read the output named "logits"
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["logits"], name="lookup")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", table.shape[1]])]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])]
    if also_matmul:  # a tied projection reads the same table: it must stay float
        nodes.append(helper.make_node("MatMul", ["logits", "table_t"], ["proj"]))
        nodes.append(helper.make_node("Transpose", ["table"], ["table_t"], perm=[1, 0]))
        outputs.append(helper.make_tensor_value_info("proj", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp / "model.onnx").write_bytes(model.SerializeToString())
    return tmp / "model.onnx"


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_rewritten_lookup_is_exact_on_both_engines(tmp_path: Path, engine: str) -> None:
    rng = np.random.default_rng(1)
    table = rng.normal(size=(97, 16)).astype(np.float32)
    path = _graph(tmp_path, table)
    proto = onnx.load(str(path))
    report = quantize_embeddings_(proto)
    assert set(report) == {"table"} and report["table"]["bytes_int8"] < report["table"]["bytes_float"] / 3
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    if engine == "openvino":
        import openvino as ov

        ov.save_model(ov.convert_model(str(path)), str(tmp_path / "openvino_model.xml"), compress_to_fp16=False)
    ids = rng.integers(0, 97, size=(3, 11)).astype(np.int64)
    session = open_engine(tmp_path, engine)  # type: ignore[arg-type]
    got = session.run({"input_ids": ids})
    q, scale = quantize_rows(table)
    np.testing.assert_array_equal(got, q[ids].astype(np.float32) * scale[ids])


def test_a_table_used_elsewhere_stays_float(tmp_path: Path) -> None:
    proto = onnx.load(str(_graph(tmp_path, np.ones((5, 4), np.float32), also_matmul=True)))
    assert embedding_tables(proto.graph) == []
    assert quantize_embeddings_(proto) == {}
