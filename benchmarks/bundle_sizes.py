"""Edge bundle sizes and `predict` cold start, at MiniLM and BERT-base shape (90% sparse int8 vs dense FP32).

Per shape (the models of bench_shapes.py: packaged MiniLM weights / random BERT-base weights, magnitude-pruned
90%, int8 QAT observers calibrated on real text, not trained; sizes depend on shapes, zeros and value
distributions, not on accuracy), it exports:
  - fp32:          the dense FP32 model (the baseline every ratio is against: its model.onnx, gzip -9);
  - int8-float-emb: the sparse int8 export with float embedding tables (what exports were before);
  - int8:          the default sparse int8 export (int8 embedding tables);
  - int8-trimmed:  the same with the vocabulary trimmed to the built-in rotten_tomatoes text;
bundles the int8 ones (`pruneofa bundle`: packed sparse weights, tar.gz), and times `pruneofa predict BUNDLE TEXT`
from process start to the answer: first call (verify + unpack into a fresh cache) and a warm second call, with the
process's peak RSS, plus the same for the plain export folders. Prints a table, then one JSON line (last line).

    .venv/bin/python benchmarks/bundle_sizes.py --workdir runs/bundle-sizes
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_shapes import SHAPES, build_exports

TEXT = "a gorgeous, witty, seductive movie"
RSS_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); done = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "wall = time.perf_counter() - t\n"
    "assert done.returncode == 0, done.stderr.decode()[-2000:]\n"
    "print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def gzip_bytes(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def extra_exports(root: Path) -> dict[str, Path]:
    """root/int8-float-emb and root/int8-trimmed beside bench_shapes' root/{fp32,int8}."""
    from pruneofa.export.exporter import ExportConfig, export

    variants = {
        "int8-float-emb": ExportConfig(output_dir=root / "int8-float-emb", verify=False, int8_embeddings=False),
        "int8-trimmed": ExportConfig(output_dir=root / "int8-trimmed", verify=False, trim_vocab="rotten_tomatoes"),
    }
    for name, cfg in variants.items():
        if not (root / name / "manifest.json").is_file():
            export(root / "sparse", cfg)
    return {"fp32": root / "fp32", "int8": root / "int8", **{n: root / n for n in variants}}


def cold_start(target: Path, cache: Path, engine: str) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of `pruneofa predict TARGET TEXT` in a new process."""
    pruneofa = str(Path(sys.executable).parent / "pruneofa")
    cmd = [sys.executable, "-c", RSS_WRAPPER, pruneofa, "predict", str(target.resolve()), TEXT, "--engine", engine]
    env = {"PRUNEOFA_CACHE": str(cache.resolve()), "PATH": str(Path(sys.executable).parent), "HOME": str(cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"predict {target} --engine {engine} failed:\n{done.stderr[-3000:]}")
    out = done.stdout.split()
    return {"seconds": round(float(out[0]), 2), "peak_rss_mb": round(int(out[1]) / 1024, 1)}


def measure_shape(shape: str, root: Path, seq_len: int, engines: list[str]) -> dict[str, Any]:
    from pruneofa.export.bundle import BundleConfig, write_bundle

    build_exports(shape, root, seq_len)
    exports = extra_exports(root)
    dense_gzip = gzip_bytes(exports["fp32"] / "model.onnx")
    rows: dict[str, Any] = {
        "fp32": {"model_onnx_bytes": (exports["fp32"] / "model.onnx").stat().st_size, "model_onnx_gzip": dense_gzip}
    }
    for name in ("int8-float-emb", "int8", "int8-trimmed"):
        model = exports[name] / "model.onnx"
        bundle = root / "bundles" / f"{name}.tar.gz"
        write_bundle(exports[name], BundleConfig(output=bundle, overwrite=True))
        rows[name] = {
            "model_onnx_bytes": model.stat().st_size,
            "model_onnx_gzip": gzip_bytes(model),
            "bundle_bytes": bundle.stat().st_size,
            "bundle_vs_dense_gzip": round(bundle.stat().st_size / dense_gzip, 4),
            "vocabulary": json.loads((exports[name] / "manifest.json").read_text())["vocabulary"],
        }
    starts: dict[str, Any] = {}
    for engine in engines:
        cache = root / "cold-cache"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        bundle = root / "bundles" / "int8.tar.gz"
        starts[engine] = {
            "bundle_first": cold_start(bundle, cache, engine),
            "bundle_cached": cold_start(bundle, cache, engine),
            "int8_folder": cold_start(exports["int8"], cache, engine),
            "fp32_folder": cold_start(exports["fp32"], cache, engine),
        }
    return {"sizes": rows, "cold_start": starts}


def table(shape: str, result: dict[str, Any]) -> str:
    mb = 1e6
    lines = [f"== {shape} ==", f"{'export':<16}{'onnx MB':>9}{'onnx gz MB':>12}{'bundle MB':>11}{'vs fp32 gz':>12}"]
    for name, row in result["sizes"].items():
        bundle = (
            f"{row['bundle_bytes'] / mb:11.2f}{row['bundle_vs_dense_gzip']:11.3f}x" if "bundle_bytes" in row else ""
        )
        lines.append(f"{name:<16}{row['model_onnx_bytes'] / mb:9.2f}{row['model_onnx_gzip'] / mb:12.2f}{bundle}")
    for engine, starts in result["cold_start"].items():
        for what, m in starts.items():
            lines.append(f"predict cold start {engine:<12}{what:<14}{m['seconds']:6.2f} s  {m['peak_rss_mb']:7.1f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of minilm, bert-base")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bundle-sizes"))
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--engines", default="onnxruntime,openvino")
    args = parser.parse_args(argv)
    from pruneofa.core.hardware import cpu_info

    out: dict[str, Any] = {
        "command": " ".join(["benchmarks/bundle_sizes.py", *(argv or sys.argv[1:])]),
        "cpu": {k: v for k, v in cpu_info().items() if k != "flags"},
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "shapes": {},
    }
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            parser.error(f"--shapes {shape!r}: use {', '.join(SHAPES)}")
        result = measure_shape(shape, args.workdir / shape, args.seq_len, args.engines.split(","))
        print(table(shape, result), flush=True)
        out["shapes"][shape] = result
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
