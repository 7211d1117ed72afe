"""DeepSparse 1.8 as an optional peer of sparse_model.py: the same sparse model, timed in its own virtual env.

DeepSparse (Neural Magic, end of life since 2025, proprietary licence) is the one engine seen on these machines
that skips unstructured zeros on x86 (stack.md); it is the yardstick for pruneofa's kernel. It cannot share the
project's environment (it needs numpy<2 and onnx==1.14.1), so it lives in its own:

    python3 -m venv .venv-deepsparse
    .venv-deepsparse/bin/pip install deepsparse==1.8.0 "numpy<2" onnx==1.14.1

and this file has two halves:
- in the project's env, `prepare(int8_qdq, out, feeds)` turns pruneofa's QDQ int8 export (per-channel weights) into
  the model DeepSparse's int8 path wants: the weights dequantized to float (zeros stay exactly zero), then
  onnxruntime's `quantize_static` in QOperator form (QLinearMatMul), per-tensor, calibrated on the same real
  text batches the benchmark feeds; `prepare_dense` does the same for the dense FP32 export;
- in DeepSparse's env, `python deepsparse_peer.py serve MODEL FEEDS.npz --threads N` compiles the model for the
  feeds' static shape and answers one line per request on stdin ("run SECONDS" -> seq/s as JSON), so the caller
  can interleave it round by round with its own variants (`Peer`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PYTHON = Path(__file__).resolve().parent.parent / ".venv-deepsparse" / "bin" / "python"


def float_weights(qdq_path: Path, out: Path) -> Path:
    """A float copy of a QDQ model: every DequantizeLinear of an initializer becomes that float constant, every
    QuantizeLinear -> DequantizeLinear pair on an activation is dropped (the float value passes straight on)."""
    import onnx
    from onnx import numpy_helper

    from pruneofa.kernels.sparse_form import drop_dead  # the project's env: this half runs there

    proto = onnx.load(str(qdq_path))
    graph = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # the exporter also writes scales and zero points as Constant nodes
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                consts[node.output[0]] = numpy_helper.to_array(value)
    aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def const(name: str) -> np.ndarray | None:
        while name in aliases:
            name = aliases[name]
        return consts.get(name)

    producer = {o: n for n in graph.node for o in n.output}
    rename: dict[str, str] = {}
    new_inits = []
    for node in list(graph.node):
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        stored = const(source)
        if stored is not None:
            q = stored.astype(np.float32)
            scale = const(node.input[1]).astype(np.float32)  # type: ignore[union-attr]
            zero = const(node.input[2]).astype(np.float32) if len(node.input) > 2 else 0.0  # type: ignore[union-attr]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and scale.size > 1:
                shape = [1] * q.ndim
                shape[axis] = scale.size
                scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
            value = ((q - zero) * scale).astype(np.float32)
            new_inits.append(numpy_helper.from_array(value, node.output[0] + "_float"))
            rename[node.output[0]] = node.output[0] + "_float"
        elif source in producer and producer[source].op_type == "QuantizeLinear":
            rename[node.output[0]] = producer[source].input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for output in graph.output:
        if output.name in rename:
            raise ValueError(f"{qdq_path}: a graph output is a DequantizeLinear; not a pruneofa export")
    graph.initializer.extend(new_inits)
    drop_dead(graph)
    onnx.save(proto, str(out))
    return out


def qoperator(float_model: Path, out: Path, feeds: dict[str, np.ndarray]) -> Path:
    """Per-tensor QOperator int8 (QLinearMatMul; u8 activations, s8 weights) of a float model, calibrated on
    `feeds`; only MatMul/Gemm are quantized (attention and LayerNorm stay float, as in pruneofa's export)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([feeds])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(
        str(float_model),
        str(out),
        Reader(),
        quant_format=QuantFormat.QOperator,
        per_channel=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    return out


def prepare(int8_qdq: Path, folder: Path, feeds: dict[str, np.ndarray]) -> Path:
    """folder/sparse-qop.onnx from pruneofa's sparse QDQ export (reused when there)."""
    out = folder / "sparse-qop.onnx"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        qoperator(float_weights(int8_qdq, folder / "sparse-float.onnx"), out, feeds)
    return out


def prepare_dense(fp32_onnx: Path, folder: Path, feeds: dict[str, np.ndarray]) -> Path:
    out = folder / "dense-qop.onnx"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        qoperator(fp32_onnx, out, feeds)
    return out


class Peer:
    """One DeepSparse engine in its own process (its venv's python): `seq_s(seconds)` times it for that long."""

    def __init__(self, python: Path, model: Path, feeds: dict[str, np.ndarray], threads: int) -> None:
        self.feeds_file = model.with_suffix(f".b{next(iter(feeds.values())).shape[0]}.npz")
        np.savez(self.feeds_file, **feeds)  # type: ignore[arg-type]
        env = {**os.environ, "NM_BIND_THREADS_TO_CORES": "1"}
        self.process = subprocess.Popen(
            [str(python), __file__, "serve", str(model), str(self.feeds_file), "--threads", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info = self._reply()  # {"ready": true, "version": ...} once compiled

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"deepsparse peer exited (code {self.process.wait()}); see its stderr above")
        return json.loads(line)

    def seq_s(self, seconds: float) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {seconds}\n")
        self.process.stdin.flush()
        return float(self._reply()["seq_s"])

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.feeds_file.unlink(missing_ok=True)


def serve(model: str, feeds_file: str, threads: int) -> int:
    """DeepSparse's side (its own venv): compile, then time on request."""
    import deepsparse

    feeds = dict(np.load(feeds_file))
    batch = next(iter(feeds.values())).shape[0]
    import onnx

    names = [i.name for i in onnx.load(model, load_external_data=False).graph.input]
    inputs = [feeds[name] for name in names]
    engine = deepsparse.compile_model(model, batch_size=batch, num_cores=threads,
                                      input_shapes=[list(a.shape) for a in inputs])  # fmt: skip
    engine.run(inputs)
    print(json.dumps({"ready": True, "version": deepsparse.__version__}), flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        engine.run(inputs)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count < 3:
            engine.run(inputs)
            count += 1
        print(json.dumps({"seq_s": batch * count / (time.perf_counter() - start)}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
        sys.exit(serve(sys.argv[2], sys.argv[3], threads))
    print(__doc__)
    sys.exit(2)
