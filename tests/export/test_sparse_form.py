"""The QDQ int8 export rewritten for the sparse kernel: every int8 Linear becomes one SparseInt8Linear node, the
weights survive exactly, and OpenVINO with the extension predicts what the QDQ model predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pruneofa.kernels import native, openvino_op

pytestmark = pytest.mark.skipif(not openvino_op.availability().ok, reason=openvino_op.availability().reason)


def _feeds(folder: Path, seq_len: int = 32, batch: int = 64) -> dict[str, np.ndarray]:
    from pruneofa.bench.inputs import dev_texts, token_batches

    names = ["input_ids", "attention_mask", "token_type_ids"]
    return token_batches(folder, dev_texts(None)[:batch], seq_len, batch, 1, names)[0]


def test_rewrite_matches_the_qdq_model(tiny_exports: Path, tmp_path: Path) -> None:
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    from pruneofa.kernels.group_weights import GroupWeights
    from pruneofa.kernels.sparse_form import rewrite

    qdq = onnx.load(str(tiny_exports / "int8" / "model.onnx"))
    int8_weights = {
        i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer if i.data_type == onnx.TensorProto.INT8
    }
    proto = onnx.load(str(tiny_exports / "int8" / "model.onnx"))
    facts = rewrite(proto)
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    sparse_nodes = [n for n in proto.graph.node if n.op_type == openvino_op.OP_TYPE]
    assert facts.ops == len(sparse_nodes) > 0 and 0.2 < facts.group_fill < 0.5
    # query, key and value read one quantized input: one op for the three, with an output each (no Split)
    linears = {n.name: next((a.i for a in n.attribute if a.name == "linears"), 1) for n in sparse_nodes}
    assert sum(linears.values()) == facts.layers > facts.ops and max(linears.values()) == 3
    assert not [n for n in proto.graph.node if n.op_type == "Split"]
    for node in sparse_nodes:
        splits = next((list(a.ints) for a in node.attribute if a.name == "splits"), [])
        assert len(node.output) == len(splits or [0]) == linears[node.name]
    # the FFN's first Linear hands its second the quantized (u8) input: no QuantizeLinear left between them
    u8_writers = [n for n in sparse_nodes if any(a.name == "output_type" and a.s == b"u8" for a in n.attribute)]
    assert facts.u8_handoffs == len(u8_writers) == facts.gelus_fused
    readers = {n.input[0] for n in sparse_nodes}
    assert all(n.output[0] in readers for n in u8_writers)
    assert not [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    # attention's query and key scaling (a scalar Mul after each one's Reshape and Transpose) is in the epilogue
    scaled = [n for n in qdq.graph.node if n.op_type == "Mul" and "attention/self/Mul" in n.name]
    assert facts.scales_folded == len(scaled) == 2 * facts.gelus_fused
    assert not [n for n in proto.graph.node if n.op_type == "Mul" and "attention/self/Mul" in n.name]

    # attention's keys come out of their op transposed per sequence: their Transpose(0, 2, 3, 1) is gone
    def key_transposes(graph):  # type: ignore[no-untyped-def]
        perms = [next((list(a.ints) for a in n.attribute if a.name == "perm"), []) for n in graph.node]
        return [p for n, p in zip(graph.node, perms, strict=True) if n.op_type == "Transpose" and p == [0, 2, 3, 1]]

    assert facts.keys_transposed == len(key_transposes(qdq.graph)) == facts.gelus_fused
    assert not key_transposes(proto.graph)

    # the query and value come out split into heads, [batch, heads, seq, size]: their Reshape and Transpose are
    # gone (the context's Transpose(0, 2, 1, 3) after attention stays)
    def head_transposes(graph):  # type: ignore[no-untyped-def]
        perms = [next((list(a.ints) for a in n.attribute if a.name == "perm"), []) for n in graph.node]
        return [p for n, p in zip(graph.node, perms, strict=True) if n.op_type == "Transpose" and p == [0, 2, 1, 3]]

    assert facts.heads_written == 2 * facts.gelus_fused
    # and attention's context is read as the product left it ([batch, heads, seq, size]): its Transpose goes too
    assert facts.context_in_heads == facts.gelus_fused
    assert len(head_transposes(qdq.graph)) == facts.heads_written + facts.context_in_heads
    assert not head_transposes(proto.graph)
    readers = [n for n in sparse_nodes if any(a.name == "input_heads" and a.i == 2 for a in n.attribute)]
    assert len(readers) == facts.context_in_heads and all(
        next(p for p in proto.graph.node if n.input[0] in p.output).op_type == "MatMul" for n in readers
    )
    heads_ops = [n for n in sparse_nodes if any(a.name == "heads" for a in n.attribute)]
    assert [list(next(a.ints for a in n.attribute if a.name == "heads")) for n in heads_ops] == [[2, 0, 2]] * len(
        heads_ops
    )
    # every FFN GELU (one per encoder layer) is computed in its Linear's epilogue; no Erf is left
    assert facts.gelus_fused == len([n for n in qdq.graph.node if n.op_type == "Erf"]) > 0
    assert not [n for n in proto.graph.node if n.op_type == "Erf"]
    gelu_nodes = [n for n in sparse_nodes if any(a.name == "activation" and a.i == 1 for a in n.attribute)]
    assert len(gelu_nodes) == facts.gelus_fused
    assert not any(n.op_type == "QuantizeLinear" and "weight" in n.input[0] for n in proto.graph.node)
    # the residual Add + LayerNorm after attention's output Linear and the FFN's second are their ops' last pass:
    # only the embeddings' LayerNorm is left
    norm_ops = [n for n in sparse_nodes if any(a.name == "norm_epsilon" for a in n.attribute)]
    layer_norms = [n for n in qdq.graph.node if n.op_type == "LayerNormalization"]
    assert facts.norms_fused == len(norm_ops) == 2 * facts.gelus_fused == len(layer_norms) - 1
    assert len([n for n in proto.graph.node if n.op_type == "LayerNormalization"]) == 1
    assert all(len(n.input) == 7 and len(n.output) == 1 for n in norm_ops)
    assert len(matmuls) < len([n for n in qdq.graph.node if n.op_type == "MatMul"])  # attention matmuls stay
    # The packed weights are the QDQ file's int8 weights, exactly.
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in sparse_nodes:  # a merged op holds its Linears' weights one after the other
        attrs = {a.name: a.i for a in node.attribute if a.name in ("rows", "cols")}
        unpacked = GroupWeights.from_bytes(inits[node.input[1]].tobytes(), attrs["rows"], attrs["cols"]).to_dense()
        for part in np.split(unpacked, linears[node.name]):
            assert any(np.array_equal(part, w.T) for w in int8_weights.values() if w.shape == part.T.shape)
    path = tmp_path / "model.sparse.onnx"
    onnx.save(proto, str(path))

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    qdq_model = core.compile_model(str(tiny_exports / "int8" / "model.onnx"), "CPU", config)
    openvino_op.add_to(core)
    # seq 32: whole 16-token chunks; seq 37 x 5: chunks that cross sequences (the transposed keys' other path)
    for feeds in (_feeds(tiny_exports / "int8"), _feeds(tiny_exports / "int8", 37, 5)):
        reference = qdq_model(feeds)[0]
        # every path; the AVX-512 ones in their blocks form too (its epilogue writes the u8 and transposed outputs)
        runs = [(isa, "") for isa in native.supported_isas()]
        runs += [(isa, "blocks") for isa in native.supported_isas() if isa in ("avx512_vnni", "amx")]
        for isa, form in runs:
            import os

            os.environ[native.ISA_ENV] = isa
            os.environ["PRUNEOFA_SPARSE_FORM"] = form
            try:
                got = core.compile_model(core.read_model(str(path)), "CPU", config)(feeds)[0]
            finally:
                os.environ.pop(native.ISA_ENV, None)
                os.environ.pop("PRUNEOFA_SPARSE_FORM", None)
            assert got.shape == reference.shape
            assert (got.argmax(-1) == reference.argmax(-1)).mean() >= 0.98, (isa, form)
            np.testing.assert_allclose(got, reference, atol=0.05)


def test_merged_linears_get_an_output_each_only_on_whole_row_blocks() -> None:
    """Query, key and value each get their own output of the op where no 16-row block straddles two of them;
    otherwise one output and a Split (any width still works)."""
    from pruneofa.kernels.sparse_form import _splits

    assert _splits([{"weight": np.zeros((32, 8))}] * 3) == [32, 32, 32]
    assert _splits([{"weight": np.zeros((32, 8))}, {"weight": np.zeros((20, 8))}]) == [32, 20]  # the last may be odd
    assert _splits([{"weight": np.zeros((24, 8))}] * 3) == []
    assert _splits([{"weight": np.zeros((24, 8))}]) == []
