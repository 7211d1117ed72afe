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
    from onnx import helper, numpy_helper

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
    # query, key and value read one quantized input: one op for the three, with an output each (no Split); each
    # layer's tail (attention's output Linear, the FFN's two) is one op too, a chain of three
    attributes = {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in sparse_nodes}
    linears = {name: attrs.get("linears", 1) for name, attrs in attributes.items()}
    chains = [n for n in sparse_nodes if "then_rows" in attributes[n.name]]
    assert sum(linears.values()) == facts.layers > facts.ops and max(linears.values()) == 3
    assert facts.chained == 2 * len(chains) == 2 * facts.gelus_fused and facts.ops == 2 * len(chains) + 2
    assert not [n for n in proto.graph.node if n.op_type == "Split"]
    for node in sparse_nodes:
        splits = attributes[node.name].get("splits", [])
        if node in chains:
            assert len(node.output) == 1 and linears[node.name] == 3
        else:
            assert len(node.output) == len(splits or [0]) == linears[node.name]
    # the FFN's first Linear hands its second the quantized (u8) input, inside the chain: no QuantizeLinear left
    assert all(attributes[n.name]["then_u8_input"] == [0, 1] for n in chains)
    assert facts.u8_handoffs == len(chains) == facts.gelus_fused
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
    assert [attributes[n.name]["then_activation"] for n in chains] == [[1, 0]] * facts.gelus_fused
    assert not [n for n in sparse_nodes if attributes[n.name].get("activation")]
    assert not any(n.op_type == "QuantizeLinear" and "weight" in n.input[0] for n in proto.graph.node)
    # the residual Add + LayerNorm after attention's output Linear and the FFN's second are their ops' last pass:
    # only the embeddings' LayerNorm is left
    # (a chain's first and last stage: the second's residual is the first's result)
    layer_norms = [n for n in qdq.graph.node if n.op_type == "LayerNormalization"]
    assert facts.norms_fused == 2 * facts.gelus_fused == len(layer_norms) - 1
    assert all("norm_epsilon" in attributes[n.name] and len(n.input) == 7 + 3 + 5 for n in chains)
    assert all(attributes[n.name]["then_norm_residual"][1] == 0 for n in chains)
    assert len([n for n in proto.graph.node if n.op_type == "LayerNormalization"]) == 1
    assert len(matmuls) < len([n for n in qdq.graph.node if n.op_type == "MatMul"])  # attention matmuls stay
    # The packed weights are the QDQ file's int8 weights, exactly.
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in sparse_nodes:  # a merged op holds its Linears' weights one after the other; a chain, each stage's
        attrs = attributes[node.name]
        packed = [(node.input[1], attrs["rows"], attrs["cols"])]
        if node in chains:  # the stages' packed weights: inputs 7 and 10, each reading the stage before
            packed += [(node.input[7], attrs["then_rows"][0], attrs["rows"])]
            packed += [(node.input[10], attrs["then_rows"][1], attrs["then_rows"][0])]
        for tensor, rows, cols in packed:
            unpacked = GroupWeights.from_bytes(inits[tensor].tobytes(), rows, cols).to_dense()
            for part in np.split(unpacked, 1 if node in chains else linears[node.name]):
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


def test_plain_form_is_one_op_per_linear_and_matches_the_qdq_model(tiny_exports: Path, tmp_path: Path) -> None:
    """`fuse=False` (the form onnxruntime's build of the op runs, benchmarks/onnxruntime_probe.py): each Linear its
    own op with f32 in and out and only its GELU folded in; the graph around it is the QDQ model's."""
    import onnx
    import openvino as ov
    from onnx import helper

    from pruneofa.kernels.sparse_form import rewrite

    qdq = onnx.load(str(tiny_exports / "int8" / "model.onnx"))
    proto = onnx.load(str(tiny_exports / "int8" / "model.onnx"))
    facts = rewrite(proto, fuse=False)
    sparse_nodes = [n for n in proto.graph.node if n.op_type == openvino_op.OP_TYPE]
    assert facts.ops == facts.layers == len(sparse_nodes) > 0
    assert facts.gelus_fused == len([n for n in qdq.graph.node if n.op_type == "Erf"]) > 0
    taken = (facts.u8_handoffs, facts.scales_folded, facts.keys_transposed, facts.norms_fused, facts.heads_written)
    assert taken == (0, 0, 0, 0, 0) and facts.context_in_heads == facts.chained == 0
    allowed = {"rows", "cols", "x_scale", "x_zero_point", "activation"}
    for node in sparse_nodes:
        assert len(node.input) == 4 and len(node.output) == 1
        assert {a.name for a in node.attribute} <= allowed, helper.printable_node(node)
    for op_type in ("LayerNormalization", "Transpose"):  # what the fused form takes from the graph stays
        assert len([n for n in proto.graph.node if n.op_type == op_type]) == len(
            [n for n in qdq.graph.node if n.op_type == op_type]
        )
    path = tmp_path / "model.sparse-plain.onnx"
    onnx.save(proto, str(path))
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    feeds = _feeds(tiny_exports / "int8", 37, 5)
    reference = core.compile_model(str(tiny_exports / "int8" / "model.onnx"), "CPU", config)(feeds)[0]
    openvino_op.add_to(core)
    got = core.compile_model(core.read_model(str(path)), "CPU", config)(feeds)[0]
    assert (got.argmax(-1) == reference.argmax(-1)).mean() >= 0.98
    np.testing.assert_allclose(got, reference, atol=0.05)


def test_merged_linears_get_an_output_each_only_on_whole_row_blocks() -> None:
    """Query, key and value each get their own output of the op where no 16-row block straddles two of them;
    otherwise one output and a Split (any width still works)."""
    from pruneofa.kernels.sparse_form import _splits

    assert _splits([{"weight": np.zeros((32, 8))}] * 3) == [32, 32, 32]
    assert _splits([{"weight": np.zeros((32, 8))}, {"weight": np.zeros((20, 8))}]) == [32, 20]  # the last may be odd
    assert _splits([{"weight": np.zeros((24, 8))}] * 3) == []
    assert _splits([{"weight": np.zeros((24, 8))}]) == []
