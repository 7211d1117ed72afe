"""Whole-model speed of the sparse kernel inside OpenVINO against the dense engines of this CPU, one interleaved run.

For each model shape (the exports of bench_shapes.py: packaged MiniLM / random BERT-base weights, 90% magnitude
sparse, int8 QAT-calibrated), at seq 128 and each batch size, seq/s of:
- `ov-fp32`:    the dense FP32 export, OpenVINO with the f32 precision hint (the seed's baseline);
- `ov-default`: the same dense model at OpenVINO's default precision (bf16 on AMX / AVX512-BF16 CPUs), which is
                the best dense engine on such CPUs;
- `ov-int8`:    the sparse QDQ int8 export in OpenVINO (its dense int8 kernels: the zeros are not skipped);
- `ov-int8-sw`:  the same int8 model with its weights laid out [N, K] (as `export` writes the IR) and OpenVINO's
                sparse-weights decompression on (`--sparse_rate`; it engages on AMX CPUs only, which stderr says);
- `ov-sparse-<path>`: the same int8 model in sparse form (pruneofa/kernels/sparse_form.py), every Linear run by
                pruneofa's zero-skipping kernel, for each kernel path this CPU runs.
- `deepsparse-int8` (optional peer, when DeepSparse is installed in its own env, see deepsparse_peer.py): the
                same sparse model as a per-tensor QOperator int8 model in DeepSparse 1.8; `deepsparse-dense-int8`
                the dense model the same way (`--deepsparse_dense`). Timed in their own process, in the same rounds.
Ratios are against the best dense engine measured in the same run. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/sparse_model.py --workdir runs/bench-shapes --shapes minilm bert-base
    .venv/bin/python benchmarks/sparse_model.py --no_amx ...     # as on a CPU without AMX
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import deepsparse_peer
from bench_shapes import build_exports

from pruneofa.export.openvino_layout import weights_as_rows


def feeds(folder: Path, batch: int, seq_len: int) -> dict[str, np.ndarray]:
    from pruneofa.bench.inputs import dev_texts, token_batches

    names = ["input_ids", "attention_mask", "token_type_ids"]
    return token_batches(folder, dev_texts(None), seq_len, batch, 1, names)[0]


def dense_model(root: Path) -> Path:
    """bench_shapes.py's dense FP32 export under `root`: its OpenVINO IR, or the ONNX file where there is none."""
    ir = root / "fp32" / "openvino_model.xml"
    return ir if ir.is_file() else root / "fp32" / "model.onnx"


def seq_per_s(infer: Callable[[Any], Any], inputs: dict[str, np.ndarray], seconds: float) -> float:
    """Sequences a second of `infer(inputs)`: one warm-up call, then calls for at least `seconds` and 3 calls."""
    batch = len(next(iter(inputs.values())))
    infer(inputs)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        infer(inputs)
        count += 1
    return batch * count / (time.perf_counter() - start)


def compiled(
    core: Any,
    path: Path,
    threads: int,
    hint: str | None,
    shapes: dict[str, list[int]] | None,
    sparse_rate: float | None = None,
) -> Any:
    """`sparse_rate`: the int8 weights laid out [N, K] (as `export` writes the IR) and OpenVINO's sparse-weights
    decompression asked for at that zero fraction."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    graph = core.read_model(str(path))
    if sparse_rate is not None:
        weights_as_rows(graph)
        config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = sparse_rate
    if shapes:  # static shapes: OpenVINO plans memory and kernels once (as benchmark_app does)
        graph.reshape(shapes)
    model = core.compile_model(graph, "CPU", config)
    precision = model.get_property("INFERENCE_PRECISION_HINT")  # an element type: bf16, f32
    return model, str(precision.get_type_name()) if hasattr(precision, "get_type_name") else str(precision)


def start_peers(
    args: argparse.Namespace, root: Path, inputs: dict[str, np.ndarray], variants: dict[str, Any]
) -> dict[str, deepsparse_peer.Peer]:
    """DeepSparse variants (added to `variants`) when its env exists; a note on stderr when it does not."""
    if not args.deepsparse.is_file():
        print(f"sparse_model.py: DeepSparse not timed: no {args.deepsparse} (see deepsparse_peer.py)", file=sys.stderr)
        return {}
    models = {"deepsparse-int8": deepsparse_peer.prepare(root / "int8" / "model.onnx", root / "deepsparse", inputs)}
    if args.deepsparse_dense:
        fp32 = root / "fp32" / "model.onnx"
        models["deepsparse-dense-int8"] = deepsparse_peer.prepare_dense(fp32, root / "deepsparse", inputs)
    peers = {}
    for name, model in models.items():
        peers[name] = deepsparse_peer.Peer(args.deepsparse, model, inputs, args.threads)
        variants[name] = (None, None, f"int8 (DeepSparse {peers[name].info.get('version')})")
    return peers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-shapes"))
    parser.add_argument("--shapes", nargs="+", default=["minilm", "bert-base"])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per variant per round")
    parser.add_argument("--block", type=int, default=1, help="models pruned in groups of N inputs (sparsify --block)")
    parser.add_argument(
        "--block_rows", type=int, default=1, help="... of M outputs each (sparsify --block_rows; 16 x 4 suits AMX)"
    )
    parser.add_argument("--static", action="store_true", help="compile every model for the exact input shape")
    parser.add_argument(
        "--int8_hints",
        nargs="+",
        default=["f32"],
        choices=("f32", "bf16"),
        help="OpenVINO precision hints for the int8 and sparse models (bf16: their non-Linear ops in bf16)",
    )
    parser.add_argument(
        "--sparse_rate",
        type=float,
        default=0.5,
        help="also time `ov-int8-sw`: the int8 model with OpenVINO's sparse-weights decompression at this rate "
        "(engages on AMX CPUs only; pass a negative value to leave the row out)",
    )
    parser.add_argument("--isas", nargs="+", default=["scalar", "avx2", "avx512_vnni", "amx"], help="kernel paths")
    parser.add_argument(
        "--no_amx",
        action="store_true",
        help="behave as a CPU without AMX: OpenVINO through ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, and the sparse "
        "kernel's amx path left out",
    )
    parser.add_argument(
        "--deepsparse",
        type=Path,
        default=deepsparse_peer.DEFAULT_PYTHON,
        help="python of DeepSparse's own env (default .venv-deepsparse/bin/python; left out when missing)",
    )
    parser.add_argument("--deepsparse_dense", action="store_true", help="also time the dense model in DeepSparse")
    args = parser.parse_args()
    if args.sparse_rate is not None and args.sparse_rate < 0:
        args.sparse_rate = None
    if args.no_amx:  # before OpenVINO loads oneDNN: the variable is read once
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"

    import onnx
    import openvino as ov

    from pruneofa.core import hardware
    from pruneofa.kernels import native, openvino_op
    from pruneofa.kernels.sparse_form import rewrite
    from pruneofa.runtime.engines import SPARSE_ONNX, openvino_int8_matmuls, openvino_runtime_layers

    if not openvino_op.availability().ok:
        reason = openvino_op.availability().reason
        print(f"sparse_model.py: the sparse engine is unavailable: {reason}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    print(f"{'shape':>9} {'batch':>5} {'variant':>22} {'seq/s':>8} {'vs best dense':>14}  precision")
    for shape in args.shapes:
        folder = shape if args.block == 1 else f"{shape}-block{args.block}"
        folder = f"{shape}-block{args.block_rows}x{args.block}" if args.block_rows > 1 else folder
        root = build_exports(shape, args.workdir / folder, args.seq_len, args.block, args.block_rows)
        sparse_path = root / "int8" / SPARSE_ONNX
        proto = onnx.load(str(root / "int8" / "model.onnx"))  # rewritten each run: the form follows the code
        facts = rewrite(proto)
        onnx.save(proto, str(sparse_path))
        print(f"{shape}: {facts.layers} Linears in {facts.ops} sparse ops, group fill {facts.group_fill:.3f}")
        core = ov.Core()
        openvino_op.add_to(core)
        dense = dense_model(root)
        for batch in args.batch_sizes:
            inputs = feeds(root / "int8", batch, args.seq_len)
            shape_of = {name: list(value.shape) for name, value in inputs.items()} if args.static else None
            variants: dict[str, tuple[str | None, Any, str]] = {}
            for name, path, hint in (("ov-fp32", dense, "f32"), ("ov-default", dense, None)):
                model, precision = compiled(core, path, args.threads, hint, shape_of)
                variants[name] = (None, model.create_infer_request(), precision)
            for hint in args.int8_hints:
                suffix = "" if hint == "f32" else f"-{hint}"
                model, precision = compiled(core, root / "int8" / "model.onnx", args.threads, hint, shape_of)
                variants[f"ov-int8{suffix}"] = (None, model.create_infer_request(), precision)
                if args.sparse_rate is not None:
                    rate = args.sparse_rate
                    model, precision = compiled(core, root / "int8" / "model.onnx", args.threads, hint, shape_of, rate)
                    request = model.create_infer_request()
                    request.infer(inputs)  # a dynamic-shape model picks its primitives at the first inference
                    int8, engaged = openvino_int8_matmuls(openvino_runtime_layers(model))
                    note = f"{shape} b{batch}: OpenVINO's sparse weights in {engaged} of {int8} int8 matmuls"
                    print(note, file=sys.stderr)
                    variants[f"ov-int8-sw{suffix}"] = (None, request, precision)
                model, precision = compiled(core, sparse_path, args.threads, hint, shape_of)
                for isa in native.supported_isas():
                    if (args.no_amx and isa == "amx") or isa not in args.isas:
                        continue
                    variants[f"ov-sparse-{isa}{suffix}"] = (isa, model.create_infer_request(), precision)
            peers = start_peers(args, root, inputs, variants)
            samples: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    isa, request, _ = variants[name]
                    if name in peers:
                        samples[name].append(peers[name].seq_s(args.seconds))
                        continue
                    if isa:
                        os.environ[native.ISA_ENV] = isa
                    samples[name].append(seq_per_s(request.infer, inputs, args.seconds))
                    os.environ.pop(native.ISA_ENV, None)
            for peer in peers.values():
                peer.close()
            seq_s = {name: statistics.median(v) for name, v in samples.items()}
            best_dense = max(("ov-fp32", "ov-default"), key=lambda n: seq_s[n])
            for name, value in seq_s.items():
                row = {
                    "shape": shape,
                    "batch": batch,
                    "variant": name,
                    "seq_s": value,
                    "precision": variants[name][2],
                    "best_dense": best_dense,
                    "speedup_vs_best_dense": value / seq_s[best_dense],
                }
                rows.append(row)
                ratio = row["speedup_vs_best_dense"]
                print(f"{shape:>9} {batch:>5} {name:>22} {value:8.1f} {ratio:13.2f}x  {row['precision']}")
    onednn_isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    facts = {
        "cpu": hardware.cpu_info(),
        "onednn_max_cpu_isa": onednn_isa,
        "threads": args.threads,
        "static": args.static,
    }
    print(json.dumps({**facts, "seq_len": args.seq_len, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
