"""The sparse int8 kernel per Linear layer against the dense int8 engines of the same layer, one interleaved run.

For each layer shape (out x in features; BERT-base and MiniLM FFN/attention shapes) and token count, one 90%
unstructured-sparse int8 layer with per-channel weight scales and a u8 per-tensor activation quantizer:
- `ort-int8`:  QDQ ONNX (QuantizeLinear -> DequantizeLinear -> MatMul <- DequantizeLinear(W int8) -> Add) run by
               onnxruntime (it fuses to an int8 matmul);
- `ov-int8`:   the same QDQ ONNX compiled by OpenVINO (f32 hint; its FullyConnected runs int8 brgemm);
- `ov-sparse-<path>`: the same layer as pruneofa's `SparseInt8Linear` op inside OpenVINO, for each kernel path
               this CPU runs ($PRUNEOFA_SPARSE_ISA switched between rounds); the AVX-512 paths in both their
               weight forms (`-rows`: each row its own groups (amx: bitmask tiles), `-blocks`: each 16-output
               block's groups, output lanes (both paths); $PRUNEOFA_SPARSE_FORM).
Every variant is timed in every round (order rotated); the median per call is reported with ratios to the best
dense int8 engine of the same layer, measured in the same run. CPU flags go with the result.

    .venv/bin/python benchmarks/sparse_kernel.py                       # all shapes, tokens 1 16 128 1024
    .venv/bin/python benchmarks/sparse_kernel.py --shapes 768x768 --tokens 128 --rounds 5
Prints a table, then one JSON line (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMS = ("rows", "blocks")
FORM_ENV = "PRUNEOFA_SPARSE_FORM"
SHAPES = ("768x768", "3072x768", "768x3072", "384x384", "1536x384", "384x1536")


def layer_shape(text: str) -> tuple[int, int]:
    """'3072x768' -> (3072, 768), or an argparse error naming the value."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give out x in features, e.g. 3072x768") from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both features must be positive")
    return rows, cols


def layer(
    rng: np.random.Generator, rows: int, cols: int, sparsity: float, block: int = 1, block_rows: int = 1
) -> dict[str, Any]:
    """Random int8 weights with `sparsity` zeros: single weights, or whole blocks of `block_rows` outputs x
    `block` inputs (sparsify --block_rows/--block), so the kernel sees the pattern that option makes."""
    w = rng.integers(-127, 128, (rows, cols)).astype(np.int8)
    w[w == 0] = 1
    dropped = rng.random((-(-rows // block_rows), -(-cols // block))) < sparsity
    w[np.repeat(np.repeat(dropped, block_rows, axis=0), block, axis=1)[:rows, :cols]] = 0
    return {
        "w": w,
        "w_scale": (rng.random(rows) * 0.01 + 1e-3).astype(np.float32),
        "bias": rng.standard_normal(rows).astype(np.float32),
        "x_scale": 0.03,
        "x_zero_point": 128,
    }


def qdq_model(spec: dict[str, Any]) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rows, cols = spec["w"].shape
    inits = [
        numpy_helper.from_array(np.array(spec["x_scale"], np.float32), "xs"),
        numpy_helper.from_array(np.array(spec["x_zero_point"], np.uint8), "xz"),
        numpy_helper.from_array(np.ascontiguousarray(spec["w"].T), "w"),  # ONNX MatMul: [K, N]
        numpy_helper.from_array(spec["w_scale"], "ws"),
        numpy_helper.from_array(np.zeros(rows, np.int8), "wz"),
        numpy_helper.from_array(spec["bias"], "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=1),
        helper.make_node("MatMul", ["xd", "wd"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", cols])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", rows])
    graph = helper.make_graph(nodes, "qdq_linear", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def sparse_model(spec: dict[str, Any]) -> Any:
    from onnx import TensorProto, helper

    from pruneofa.kernels import openvino_op
    from pruneofa.kernels.group_weights import pack_groups

    rows, cols = spec["w"].shape
    mult, offset = openvino_op.epilogue(spec["w_scale"], spec["bias"], spec["x_scale"], spec["x_zero_point"], spec["w"])
    node, inits = openvino_op.node_and_initializers(
        "fc", "x", "y", pack_groups(spec["w"]), spec["x_scale"], spec["x_zero_point"], mult, offset
    )
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", cols])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", rows])
    graph = helper.make_graph([node], "sparse_linear", [x], [y], inits)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(openvino_op.DOMAIN, 1)]
    )


def runners(spec: dict[str, Any], threads: int, folder: Path) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from pruneofa.kernels import native, openvino_op

    qdq, sparse = folder / "qdq.onnx", folder / "sparse.onnx"
    onnx.save(qdq_model(spec), qdq)
    onnx.save(sparse_model(spec), sparse)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(qdq), options, providers=["CPUExecutionProvider"])
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    core = ov.Core()
    openvino_op.add_to(core)
    ov_int8 = core.compile_model(core.read_model(str(qdq)), "CPU", config).create_infer_request()
    ov_sparse = core.compile_model(core.read_model(str(sparse)), "CPU", config).create_infer_request()
    out: dict[str, Any] = {
        "ort-int8": (None, lambda x: session.run(None, {"x": x})),
        "ov-int8": (None, lambda x: ov_int8.infer({"x": x})),
    }
    for isa in native.supported_isas():
        if isa not in ("avx512_vnni", "amx"):
            out[f"ov-sparse-{isa}"] = (isa, lambda x: ov_sparse.infer({"x": x}))
            continue
        # Both weight forms: the op builds a path's form on its first call, as $PRUNEOFA_SPARSE_FORM says.
        for form in FORMS:
            request = core.compile_model(core.read_model(str(sparse)), "CPU", config).create_infer_request()
            os.environ[native.ISA_ENV], os.environ[FORM_ENV] = isa, form
            request.infer({"x": np.zeros((1, spec["w"].shape[1]), np.float32)})
            out[f"ov-sparse-{isa}-{form}"] = (isa, lambda x, r=request: r.infer({"x": x}))
        os.environ.pop(native.ISA_ENV)
        os.environ.pop(FORM_ENV)
    return out


def time_call(fn: Any, x: np.ndarray, seconds: float) -> float:
    """Median seconds per call over a short burst."""
    fn(x)
    samples: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(samples) < 5:
        start = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shapes", nargs="+", type=layer_shape, default=[layer_shape(s) for s in SHAPES], help="e.g. 3072x768"
    )
    parser.add_argument("--tokens", nargs="+", type=int, default=[1, 16, 128, 1024])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--block", type=int, default=1, help="zeros in groups of N inputs (sparsify --block)")
    parser.add_argument(
        "--block_rows", type=int, default=1, help="... of M outputs each (sparsify --block_rows; 16 suits AMX)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.3, help="per variant per round")
    parser.add_argument("--isas", nargs="+", default=None, help="kernel paths to time (default: all this CPU runs)")
    parser.add_argument(
        "--no_amx",
        action="store_true",
        help="behave as a CPU without AMX: OpenVINO through ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, the amx path out",
    )
    args = parser.parse_args()
    if args.no_amx:  # before OpenVINO loads oneDNN: the variable is read once
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"

    from pruneofa.core import hardware
    from pruneofa.kernels import native, openvino_op
    from pruneofa.kernels.group_weights import pack_groups

    for state, what in ((native.availability(), "kernel"), (openvino_op.availability(), "OpenVINO extension")):
        if not state.ok:
            print(f"sparse_kernel.py: the {what} is unavailable: {state.reason}", file=sys.stderr)
            return 2
    from pruneofa.core.errors import PruneofaError

    try:
        native.selected_isa()  # a bad $PRUNEOFA_SPARSE_ISA is an error here, not silently overridden per round
    except PruneofaError as exc:
        print(f"sparse_kernel.py: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    rows_out: list[dict[str, Any]] = []
    print(f"{'layer':>9} {'tokens':>6} {'variant':>22} {'ms':>8} {'vs best dense int8':>19}")
    with tempfile.TemporaryDirectory(prefix="pruneofa-kernel-bench-") as tmp:
        for rows, cols in args.shapes:
            shape = f"{rows}x{cols}"
            spec = layer(rng, rows, cols, args.sparsity, args.block, args.block_rows)
            fill = pack_groups(spec["w"]).group_fill
            variants = runners(spec, args.threads, Path(tmp))
            for name, (isa, _) in list(variants.items()):
                if isa is not None and ((args.no_amx and isa == "amx") or (args.isas and isa not in args.isas)):
                    del variants[name]
            for tokens in args.tokens:
                x = (rng.standard_normal((tokens, cols)) * 2).astype(np.float32)
                times: dict[str, list[float]] = {name: [] for name in variants}
                names = list(variants)
                for r in range(args.rounds):
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        isa, fn = variants[name]
                        if isa is None:
                            os.environ.pop(native.ISA_ENV, None)
                        else:
                            os.environ[native.ISA_ENV] = isa
                        times[name].append(time_call(fn, x, args.seconds))
                os.environ.pop(native.ISA_ENV, None)
                medians = {name: statistics.median(v) for name, v in times.items()}
                best = min(medians["ort-int8"], medians["ov-int8"])
                for name, seconds in medians.items():
                    row = {
                        "layer": shape,
                        "tokens": tokens,
                        "variant": name,
                        "ms": seconds * 1e3,
                        "speedup_vs_best_dense_int8": best / seconds,
                        "group_fill": fill,
                    }
                    rows_out.append(row)
                    print(
                        f"{shape:>9} {tokens:>6} {name:>22} {row['ms']:8.3f} {row['speedup_vs_best_dense_int8']:18.2f}x"
                    )
    cpu = hardware.cpu_info()
    summary = {"cpu": cpu, "threads": args.threads, "sparsity": args.sparsity, "block": args.block}
    summary["block_rows"] = args.block_rows
    summary["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA")
    summary.update(rounds=args.rounds, rows=rows_out)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
