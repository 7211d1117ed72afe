"""Which engine hosts the sparse kernel better: onnxruntime (custom-op library) or OpenVINO (extension)?
Whole-model seq/s, one interleaved run, on the same graph in both engines.

Issue 14 asked to probe both and choose by whole-model speed. The two engines run the op's plain form
(`sparse_form.rewrite(model, fuse=False)`: one op per Linear, GELU folded, f32 in and out; the rest of the graph,
attention, LayerNorm, GELU-free Linears' neighbours, is each engine's own), so the comparison is of the hosts, not
of what one of them was taught to fuse. Variants, for each shape and batch size:
- `ort-int8`:        the QDQ int8 export in onnxruntime (its own int8 kernels, zeros not skipped);
- `ort-sparse`:      the plain form in onnxruntime with libpruneofa_onnxruntime.so (native/src/onnxruntime_op.cpp);
- `ov-sparse-plain`: the same file in OpenVINO with libpruneofa_openvino.so, at OpenVINO's default precision
                     (bf16 float ops on AMX CPUs), and `ov-sparse-plain-f32` with the f32 hint, as onnxruntime
                     runs the float ops;
- `ov-sparse`:       the form pruneofa ships (rewrite with its fusions: residual norms, head layouts, chains), OpenVINO;
- `ov-default`:      the dense FP32 export at OpenVINO's default precision (bf16 on AMX CPUs), the best dense
                     engine of such a CPU, for the ratios.
Before timing, each sparse variant's logits are compared with the QDQ model's in onnxruntime (max |diff|, label
agreement): a probe that times a wrong library is worse than none.

onnxruntime's wheel has no C API header, so the library is built here from Debian's libonnxruntime-dev headers
(any version >= 1.16: the API table is versioned, and the library asks for the header's version):

    apt-get download libonnxruntime-dev            # Debian 13 (trixie) and later; on Debian 12 (bookworm),
    #   from trixie's list without changing the system's: a sources file for trixie in /tmp/trixie/sources.list.d,
    #   then apt-get -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=/tmp/trixie/sources.list.d
    #   -o Dir::State::Lists=/tmp/trixie/lists update (and the same options on `download`)
    dpkg-deb -x libonnxruntime-dev_*.deb /tmp/ortdev
    OV=$(.venv/bin/python -c "import openvino, pathlib; print(pathlib.Path(openvino.__file__).parent / 'cmake')")
    cmake -S native -B /tmp/nb -G Ninja -DCMAKE_BUILD_TYPE=Release -DOpenVINO_DIR=$OV \\
        -DPOFA_ONNXRUNTIME_INCLUDE_DIR=/tmp/ortdev/usr/include/onnxruntime
    cmake --build /tmp/nb --target pruneofa_onnxruntime
    .venv/bin/python benchmarks/onnxruntime_probe.py --library /tmp/nb/libpruneofa_onnxruntime.so
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_shapes import build_exports
from sparse_model import compiled, dense_model, feeds, seq_per_s

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--library", type=Path, required=True, help="libpruneofa_onnxruntime.so (see above)")
parser.add_argument("--workdir", type=Path, default=Path("runs/bench-shapes"))
parser.add_argument("--shapes", nargs="+", default=["minilm", "bert-base"])
parser.add_argument("--block_rows", type=int, default=1, help="the models pruned in blocks of N outputs x --block")
parser.add_argument("--block", type=int, default=1)
parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
parser.add_argument("--seq_len", type=int, default=128)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--seconds", type=float, default=2.0, help="per variant per round")
parser.add_argument("--no_amx", action="store_true", help="as on a CPU without AMX (OpenVINO's oneDNN and the kernel)")


class OrtRunner:
    def __init__(self, path: Path, threads: int, library: Path | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if library is not None:
            options.register_custom_ops_library(str(library))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = {i.name for i in self.session.get_inputs()}

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in inputs.items() if k in self.names}
        return np.asarray(self.session.run(None, feed)[0])


class OvRunner:
    def __init__(self, model: Any) -> None:
        self.request = model.create_infer_request()

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.request.infer(inputs)[0])


def sparse_file(source: Path, target: Path, fuse: bool) -> str:
    import onnx

    from pruneofa.kernels.sparse_form import rewrite

    proto = onnx.load(str(source))
    facts = rewrite(proto, fuse=fuse)
    onnx.save(proto, str(target))
    return f"{facts.layers} Linears in {facts.ops} ops"


def main() -> int:
    args = parser.parse_args()
    if not args.library.is_file():
        print(f"onnxruntime_probe.py: --library {args.library} does not exist; build it as the docstring says",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.no_amx:  # before OpenVINO loads oneDNN, which reads it once
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
        os.environ.setdefault("PRUNEOFA_SPARSE_ISA", "avx512_vnni")
    import openvino as ov

    from pruneofa.core import hardware
    from pruneofa.kernels import native, openvino_op

    rows: list[dict[str, Any]] = []
    for shape in args.shapes:
        folder = shape if args.block_rows == 1 and args.block == 1 else f"{shape}-block{args.block_rows}x{args.block}"
        root = build_exports(shape, args.workdir / folder, args.seq_len, args.block, args.block_rows)
        qdq = root / "int8" / "model.onnx"
        plain, fused = root / "int8" / "model.sparse-plain.onnx", root / "int8" / "model.sparse-probe.onnx"
        print(f"{shape}: plain form {sparse_file(qdq, plain, False)}; fused {sparse_file(qdq, fused, True)}")
        core = ov.Core()
        openvino_op.add_to(core)
        dense = dense_model(root)
        for batch in args.batch_sizes:
            inputs = feeds(root / "int8", batch, args.seq_len)
            runners: dict[str, Any] = {
                "ov-default": OvRunner(compiled(core, dense, args.threads, None, None)[0]),
                "ort-int8": OrtRunner(qdq, args.threads, None),
                "ort-sparse": OrtRunner(plain, args.threads, args.library),
                "ov-sparse-plain": OvRunner(compiled(core, plain, args.threads, None, None)[0]),
                "ov-sparse-plain-f32": OvRunner(compiled(core, plain, args.threads, "f32", None)[0]),
                "ov-sparse": OvRunner(compiled(core, fused, args.threads, None, None)[0]),
            }
            reference = runners["ort-int8"].infer(inputs)
            checks = {}
            for name in ("ort-sparse", "ov-sparse-plain", "ov-sparse-plain-f32", "ov-sparse"):
                logits = runners[name].infer(inputs)
                agree = float(np.mean(logits.argmax(-1) == reference.argmax(-1)))
                checks[name] = {"max_abs_diff": float(np.abs(logits - reference).max()), "label_agreement": agree}
                print(f"  b{batch} {name}: max |logit - QDQ| {checks[name]['max_abs_diff']:.4f}, labels {agree:.0%}")
            samples: dict[str, list[float]] = {name: [] for name in runners}
            names = list(runners)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    samples[name].append(seq_per_s(runners[name].infer, inputs, args.seconds))
            seq_s = {name: statistics.median(v) for name, v in samples.items()}
            print(f"{'shape':>9} {'batch':>5} {'variant':>16} {'seq/s':>8} {'vs ov-default':>14}")
            for name, value in seq_s.items():
                ratio = value / seq_s["ov-default"]
                print(f"{shape:>9} {batch:>5} {name:>16} {value:8.1f} {ratio:13.2f}x")
                rows.append({"shape": shape, "batch": batch, "variant": name, "seq_s": value,
                             "vs_ov_default": ratio, **checks.get(name, {})})  # fmt: skip
    facts = {
        "cpu": hardware.cpu_info(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "sparse_isa": native.selected_isa(),
        "threads": args.threads,
        "seq_len": args.seq_len,
    }
    print(json.dumps({**facts, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
