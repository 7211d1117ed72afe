"""A bench result for people: rows for the terminal table, bench.json, bench.md and bench.png.

Every number shown is read from the result document, which holds only measured values; the outputs are written
atomically (temp file + rename), and existing ones are refused before any measuring starts unless overwriting.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pruneofa.bench.compare import BEST_DENSE, headline
from pruneofa.bench.runners import OPENVINO_DEFAULT
from pruneofa.core.errors import PruneofaError

OUTPUT_FILES = ("bench.json", "bench.md", "bench.png")
RESULT_HEADER = ("variant", "iters", "seq/s", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms")
SPEEDUP_HEADER = ("speedup", "sparse-int8", "baseline", "x")
BEST_DENSE_HEADER = ("batch", "best dense", "seq/s", "precision used")
HEADLINE_HEADER = ("vs best dense", "sparse-int8", "best dense", "x")
FASTEST_HEADER = ("batch", "fastest engine", "variant", "seq/s")


def check_outputs(folder: Path, overwrite: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise PruneofaError(f"--output_dir {folder}: already has {', '.join(existing)}; pass --overwrite to replace")
    if folder.exists() and not folder.is_dir():
        raise PruneofaError(f"--output_dir {folder}: is a file; pass a folder path")


def result_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for key, r in doc["results"].items():
        lat = r["latency_ms"]
        cells = (lat["min"], lat["p50"], lat["p90"], lat["p99"], lat["max"])
        rows.append((key, str(r["iterations"]), f"{r['throughput_seq_s']:.1f}", *(f"{v:.2f}" for v in cells)))
    return rows


def speedup_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (name, f"{s['sparse_int8_seq_s']:.1f} seq/s", f"{s['baseline']} {s['baseline_seq_s']:.1f} seq/s",
         f"{s['speedup']:.2f}x")
        for name, s in doc["speedups"].items()
    ]  # fmt: skip


def best_dense_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """The best dense baseline per batch (the fastest dense variant measured), with the precision it ran in."""
    return [
        (batch, b["variant"], f"{b['seq_s']:.1f}", str(b["precision_used"]))
        for batch, b in (doc.get("best_dense") or {}).items()
    ]


def fastest_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """The fastest engine on the sparse int8 export per batch: the `--engine` for predict/eval on this machine."""
    return [
        (batch, f["engine"], f["variant"], f"{f['seq_s']:.1f}")
        for batch, f in (doc.get("fastest_engine") or {}).items()
    ]


def sparse_kernel_line(doc: dict[str, Any]) -> str | None:
    """Whether the sparse form ran on pruneofa's kernel (openvino-sparse), and why not when it did not."""
    kernel = doc.get("sparse_kernel")
    if not kernel:
        return None
    if kernel["status"] == "measured":
        detail = f"{kernel['sparse_linears']} Linears on the {kernel['kernel_isa']} path"
    else:
        detail = kernel["note"]
    return f"pruneofa sparse kernel ({kernel['variant']}, model.sparse.onnx): {kernel['status']}: {detail}"


def headline_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every sparse variant over its batch's best dense baseline (the `ENGINE-vs-best-dense-bN` speedups)."""
    return [
        (name, f"{s['sparse_int8']} {s['sparse_int8_seq_s']:.1f} seq/s",
         f"{s['baseline']} ({s['baseline_precision_used']}) {s['baseline_seq_s']:.1f} seq/s", f"{s['speedup']:.2f}x")
        for name, s in doc["speedups"].items()
        if s.get("versus") == BEST_DENSE
    ]  # fmt: skip


def facts(doc: dict[str, Any]) -> list[str]:
    """CPU, threads, engines, sizes, the sparse-weights path and what was not measured, one line each."""
    cpu, cfg, ver = doc["cpu"], doc["config"], doc["versions"]
    flags = f"AVX-512 VNNI {'yes' if cpu['avx512_vnni'] else 'no'}, AMX {'yes' if cpu['amx'] else 'no'}"
    if "avx512_bf16" in cpu:
        flags += f", AVX512-BF16 {'yes' if cpu['avx512_bf16'] else 'no'}"
    lines = [
        f"CPU: {cpu['model_name']} ({cpu['physical_cores']} cores, {cpu['logical_cpus']} logical; {flags})",
        f"threads {cfg['threads']}, OpenVINO streams {cfg['streams']} (one request in flight), seq_len "
        f"{cfg['seq_len']}, inputs: {doc['inputs']['texts']}, mean real tokens {doc['inputs']['real_tokens_mean']}",
        f"stop rule: warm-up {doc['stop_rule']['warmup']}, then per variant <= {doc['stop_rule']['iterations']} "
        f"iterations or ~{doc['stop_rule']['duration']} s over {doc['stop_rule']['rounds']} interleaved rounds",
        "versions: " + ", ".join(f"{k} {ver[k]}" for k in ("onnxruntime", "openvino", "torch") if k in ver),
    ]
    for label, model in doc["models"].items():
        if label == "torch_fp32":
            lines.append(f"torch fp32: {model['folder'] or '-'} ({model['from']})")
            continue
        sizes = ", ".join(f"{fmt} {_mb(s['bytes'])} (gzip {_mb(s['gzip_bytes'])})" for fmt, s in model["sizes"].items())
        sparsity = "n/a" if model["sparsity"] is None else f"{model['sparsity']:.1%}"
        lines.append(f"{label}: {model['folder']}, sparsity {sparsity}, {sizes}")
    sparse = doc["openvino_sparse_weights"]
    rate = sparse.get("decompression_rate")
    lines.append(f"OpenVINO sparse-weights path: {sparse['status']}" + (f" (rate {rate})" if rate is not None else "")
                 + f": {sparse['note']}")  # fmt: skip
    int8 = doc["engines"].get("openvino-int8") or {}
    if int8.get("precision_used"):  # f32 hint, or OpenVINO's default where export verified the int8 model there
        how = "f32 hint" if int8["requested"].get("INFERENCE_PRECISION_HINT") == "f32" else "OpenVINO's default"
        lines.append(
            f"openvino-int8 float ops: {int8['precision_used']} ({how}; OpenVINO's default is used only where "
            "`pruneofa export` found the int8 model's dev score held there)"
        )
    default = (doc["engines"].get(OPENVINO_DEFAULT) or {}).get("default_precision")
    if default:
        lines.append(f"OpenVINO default precision (openvino-default): {default['precision_used']}: {default['note']}")
    kernel = sparse_kernel_line(doc)
    if kernel:
        lines.append(kernel)
    said = (doc.get("sparse_kernel") or {}).get("variant") if kernel else None
    lines += [f"{key}: {why}" for key, why in doc["not_measured"].items() if key != said]
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def markdown(doc: dict[str, Any]) -> str:
    def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]

    lines = [f"# pruneofa bench ({doc['created']})", ""]
    if best_dense_rows(doc):
        lines += [
            "Best dense baseline = the fastest dense variant measured at each batch size (FP32 on every engine, and "
            "OpenVINO at its default precision, bf16 on AMX / AVX512-BF16 CPUs).",
            "",
            *table(BEST_DENSE_HEADER, best_dense_rows(doc)),
            "",
        ]
    if headline_rows(doc):
        lines += ["Headline: sparse-int8 throughput / best dense baseline throughput (same run).", ""]
        lines += [*table(HEADLINE_HEADER, headline_rows(doc)), ""]
    if fastest_rows(doc):
        lines += ["Fastest engine on the sparse-int8 export (pass it to `pruneofa predict/eval --engine`).", ""]
        lines += [*table(FASTEST_HEADER, fastest_rows(doc)), ""]
    lines += [*table(RESULT_HEADER, result_rows(doc)), ""]
    if doc["speedups"]:
        lines += ["Speedup = sparse-int8 throughput / baseline throughput (medians, same run).", ""]
        lines += [*table(SPEEDUP_HEADER, speedup_rows(doc)), ""]
    lines += [f"- {line}" for line in facts(doc)]
    return "\n".join(lines) + "\n"


def chart(doc: dict[str, Any], path: Path) -> None:
    """Two panels per variant (engine-precision-batch): throughput (best dense baselines hatched, the headline
    speedups in the title), and p50/p90/p99 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    keys = list(doc["results"])
    x = np.arange(len(keys))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.9 * len(keys) + 2), 7), constrained_layout=True)
    palette = {"int8": "tab:green", "fp32": "tab:gray"}
    colors = [palette.get(doc["results"][k]["precision"], "tab:blue") for k in keys]
    best = {b["variant"] for b in (doc.get("best_dense") or {}).values()}
    bars = top.bar(x, [doc["results"][k]["throughput_seq_s"] for k in keys], color=colors)
    for key, bar in zip(keys, bars, strict=True):
        if key in best:
            bar.set(hatch="//", edgecolor="black")
    top.set_ylabel("sequences / s (median)")
    top.legend(handles=[
        Patch(color="tab:green", label="sparse int8"),
        Patch(color="tab:gray", label="dense fp32"),
        Patch(color="tab:blue", label="dense, OpenVINO default precision"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="best dense baseline"),
    ], fontsize=8)  # fmt: skip
    title = f"throughput, seq_len {doc['config']['seq_len']}, {doc['config']['threads']} threads"
    heads = [
        f"{h['sparse_int8']} {h['speedup']:.2f}x over best dense {h['baseline']} ({h['baseline_precision_used']})"
        for h in headline(doc)
    ]
    top.set_title("\n".join([title, *heads]), fontsize=9)
    for offset, q in ((-0.27, "p50"), (0.0, "p90"), (0.27, "p99")):
        bottom.bar(x + offset, [doc["results"][k]["latency_ms"][q] for k in keys], width=0.27, label=q)
    bottom.set_ylabel("latency ms")
    bottom.set_yscale("log")
    bottom.legend()
    for axis in (top, bottom):
        axis.set_xticks(x, keys, rotation=30, ha="right", fontsize=8)
    with _atomic(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


class _atomic:
    """A temp path beside `path`, renamed over it only when the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(name)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.tmp.chmod(0o644)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_outputs(doc: dict[str, Any], folder: Path, overwrite: bool) -> list[Path]:
    check_outputs(folder, overwrite)
    json_path, md_path, png_path = (folder / name for name in OUTPUT_FILES)
    with _atomic(json_path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    with _atomic(md_path) as tmp:
        tmp.write_text(markdown(doc))
    chart(doc, png_path)
    return [json_path, md_path, png_path]
