"""What each sparse-int8 result is compared with, and the ratios (bench.json "speedups" and "best_dense").

Every ratio is of the median-based throughputs reported beside it, and only where both sides were measured:
- `ENGINE-bN`: sparse int8 over the same engine's dense FP32 (onnxruntime, openvino; openvino-sparse, pruneofa's
  kernel inside OpenVINO, over OpenVINO's FP32): what sparsity + int8 buy on one engine, all else equal;
- `openvino-sparse-vs-openvino-int8-bN`: pruneofa's kernel over OpenVINO's own int8 kernel on the same weights:
  what skipping the zeros buys over a dense int8 matmul;
- `ENGINE-vs-torch-bN`: over torch eager FP32;
- `ENGINE-vs-best-dense-bN`: over the best dense baseline, the fastest dense variant measured at batch N (on a
  bf16-capable CPU usually OpenVINO at its default precision): what sparse int8 buys over the best this machine
  does without it. The entry names its baseline variant and the precision that baseline ran in.

`fastest_engine` names, per batch, the fastest engine on the sparse int8 export: the `--engine` to pass to
`predict` / `eval` on this machine.

A result is sparse when its precision is "int8" and dense otherwise ("fp32", or "default": OpenVINO's own pick),
so a new sparse engine (`sparse-int8-bN`) or dense engine is compared here without changes. Pure functions of
result dicts: tests feed them made-up numbers.
"""

from __future__ import annotations

from typing import Any

SPARSE_PRECISION = "int8"
# Engine timed on the sparse export -> the engine whose dense fp32 run it is compared with.
ENGINE_BASELINES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino-sparse": "openvino"}
# The sparse kernel against the dense int8 kernel of the same engine, on the same int8 weights.
KERNEL_BASELINES = {"openvino-sparse": "openvino"}
BEST_DENSE = "best_dense"


def is_sparse(row: dict[str, Any]) -> bool:
    return row.get("precision") == SPARSE_PRECISION


def speedups(results: dict[str, dict[str, Any]], batch_sizes: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Sparse-int8 over dense-fp32 on each engine (`openvino-b1`), over torch fp32 (`openvino-vs-torch-b1`), and
    the sparse kernel over the dense int8 one (`openvino-sparse-vs-openvino-int8-b1`)."""
    out: dict[str, dict[str, Any]] = {}
    for batch in batch_sizes:
        torch_key = f"torch-fp32-b{batch}"
        for engine, dense in ENGINE_BASELINES.items():
            sparse_key = f"{engine}-int8-b{batch}"
            if sparse_key not in results:
                continue
            pairs = [(f"{engine}-b{batch}", f"{dense}-fp32-b{batch}"), (f"{engine}-vs-torch-b{batch}", torch_key)]
            if engine in KERNEL_BASELINES:
                kernel = KERNEL_BASELINES[engine]
                pairs.append((f"{engine}-vs-{kernel}-int8-b{batch}", f"{kernel}-int8-b{batch}"))
            for name, base_key in pairs:
                if base_key in results:
                    out[name] = ratio(results, sparse_key, base_key)
    return out


def fastest_engine(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per batch ("b1"), the fastest variant on the sparse int8 export: its engine (the `--engine` to pass to
    predict/eval for this model on this machine), variant key and seq/s. Ties go to the first result."""
    return {
        f"b{batch}": {"engine": results[key]["engine"], "variant": key, "seq_s": results[key]["throughput_seq_s"]}
        for batch, key in _fastest(results, sparse=True).items()
    }


def _fastest(results: dict[str, dict[str, Any]], sparse: bool) -> dict[int, str]:
    """Batch -> key of the fastest sparse (or dense) result, batches in order; ties go to the first result."""
    fastest: dict[int, str] = {}
    for key, row in results.items():
        batch = int(row["batch"])
        if is_sparse(row) == sparse and (
            batch not in fastest or row["throughput_seq_s"] > results[fastest[batch]]["throughput_seq_s"]
        ):
            fastest[batch] = key
    return dict(sorted(fastest.items()))


def best_dense(
    results: dict[str, dict[str, Any]], engines: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per batch ("b1"), the fastest dense result: its variant key, seq/s, and the precision it ran in.

    `engines` is bench.json's "engines" ({"openvino-default": info}); an engine's read-back `precision_used`
    (OpenVINO's compiled INFERENCE_PRECISION_HINT, e.g. "bf16") is named where it has one, else the result's
    precision. Ties go to the first result in `results`.
    """
    out: dict[str, dict[str, Any]] = {}
    for batch, key in _fastest(results, sparse=False).items():
        row = results[key]
        info = (engines or {}).get(f"{row['engine']}-{row['precision']}") or {}
        out[f"b{batch}"] = {
            "variant": key,
            "seq_s": row["throughput_seq_s"],
            "precision_used": info.get("precision_used") or row["precision"],
            "engine": row["engine"],
            "precision": row["precision"],
        }
    return out


def best_dense_speedups(
    results: dict[str, dict[str, Any]], best: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every sparse result over its batch's best dense baseline (`best_dense`): `ENGINE-vs-best-dense-bN`."""
    out: dict[str, dict[str, Any]] = {}
    for batch, base in best.items():
        for key, row in results.items():
            if is_sparse(row) and f"b{row['batch']}" == batch:
                out[f"{row['engine']}-vs-best-dense-{batch}"] = {
                    **ratio(results, key, base["variant"]),
                    "versus": BEST_DENSE,
                    "baseline_precision_used": base["precision_used"],
                }
    return out


def headline(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per batch, the best sparse result over the best dense baseline (the entry of "speedups" with the largest
    ratio), with its speedup name under "name"; empty for a document without best-dense speedups."""
    best: dict[str, dict[str, Any]] = {}
    for name, s in (doc.get("speedups") or {}).items():
        if s.get("versus") != BEST_DENSE:
            continue
        batch = name.rsplit("-", 1)[-1]
        if batch not in best or s["speedup"] > best[batch]["speedup"]:
            best[batch] = {"name": name, **s}
    return list(best.values())


def ratio(results: dict[str, dict[str, Any]], sparse_key: str, base_key: str) -> dict[str, Any]:
    sparse, base = results[sparse_key]["throughput_seq_s"], results[base_key]["throughput_seq_s"]
    return {
        "sparse_int8": sparse_key,
        "baseline": base_key,
        "sparse_int8_seq_s": sparse,
        "baseline_seq_s": base,
        "speedup": sparse / base,
    }
