"""Sparse-int8 vs dense FP32 at two model shapes, in one interleaved `pruneofa bench` run per shape.

- minilm:    the packaged all-MiniLM-L6-v2 weights (6 layers, hidden 384), magnitude-pruned 90%;
- bert-base: BERT-base shape (12 layers, hidden 768, 3072 FFN) with random weights pruned 90%, since the real
             Intel/bert-base-uncased-sparse-90-unstructured-pruneofa checkpoint needs the Hub.

For each shape: a dense FP32 classifier and its 90%-pruned int8 QAT copy (observers calibrated by a few train-mode
forwards on real Rotten Tomatoes text, no weight updates) are saved as training folders, exported through
`pruneofa.export.exporter` (ONNX + OpenVINO IR), and benchmarked: onnxruntime fp32/int8, OpenVINO fp32/int8 (f32 hint),
torch eager fp32. Speed depends on shapes, zeros and precision, not on trained values, so untrained weights are
fine here; accuracy is not measured. Prints the tables, then one JSON line (last line).

    .venv/bin/python benchmarks/bench_shapes.py --workdir runs/bench-shapes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TASK = "rotten_tomatoes"
SHAPES = ("minilm", "bert-base")


def dense_model(shape: str, tokenizer_dir: str) -> Any:
    from transformers import BertConfig

    from pruneofa.bench.models import classifier

    if shape == "minilm":
        return classifier(tokenizer_dir, None, TASK)
    # BertConfig() defaults are BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522 (uncased).
    return classifier(None, BertConfig(), TASK)


def build_exports(shape: str, root: Path, seq_len: int, block: int = 1, block_rows: int = 1) -> Path:
    """root/{dense,sparse} training folders and root/{fp32,int8} exports; reused when already there. `block` /
    `block_rows` > 1 prune blocks of that many inputs / outputs (sparsify --block, --block_rows): give such
    models their own root."""
    from pruneofa.bench.models import calibration_batches, save_training_output, sparse_int8
    from pruneofa.core.cache import default_cache_dir
    from pruneofa.data.builtin import build_rotten_tomatoes
    from pruneofa.export.exporter import ExportConfig, export
    from pruneofa.models.loading import packaged_minilm_dir

    if (root / "int8" / "manifest.json").is_file() and (root / "fp32" / "manifest.json").is_file():
        return root
    tokenizer_dir = str(packaged_minilm_dir())  # MiniLM's vocabulary is bert-base-uncased's
    train = build_rotten_tomatoes(default_cache_dir())["train"]
    texts = [json.loads(line)["sentence"] for line in train.read_text().splitlines()[:64]]
    dense = dense_model(shape, tokenizer_dir)
    sparse = sparse_int8(dense, 0.9, calibration_batches(tokenizer_dir, texts, seq_len, 8), block, block_rows)
    save_training_output(dense, tokenizer_dir, root / "dense", TASK, seq_len)
    save_training_output(sparse, tokenizer_dir, root / "sparse", TASK, seq_len)
    for source, target in (("dense", "fp32"), ("sparse", "int8")):
        export(root / source, ExportConfig(output_dir=root / target, verify=False, overwrite=True))
    return root


def table(shape: str, doc: dict[str, Any]) -> str:
    from pruneofa.bench.report import RESULT_HEADER, SPEEDUP_HEADER, facts, result_rows, speedup_rows

    lines = [f"== {shape} =="]
    for header, rows in ((RESULT_HEADER, result_rows(doc)), (SPEEDUP_HEADER, speedup_rows(doc))):
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            lines.append(
                "  ".join(
                    str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        lines.append("")
    return "\n".join(lines + facts(doc))


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq_s": {k: round(r["throughput_seq_s"], 2) for k, r in doc["results"].items()},
        "p50_ms": {k: round(r["latency_ms"]["p50"], 2) for k, r in doc["results"].items()},
        "speedup": {k: round(s["speedup"], 2) for k, s in doc["speedups"].items()},
        "openvino_sparse_weights": doc["openvino_sparse_weights"]["status"],
        "sizes": {m: doc["models"][m]["sizes"] for m in ("sparse_int8", "dense_fp32")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of minilm, bert-base")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-shapes"))
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from pruneofa.bench.report import write_outputs
    from pruneofa.bench.run import BenchConfig, run_bench

    cfg = BenchConfig(
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
        seq_len=args.seq_len,
        threads=args.threads,
        iterations=args.iterations,
        duration=args.duration,
        rounds=args.rounds,
    )
    out: dict[str, Any] = {"command": " ".join(["benchmarks/bench_shapes.py", *(argv or sys.argv[1:])]), "shapes": {}}
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            parser.error(f"--shapes {shape!r}: use {', '.join(SHAPES)}")
        root = build_exports(shape, args.workdir / shape, args.seq_len)
        doc = run_bench(root / "int8", root / "fp32", cfg)
        write_outputs(doc, root / "bench", overwrite=True)
        print(table(shape, doc), flush=True)
        out["shapes"][shape] = summary(doc)
        out.update(cpu=doc["cpu"]["model_name"], threads=doc["config"]["threads"], seq_len=args.seq_len)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
