"""The QDQ int8 ONNX export rewritten for pruneofa's sparse kernel: every int8 Linear
(QuantizeLinear -> DequantizeLinear -> MatMul <- DequantizeLinear(int8 W [K, N]) -> Add bias) becomes one
`ai.pruneofa.SparseInt8Linear` node holding the weights in K-group form (pruneofa/kernels/group_weights.py), with
the activation quantizer, weight scales and bias folded into its (mult, offset) epilogue, and a GELU that follows
it (the FFN's first Linear) folded in too; Linears that read the same quantized input (attention's query, key
and value) share one node, with an output each; a Linear whose result only the next one reads (the FFN's first,
feeding its second) hands it over already quantized (u8), as the QDQ graph's QuantizeLinear would; attention's
scaling of query and key (a constant Mul after their reshape and transpose) is folded into the epilogue, and the
keys are written transposed per sequence and the query and value split into heads, as attention's products read
them, and the op after attention reads its context as the product leaves it; the residual Add and LayerNorm after
attention's output Linear and the FFN's second are the op's last pass over its own output; and each layer's tail
(attention's output Linear, the FFN's two) is one op, a chain of three stages. Attention's products, softmax and
the rest of the graph are untouched, so OpenVINO keeps running them with its own kernels; the file loads in
OpenVINO after `pruneofa.kernels.openvino_op.add_to(core)`.

The arithmetic is the QDQ graph's (same rounding, same int8 values, exact int32 sums); only the float epilogue
is reassociated (and GELU's erf is a rational approximation within 4.2e-7), which moves logits by float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pruneofa.kernels import openvino_op
from pruneofa.kernels.group_weights import pack_groups


@dataclass
class Rewritten:
    layers: int
    weight_bytes: int  # packed K-group bytes of all rewritten layers
    dense_int8_bytes: int  # the same layers' int8 weights as the QDQ file stores them
    group_fill: float  # non-empty groups / all groups, over all rewritten layers
    gelus_fused: int = 0  # FFN GELUs folded into their op's epilogue
    ops: int = 0  # SparseInt8Linear nodes: Linears reading one quantized input share one (query, key, value)
    u8_handoffs: int = 0  # Linears handing the next their quantized input (u8) instead of floats (in a chain too)
    scales_folded: int = 0  # attention's query/key scaling (a Mul after Reshape, Transpose) in the epilogue
    keys_transposed: int = 0  # attention's keys written [batch, rows, seq] by the op (their Transpose dropped)
    norms_fused: int = 0  # residual Add + LayerNorm after a Linear, done by its op (the two nodes dropped)
    heads_written: int = 0  # query/value written [batch, heads, seq, size] by the op (Reshape, Transpose dropped)
    context_in_heads: int = 0  # ops reading attention's context [batch, heads, seq, size] (its Transpose dropped)
    chained: int = 0  # Linears run by the op before them in a chain (BERT's layer tail: one op for three)


class _Graph:
    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attr.t)
        self.producer = {out: node for node in graph.node for out in node.output}
        self.position = {id(node): i for i, node in enumerate(graph.node)}  # the graph's order as read
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def const(self, name: str) -> np.ndarray | None:
        return self.values.get(self.resolve(name))

    def made_by(self, name: str, op_type: str) -> Any:
        node = self.producer.get(self.resolve(name))
        return node if node is not None and node.op_type == op_type else None

    def only_user(self, name: str, op_type: str) -> Any:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def is_scalar(self, name: str, value: float) -> bool:
        found = self.const(name)
        return found is not None and found.size == 1 and bool(np.isclose(float(found.reshape(())), value, rtol=1e-6))


def _gelu_after(g: _Graph, out: str) -> tuple[str, list[Any]] | None:
    """(output, nodes) of the erf GELU that reads `out` and nothing else does, as torch exports BERT's:
    Div(out, sqrt 2) -> Erf -> Add(1) -> Mul(out, .) -> Mul(0.5); None when it is not that."""
    users = g.consumers.get(out, [])
    div = next((n for n in users if n.op_type == "Div"), None)
    mul = next((n for n in users if n.op_type == "Mul"), None)
    if len(users) != 2 or div is None or mul is None or list(div.input) != [out, div.input[1]]:
        return None
    if not g.is_scalar(div.input[1], float(np.sqrt(2.0))):
        return None
    erf = g.only_user(div.output[0], "Erf")
    add = g.only_user(erf.output[0], "Add") if erf is not None else None
    if add is None or not g.is_scalar(next((i for i in add.input if i != erf.output[0]), ""), 1.0):
        return None
    if sorted(mul.input) != sorted([out, add.output[0]]):
        return None
    half = g.only_user(mul.output[0], "Mul")
    if half is None or not g.is_scalar(next((i for i in half.input if i != mul.output[0]), ""), 0.5):
        return None
    return half.output[0], [div, erf, add, mul, half]


def _reshape_transpose(g: _Graph, out: str) -> tuple[Any, Any] | None:
    """(reshape, transpose) where `out` goes only into a Reshape and that only into a Transpose, as attention's
    query, key and value do (to [batch, heads, seq, size] or, for the key, [batch, heads, size, seq])."""
    reshape = g.only_user(out, "Reshape")
    transpose = g.only_user(reshape.output[0], "Transpose") if reshape is not None else None
    return (reshape, transpose) if transpose is not None else None


def _scale_after(g: _Graph, out: str) -> tuple[float, Any, Any, list[Any]] | None:
    """(s, transpose, mul, shapes) where `out` goes only through Reshape -> Transpose -> Mul(scalar s) (and Shape
    nodes reading the transposed tensor), as attention scales its query and key (transformers' export multiplies
    each by 1 / sqrt(sqrt(head size))): a scale that commutes with the reshape and the transpose, so the Linear's
    epilogue can apply it; None when it is not that."""
    found = _reshape_transpose(g, out)
    if found is None:
        return None
    transpose = found[1]
    users = g.consumers.get(transpose.output[0], [])
    muls = [n for n in users if n.op_type == "Mul"]
    shapes = [n for n in users if n.op_type == "Shape"]
    if len(muls) != 1 or len(muls) + len(shapes) != len(users):
        return None
    other = g.const(next((i for i in muls[0].input if i != transpose.output[0]), ""))
    if other is None or other.size != 1 or not np.isfinite(other).all():
        return None
    return float(other.reshape(())), transpose, muls[0], shapes


def _keys_transposed(g: _Graph, out: str) -> tuple[Any, Any] | None:
    """(reshape, transpose) where `out` goes only through Reshape([batch, seq, heads, head size]) ->
    Transpose(0, 2, 3, 1), as attention's key does before its product with the query: a transpose per sequence
    the op can write directly (OpenVINO ran it as a generic transpose, ~5% of BERT-base's time at batch 1),
    leaving only a reshape; None when it is not that."""
    found = _reshape_transpose(g, out)
    perm = next((list(a.ints) for a in found[1].attribute if a.name == "perm"), None) if found else None
    return found if perm == [0, 2, 3, 1] else None


def _heads_after(g: _Graph, out: str, rows: int) -> tuple[Any, Any, int] | None:
    """(reshape, transpose, H) where `out` goes only through Reshape([batch, seq, H or -1, rows / H]) ->
    Transpose(0, 2, 1, 3), as attention's query and value do: the op can write [batch, H, seq, rows / H] itself
    (OpenVINO ran each as a generic transpose); None when it is not that, or a head is not whole row blocks."""
    found = _reshape_transpose(g, out)
    perm = next((list(a.ints) for a in found[1].attribute if a.name == "perm"), None) if found else None
    if found is None or perm != [0, 2, 1, 3]:
        return None
    target = g.const(found[0].input[1])
    if target is None:  # built at run time: [batch, seq] from the input's shape, then constant [H, size]
        concat = g.made_by(found[0].input[1], "Concat")
        tail = [g.const(i) for i in concat.input] if concat is not None else []
        known: list[int] = []
        for value in reversed(tail):
            if value is None:
                break
            known = [int(v) for v in value.reshape(-1)] + known
        target = np.asarray([0, 0, *known[-2:]]) if len(known) >= 2 else None
    if target is None or target.size != 4:
        return None
    heads, size = int(target.reshape(-1)[2]), int(target.reshape(-1)[3])
    if heads == -1 and size > 0 and rows % size == 0:  # transformers' export: [batch, seq, -1, head size]
        heads = rows // size
    if heads <= 0 or rows % heads or size not in (rows // heads, -1) or (rows // heads) % 16:
        return None
    return found[0], found[1], heads


def _context_in_heads(g: _Graph, x: str, cols: int, heads_of: dict[str, int]) -> tuple[str, int] | None:
    """(tensor, H) where `x` is attention's context made [batch, seq, cols] from its product with a value that an
    op writes split into H heads: MatMul(probabilities, value) [batch, H, seq, cols / H] -> (Reshape to
    [batch, -1 or H, seq, cols / H]) -> Transpose(0, 2, 1, 3) -> Reshape: the op can read the product itself, in
    heads layout (it checks the shape it gets at run time). None when `x` is not that."""
    outer = g.made_by(x, "Reshape")
    transpose = g.made_by(outer.input[0], "Transpose") if outer is not None else None
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None) if transpose else None
    if transpose is None or perm != [0, 2, 1, 3]:
        return None
    source, inner = transpose.input[0], g.made_by(transpose.input[0], "Reshape")
    if inner is not None:
        source = inner.input[0]
    product = g.made_by(source, "MatMul")
    heads = heads_of.get(product.input[1]) if product is not None else None
    if heads is None or cols % heads or (cols // heads) % 16:
        return None
    if inner is not None and not _keeps_heads(g, inner.input[1], heads, cols // heads):
        return None
    return product.output[0], heads


def _keeps_heads(g: _Graph, target: str, heads: int, size: int) -> bool:
    """Whether a Reshape to `target` leaves a [batch, heads, seq, size] tensor as it is: a 4-entry shape whose
    heads entry is -1 or `heads` and whose last is `size` (or read from a shape at run time)."""
    shape = g.const(target)
    if shape is not None:
        values = [int(v) for v in shape.reshape(-1)]
        return len(values) == 4 and values[1] in (-1, heads) and values[3] in (-1, size)
    concat = g.made_by(target, "Concat")
    if concat is None or len(concat.input) != 4:
        return False
    parts = [g.const(i) for i in concat.input]
    if any(p is not None and p.size != 1 for p in parts):
        return False
    second, last = parts[1], parts[3]
    return (second is None or int(second.reshape(())) in (-1, heads)) and (
        last is None or int(last.reshape(())) in (-1, size)
    )


def _norm_after(g: _Graph, out: str) -> tuple[openvino_op.ResidualNorm, list[Any], str] | None:
    """The residual Add and LayerNormalization (last axis, constant gamma and beta) that only `out` feeds, as in
    BERT after attention's output Linear and the FFN's second: (the norm, its nodes, the LayerNorm's output)."""
    add = g.only_user(out, "Add")
    norm = g.only_user(add.output[0], "LayerNormalization") if add is not None else None
    if norm is None or len(norm.input) < 3 or any(o for o in norm.output[1:]):
        return None
    residual = next((i for i in add.input if i != out), None)
    gamma, beta = g.const(norm.input[1]), g.const(norm.input[2])
    attrs = {a.name: a for a in norm.attribute}
    axis = attrs["axis"].i if "axis" in attrs else -1
    if residual is None or list(add.input).count(out) != 1 or g.const(residual) is not None:
        return None
    if gamma is None or beta is None or gamma.ndim != 1 or beta.shape != gamma.shape or axis != -1:
        return None
    epsilon = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
    return openvino_op.ResidualNorm(residual, gamma, beta, float(epsilon)), [add, norm], norm.output[0]


def _axis(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _match_linear(g: _Graph, matmul: Any, fuse: bool = True) -> dict[str, Any] | None:
    """The parts of one int8 Linear around `matmul`, or None when it is not one (e.g. attention's matmuls); without
    `fuse`, of the Linear, its bias and its GELU only."""
    dq_w = g.made_by(matmul.input[1], "DequantizeLinear")
    dq_x = g.made_by(matmul.input[0], "DequantizeLinear")
    q_x = g.made_by(dq_x.input[0], "QuantizeLinear") if dq_x is not None else None
    if dq_w is None or q_x is None:
        return None
    w = g.const(dq_w.input[0])
    w_scale = g.const(dq_w.input[1])
    w_zero = g.const(dq_w.input[2]) if len(dq_w.input) > 2 else np.zeros(1, np.int8)
    x_scale, x_zero = g.const(dq_x.input[1]), g.const(dq_x.input[2]) if len(dq_x.input) > 2 else None
    if w is None or w.dtype != np.int8 or w.ndim != 2 or w_scale is None or x_scale is None or x_zero is None:
        return None
    if x_scale.size != 1 or x_zero.dtype != np.uint8 or np.any(w_zero != 0):
        return None
    if w_scale.size != 1 and _axis(dq_w) != 1:
        return None
    rows = w.shape[1]
    out_name, bias, add = matmul.output[0], np.zeros(rows, np.float32), None
    users = g.consumers.get(out_name, [])
    if len(users) == 1 and users[0].op_type == "Add":
        other = [n for n in users[0].input if n != out_name]
        value = g.const(other[0]) if len(other) == 1 else None
        if value is not None and value.size == rows:
            bias, add, out_name = value.reshape(rows).astype(np.float32), users[0], users[0].output[0]
    activation, gelu = "none", _gelu_after(g, out_name)
    if gelu is not None:  # fused into the op's epilogue (OpenVINO fuses it into its FullyConnected likewise)
        out_name, activation = gelu[0], "gelu"
    after = gelu is None and fuse  # what else follows the Linear that the op can take
    scale = _scale_after(g, out_name) if after else None
    keys = _keys_transposed(g, out_name) if after else None
    heads = _heads_after(g, out_name, rows) if after and keys is None else None
    norm = _norm_after(g, out_name) if after and scale is None and keys is None else None
    if norm is not None and (norm[0].gamma.size != rows or not _written_before(g, norm[0].residual, matmul)):
        norm = None
    if norm is not None:  # the op adds the residual and normalizes its rows: the Add and LayerNorm go
        out_name = norm[2]
    w_scale = np.broadcast_to(w_scale.astype(np.float32).reshape(-1), (rows,)).copy()
    if scale is not None:  # y * s = acc * (mult * s) + offset * s: the epilogue takes the scale, the Mul goes
        w_scale, bias = w_scale * np.float32(scale[0]), bias * np.float32(scale[0])
    return {
        "x": q_x.input[0],
        "quantizers": [q_x, dq_x, matmul],  # the input's path into this Linear
        "out": out_name,
        "activation": activation,
        "weight": np.ascontiguousarray(w.T),  # [N, K], the kernel's layout
        "w_scale": w_scale,
        "scaled": scale[1:] if scale is not None else None,  # (transpose, mul, shapes): the Mul to drop
        "keys": keys,  # (reshape, transpose): written transposed by the op, a reshape left
        "heads": heads,  # (reshape, transpose, H): written [batch, H, seq, size] by the op, both dropped
        "bias": bias,
        "x_scale": float(x_scale.reshape(())),
        "x_zero": int(x_zero.reshape(())),
        "norm": norm[0] if norm is not None else None,
        "removed": [matmul]
        + ([add] if add is not None else [])
        + (gelu[1] if gelu is not None else [])
        + (norm[1] if norm is not None else []),
    }


def _written_before(g: _Graph, tensor: str, node: Any) -> bool:
    """Whether `tensor` is a graph input or made by a node before `node` (the op, put in its place, reads it)."""
    producer = g.producer.get(tensor)
    return producer is None or g.position[id(producer)] < g.position[id(node)]


def _merged(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Linears that read one quantized input (attention's query, key and value) as one: weights stacked along
    the outputs, so the op quantizes that input once and runs one parallel region instead of three."""
    if len(members) == 1:
        return members[0]
    return {
        **members[0],
        "weight": np.concatenate([m["weight"] for m in members]),
        "w_scale": np.concatenate([m["w_scale"] for m in members]),
        "bias": np.concatenate([m["bias"] for m in members]),
    }


def _splits(members: list[dict[str, Any]]) -> list[int]:
    """Each merged Linear's rows, when each can have its own output of the op (all but the last a multiple of the
    kernel's 16-row blocks, so that no block straddles two outputs); [] when a Split must hand them back."""
    rows = [m["weight"].shape[0] for m in members]
    return rows if len(rows) > 1 and all(r % 16 == 0 for r in rows[:-1]) else []


def _feeds_only(g: _Graph, tensor: str, members: list[dict[str, Any]]) -> bool:
    """Whether `tensor` is read only through the quantizers of `members` (and is not a graph output): then the op
    that writes it can write its quantized u8 form instead, and the members' op read that."""
    if tensor in {o.name for o in g.graph.output}:
        return False
    path = {id(node) for m in members for node in m["quantizers"]}
    frontier = list(g.consumers.get(tensor, []))
    while frontier:
        node = frontier.pop()
        if id(node) not in path:
            return False
        if node.op_type != "MatMul":
            frontier.extend(g.consumers.get(node.output[0], []))
    return True


def _reshape_transposed_keys(graph: Any, reshape: Any, keys: str, final: str) -> None:
    """Turn attention's Reshape([batch, seq, heads, size]) of the keys into the reshape of the op's transposed
    output [batch, rows, seq] to [batch, heads, size, seq]: the same target shape, permuted as the Transpose after
    it did (a Gather of the shape tensor), in the Reshape's own place in the graph."""
    from onnx import helper, numpy_helper

    perm = f"{keys}.perm"
    graph.initializer.append(numpy_helper.from_array(np.asarray([0, 2, 3, 1], np.int64), perm))
    gather = helper.make_node("Gather", [reshape.input[1], perm], [f"{keys}.shape"], name=f"{keys}.shape", axis=0)
    graph.node.insert(list(graph.node).index(reshape), gather)
    reshape.input[0], reshape.input[1], reshape.output[0] = keys, f"{keys}.shape", final


def _after_heads(member: dict[str, Any]) -> str:
    """The tensor attention reads where the op writes a Linear's result split into heads: the scale's Mul's
    output, or the Transpose's."""
    return str(member["scaled"][1].output[0] if member["scaled"] is not None else member["heads"][1].output[0])


def _drop_what_the_op_took(graph: Any, member: dict[str, Any], transposed_keys: bool, heads: bool) -> None:
    """Remove the nodes after a Linear that its op now does itself: the scale's Mul (the epilogue applies it);
    for keys written transposed, the Transpose (a reshape of the op's output takes its place); for a result
    written split into heads, the Reshape and Transpose; keeping the name their readers read."""
    if member["scaled"] is None and not transposed_keys and not heads:
        return
    transpose, mul, shapes = member["scaled"] or ((member["keys"] or member["heads"])[1], None, [])
    final = mul.output[0] if mul is not None else transpose.output[0]
    for shape in shapes:  # the same shape, under the name the transposed tensor now has
        shape.input[0] = final
    if mul is not None:
        graph.node.remove(mul)
    if transposed_keys:  # the op wrote [batch, rows, seq]: only the reshape to [batch, heads, size, seq] is left
        _reshape_transposed_keys(graph, member["keys"][0], f"{member['out']}.keys", final)
        graph.node.remove(transpose)
    elif heads:  # the op wrote [batch, heads, seq, size], named as the tensor attention reads
        graph.node.remove(member["heads"][0])
        graph.node.remove(transpose)
    else:
        transpose.output[0] = final  # the Mul's readers read the (already scaled) transpose


def rewrite(proto: Any, fuse: bool = True) -> Rewritten:
    """Rewrite `proto` (a loaded QDQ ONNX model) in place; dead Q/DQ nodes and int8 initializers are dropped.
    `fuse=False` writes the op's plain form: one op per Linear (GELU folded in), f32 in and out, nothing else
    taken from the graph (the form onnxruntime's build of the op runs: benchmarks/onnxruntime_probe.py)."""
    from onnx import helper, numpy_helper

    g = _Graph(proto.graph)
    matmuls = (n for n in proto.graph.node if n.op_type == "MatMul")
    matched = [p for p in (_match_linear(g, n, fuse) for n in matmuls) if p is not None]
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    by_input: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for i, parts in enumerate(matched):
        key = (g.resolve(parts["x"]), parts["x_scale"], parts["x_zero"], parts["activation"], parts["weight"].shape[1])
        alone = not fuse or opset < 13 or parts["norm"] is not None  # Split's sizes: opset 13; a norm is one Linear's
        by_input.setdefault((i,) if alone else key, []).append(parts)
    groups = list(by_input.values())
    # A Linear whose result only the next op reads (the FFN's first Linear, GELU fused, feeding its second) hands
    # it over quantized: u8 out, u8 in, one byte per value instead of four and no second quantizing pass.
    u8_into: dict[int, tuple[str, float, int]] = {}  # writer's group -> (u8 tensor, its scale, its zero point)
    handed: dict[str, str] = {}  # the float tensor -> its u8 form, for the reader
    for reader in groups:
        x = g.resolve(reader[0]["x"])
        writer = next((i for i, w in enumerate(groups) if len(w) == 1 and w[0]["out"] == x), None)
        if fuse and writer is not None and _feeds_only(g, x, reader):
            u8_into[writer] = (f"{x}.u8", reader[0]["x_scale"], reader[0]["x_zero"])
            handed[x] = f"{x}.u8"
    # Values written split into heads (-> H), and the op reading attention's context made from one of them, which
    # reads the product in heads layout instead (-> (the product, H)).
    heads_of = {
        _after_heads(m): m["heads"][2]
        for members in groups
        if _splits(members) or len(members) == 1
        for m in members
        if m["heads"] is not None
    }
    context: dict[int, tuple[str, int]] = {}
    for index, members in enumerate(groups):
        found = _context_in_heads(g, members[0]["x"], members[0]["weight"].shape[1], heads_of)
        if len(members) == 1 and found is not None and g.resolve(members[0]["x"]) not in handed:
            context[index] = found
    chains = _chains(g, groups, u8_into, handed) if fuse else {}
    chained = {k for stages in chains.values() for k in stages}
    ops = weight_bytes = dense_bytes = gelus = keys_written = norms = split_heads = chain_links = 0
    filled = total = 0
    for index, members in enumerate(groups):
        if index in chained:  # run by its chain's op
            continue
        parts = _merged(members)
        weights = pack_groups(parts["weight"])
        mult, offset = openvino_op.epilogue(
            parts["w_scale"], parts["bias"], parts["x_scale"], parts["x_zero"], parts["weight"]
        )
        name = f"sparse_linear_{ops}"
        splits = _splits(members)
        own_outputs = bool(splits) or len(members) == 1
        keys = [m["keys"] is not None and own_outputs for m in members]
        heads = [m["heads"][2] if m["heads"] is not None and own_outputs else 0 for m in members]
        keys_written += sum(keys)
        split_heads += sum(h > 0 for h in heads)
        outs = [
            f"{m['out']}.keys" if k else _after_heads(m) if h else m["out"]
            for m, k, h in zip(members, keys, heads, strict=True)
        ]
        out: str | list[str] = outs if own_outputs else f"{name}.out"
        u8_output = None
        if index in u8_into:
            out, u8_output = u8_into[index][0], u8_into[index][1:]
        x = handed.get(g.resolve(parts["x"]), parts["x"])
        x, input_heads = context.get(index, (x, 0))
        stages = [groups[k][0] for k in chains.get(index, [])]
        then = [_chain_stage(stage, members[0]["out"], i > 0) for i, stage in enumerate(stages)]
        if stages:
            out = stages[-1]["out"]
        node, inits = openvino_op.node_and_initializers(
            name, x, out, weights, parts["x_scale"], parts["x_zero"], mult, offset, parts["activation"],
            len(members) + len(stages), splits, u8_output, keys, parts["norm"], heads, input_heads, then,
        )  # fmt: skip
        nodes = [node]
        if len(members) > 1 and not splits:  # each Linear's own output back, as its readers expect it
            sizes = np.asarray([m["weight"].shape[0] for m in members], np.int64)
            inits.append(numpy_helper.from_array(sizes, f"{name}.sizes"))
            split = helper.make_node("Split", [f"{name}.out", f"{name}.sizes"], outs, name=f"{name}.split", axis=-1)
            nodes.append(split)
        gelus += len(members) if parts["activation"] == "gelu" else 0
        gelus += sum(stage["activation"] == "gelu" for stage in stages)
        norms += (parts["norm"] is not None) + sum(stage["norm"] is not None for stage in stages)
        chain_links += len(stages)
        graph_nodes = list(proto.graph.node)
        position = min(graph_nodes.index(m["removed"][0]) for m in members)
        for old in (n for m in [*members, *stages] for n in m["removed"]):
            proto.graph.node.remove(old)
        for member, transposed_keys, h in zip(members, keys, heads, strict=True):
            _drop_what_the_op_took(proto.graph, member, transposed_keys, h > 0)
        for offset_in_graph, new in enumerate(nodes):
            proto.graph.node.insert(position + offset_in_graph, new)
        proto.graph.initializer.extend(inits)
        ops += 1
        layers = [(weights, parts["weight"]), *((t.weights, m["weight"]) for t, m in zip(then, stages, strict=True))]
        for packed, dense in layers:
            weight_bytes += len(packed.to_bytes())
            dense_bytes += dense.size
            filled += packed.nonempty_groups
            total += packed.rows * ((packed.cols + 3) // 4)
    drop_dead(proto.graph)
    if ops:
        proto.opset_import.append(helper.make_opsetid(openvino_op.DOMAIN, 1))
    fill = filled / total if total else 0.0
    folded = sum(m["scaled"] is not None for m in matched)
    return Rewritten(
        len(matched), weight_bytes, dense_bytes, fill, gelus, ops, len(u8_into), folded, keys_written, norms,
        split_heads, len(context), chain_links,
    )  # fmt: skip


def _chains(
    g: _Graph, groups: list[list[dict[str, Any]]], u8_into: dict[int, tuple[str, float, int]], handed: dict[str, str]
) -> dict[int, list[int]]:
    """BERT's layer tails as chains, head group -> [its stages' groups]: a Linear with a residual norm (attention's
    output) whose result only the next Linear reads (the FFN's first, GELU, handing its u8 result to the FFN's
    second) and the residual norm of that second Linear reads, which has a norm too."""
    found: dict[int, list[int]] = {}
    for head, members in enumerate(groups):
        out = members[0]["out"]
        if len(members) != 1 or members[0]["norm"] is None or members[0]["heads"] is not None:
            continue
        first = next((i for i, grp in enumerate(groups) if len(grp) == 1 and g.resolve(grp[0]["x"]) == out), None)
        if first is None or first not in u8_into:
            continue
        x_second = groups[first][0]["out"]  # what the first hands over (as u8) is the second's input
        second = next((i for i, grp in enumerate(groups) if len(grp) == 1 and g.resolve(grp[0]["x"]) == x_second), None)
        if second is None or groups[second][0]["norm"] is None or groups[second][0]["norm"].residual != out:
            continue
        readers = {id(n) for n in groups[first][0]["quantizers"]} | {id(n) for n in groups[second][0]["removed"]}
        if out in handed or out in {o.name for o in g.graph.output}:
            continue
        if all(id(n) in readers for n in g.consumers.get(out, [])):
            found[head] = [first, second]
    return found


def _chain_stage(member: dict[str, Any], head_out: str, u8_input: bool) -> openvino_op.ChainStage:
    """One Linear as a stage of its chain's op (its norm's residual: the head's result)."""
    weights = pack_groups(member["weight"])
    mult, offset = openvino_op.epilogue(
        member["w_scale"], member["bias"], member["x_scale"], member["x_zero"], member["weight"]
    )
    norm = member["norm"]
    stage_norm = None
    if norm is not None:
        if norm.residual != head_out:
            raise ValueError(f"a chain stage's residual must be its head's result, not {norm.residual}")
        stage_norm = (norm.gamma, norm.beta, norm.epsilon, 0)
    return openvino_op.ChainStage(
        weights, member["x_scale"], member["x_zero"], mult, offset, member["activation"], stage_norm, u8_input
    )


def drop_dead(graph: Any) -> None:
    """Remove nodes whose outputs nobody reads (the old Q/DQ chains), then unused initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(out in used for out in n.output)]
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    used = {name for node in graph.node for name in node.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
