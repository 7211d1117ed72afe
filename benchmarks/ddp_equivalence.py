"""Measure how closely a 2-process torchrun (gloo, per-device batch b) reproduces 1 process with batch 2b.

Usage: .venv/bin/python benchmarks/ddp_equivalence.py [--workdir runs/ddp-equivalence] [--samples 256]
Prints per-epoch losses and dev accuracy of both runs, the largest weight difference and whether the sparsity
pattern is identical; last line JSON. Uses the tiny built-in BERT with dropout off (dropout draws differ by rank).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from pruneofa.models.loading import resolve_model


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/ddp-equivalence"))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    model = args.workdir / "tiny-nodropout"
    shutil.copytree(resolve_model("tiny-bert"), model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    sparse = args.workdir / "student"
    run([sys.executable, "-m", "pruneofa", "sparsify", str(model), "--sparsity", "0.9", "--output_dir", str(sparse)])
    common = [
        "train",
        "--task_name",
        "rotten_tomatoes",
        "--model_name_or_path",
        str(sparse),
        "--do_prune",
        "--max_train_samples",
        str(args.samples),
        "--max_eval_samples",
        "512",
        "--max_seq_length",
        "64",
        "--num_train_epochs",
        str(args.epochs),
        "--learning_rate",
        "1e-3",
        "--seed",
        "11",
    ]
    two = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "pruneofa",
            *common,
            "--batch_size",
            "8",
            "--output_dir",
            str(args.workdir / "ddp2"),
        ]
    )
    one = run(
        [sys.executable, "-m", "pruneofa", *common, "--batch_size", "16", "--output_dir", str(args.workdir / "single")]
    )
    rows = []
    for name in ("ddp2", "single"):
        history = [json.loads(x) for x in (args.workdir / name / "metrics.jsonl").read_text().splitlines()]
        rows.append([(h["train_loss"], h["eval"]["validation"]["accuracy"]) for h in history])
    wa, wb = (
        load_file(args.workdir / "ddp2" / "model.safetensors"),
        load_file(args.workdir / "single" / "model.safetensors"),
    )
    max_diff = max((wa[k] - wb[k]).abs().max().item() for k in wb)
    same_pattern = all(torch.equal(wa[k] != 0, wb[k] != 0) for k in wb if k.endswith("dense.weight"))
    print("epoch | loss 2 procs x b8 | loss 1 proc x b16 | acc 2 procs | acc 1 proc")
    for epoch, ((la, aa), (lb, ab)) in enumerate(zip(*rows, strict=True)):
        print(f"{epoch:5d} | {la:17.6f} | {lb:17.6f} | {aa:11.4f} | {ab:10.4f}")
    print(
        f"max |w_ddp - w_single| = {max_diff:.3g}; sparsity pattern identical: {same_pattern}; "
        f"wall {two:.0f} s (2 procs) vs {one:.0f} s (1 proc)"
    )
    print(
        json.dumps(
            {
                "losses_ddp": [r[0] for r in rows[0]],
                "losses_single": [r[0] for r in rows[1]],
                "acc_ddp": [r[1] for r in rows[0]],
                "acc_single": [r[1] for r in rows[1]],
                "max_weight_diff": max_diff,
                "same_pattern": same_pattern,
            }
        )
    )


if __name__ == "__main__":
    main()
