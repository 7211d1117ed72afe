"""`report.md` + `accuracy.png` for a pipeline run: every number is read from the steps' own output files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pruneofa.pipeline.recipe import Recipe

REPORT_FILE = "report.md"
ACCURACY_PNG = "accuracy.png"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _main_score(metrics: dict[str, Any], main: str) -> float | None:
    """The first eval split's main metric from a {split: {metric: value}} table."""
    for split in metrics.values():
        if isinstance(split, dict) and main in split:
            return float(split[main])
    return None


def accuracy_rows(root: Path) -> tuple[str, list[tuple[str, float]]]:
    """(metric name, [(model, score)]) for the teacher, both stages (torch) and every exported engine."""
    rows: list[tuple[str, float]] = []
    main = "accuracy"
    for name, label in (
        ("teacher", "teacher (dense, torch)"),
        ("stage1", "stage 1 (sparse, torch)"),
        ("stage2", "stage 2 (sparse QAT, torch)"),
    ):
        meta = _read(root / name / "pruneofa.json")
        main = str(meta.get("main_metric", main))
        score = _main_score(meta.get("metrics") or {}, main)
        if score is not None:
            rows.append((label, score))
    for export, kind in (("export-fp32", "dense FP32"), ("export-int8", "sparse int8")):
        verification = _read(root / export / "manifest.json").get("verification") or {}
        for engine in ("onnxruntime", "openvino"):
            score = _main_score((verification.get(engine) or {}).get("metrics") or {}, main)
            if score is not None:
                rows.append((f"{kind}, {engine}", score))
    return main, rows


def accuracy_chart(metric: str, rows: list[tuple[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
    labels = [r[0] for r in rows]
    values = [100 * r[1] for r in rows]
    ax.barh(labels, values, color=["#4c72b0" if "dense" in label else "#dd8452" for label in labels])
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.2f}", va="center")
    ax.set_xlim(min([*values, 100]) - 10 if values else 0, 100)
    ax.invert_yaxis()
    ax.set_xlabel(f"dev {metric} (%)")
    ax.set_title("pruneofa pipeline: dev score per model and engine")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _sizes(root: Path) -> list[str]:
    lines = ["| export | model.onnx | gzip | openvino_model.bin | gzip |", "|---|---|---|---|---|"]
    for export in ("export-fp32", "export-int8"):
        files = _read(root / export / "manifest.json").get("files") or {}
        cells = [
            f"{files[f]['bytes'] / 1e6:.1f} MB | {files[f]['gzip_bytes'] / 1e6:.1f} MB" if f in files else "- | -"
            for f in ("model.onnx", "openvino_model.bin")
        ]
        lines.append(f"| {export} | " + " | ".join(cells) + " |")
    bundle = root / "bundle" / "model.tar.gz"
    if bundle.is_file():
        size = bundle.stat().st_size / 1e6
        lines += ["", f"Bundle to ship (`pruneofa predict {bundle.name}`): `bundle/{bundle.name}`, {size:.1f} MB."]
    return lines


def _gate(root: Path) -> list[str]:
    gate = _read(root / "gate" / "gate.json")
    if not gate:
        return ["(no gate ran)"]
    lines = [
        f"**Verdict: {'PASS' if gate.get('passed') else 'FAIL'}**",
        "",
        "| rule | measured | limit | result |",
        "|---|---|---|---|",
    ]
    for rule in gate.get("rules", []):
        lines.append(
            f"| {rule['rule']} | {rule['measured']:.4g} | {rule['limit']:g} | {'pass' if rule['passed'] else 'FAIL'} |"
        )
    return lines


def write_report(recipe: Recipe, root: Path, state: dict[str, Any]) -> Path:
    metric, rows = accuracy_rows(root)
    if rows:
        accuracy_chart(metric, rows, root / ACCURACY_PNG)
    student = _read(root / "student" / "sparsity.json")
    stage2 = _read(root / "stage2" / "pruneofa.json").get("sparsity") or {}
    bench_md = (root / "bench" / "bench.md").read_text() if (root / "bench" / "bench.md").exists() else "(no bench)"
    lines = [
        f"# pruneofa pipeline report: recipe `{recipe.name}`, task `{recipe.data.task_name}`",
        "",
        "## Steps",
        "",
        "| step | seconds (last run) | output |",
        "|---|---|---|",
        *[f"| {name} | {s.get('seconds', '-')} | {s.get('output', '')} |" for name, s in state["steps"].items()],
        "",
        f"## Dev {metric}",
        "",
        f"![accuracy]({ACCURACY_PNG})",
        "",
        "| model | score |",
        "|---|---|",
        *[f"| {label} | {100 * score:.2f} |" for label, score in rows],
        "",
        "## Sparsity",
        "",
        f"- student ({student.get('method', 'given')}): {student.get('overall', float('nan')):.4f} overall"
        + (
            f", held-out hidden-state MSE vs dense {student['held_out_hidden_mse']:.4g}"
            if "held_out_hidden_mse" in student
            else ""
        )
        + (
            f", agreement with the teacher on held-out text {student['held_out_agreement']:.4f}"
            if "held_out_agreement" in student
            else ""
        ),
        f"- stage 2: {stage2.get('overall', float('nan')):.4f} overall (pattern locked: {stage2.get('locked')})",
        "",
        "## Sizes",
        "",
        *_sizes(root),
        "",
        "## Speed",
        "",
        "![bench](bench/bench.png)",
        "",
        bench_md,
        "",
        "## Gate",
        "",
        *_gate(root),
        "",
    ]
    path = root / REPORT_FILE
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".md")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)
    return path
