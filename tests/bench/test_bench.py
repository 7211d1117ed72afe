"""`pruneofa bench` on the tiny exports (schema, interleaving, ratios from the measured numbers, outputs) and its
pure parts on made-up inputs (timing loop, stop rule, CPU flags, sparse-path detection, best dense baseline, gate
rules on its speedups). No speed is asserted."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import cli_error

from pruneofa import gates
from pruneofa.bench.compare import best_dense, best_dense_speedups, fastest_engine, headline, speedups
from pruneofa.bench.report import markdown
from pruneofa.bench.run import BenchConfig, _split, run_bench
from pruneofa.bench.runners import default_precision_facts, sparse_weights_status
from pruneofa.bench.timing import StopRule, Variant, rotated, time_variants
from pruneofa.cli import main
from pruneofa.core.errors import PruneofaError
from pruneofa.core.hardware import default_threads, parse_cpuinfo
from pruneofa.kernels import openvino_op
from pruneofa.kernels.native import Availability

QUICK = BenchConfig(batch_sizes=(1, 2), seq_len=16, warmup=1, iterations=3, duration=0.5, rounds=3, sparse_rate=0.5)
SPARSE_KERNEL_RUNS = openvino_op.availability().ok  # where it is not built, bench records it as unavailable
DENSE_KERNEL_MODELS = (
    "onnxruntime-int8", "onnxruntime-fp32", "openvino-int8", "openvino-fp32", "openvino-default", "torch-fp32"
)  # fmt: skip
MODELS = (*DENSE_KERNEL_MODELS, "openvino-sparse-int8") if SPARSE_KERNEL_RUNS else DENSE_KERNEL_MODELS
SPARSE_ENGINES = ("onnxruntime", "openvino", "openvino-sparse") if SPARSE_KERNEL_RUNS else ("onnxruntime", "openvino")
DENSE = ("onnxruntime-fp32", "openvino-fp32", "openvino-default", "torch-fp32")


@pytest.fixture(scope="module")
def doc(tiny_exports: Path) -> dict[str, Any]:
    return run_bench(tiny_exports / "int8", tiny_exports / "fp32", QUICK)


def test_every_variant_measured_with_ordered_percentiles(doc: dict[str, Any]) -> None:
    assert doc["format"] == "pruneofa-bench/1"
    assert set(doc["not_measured"]) == (set() if SPARSE_KERNEL_RUNS else {"openvino-sparse-int8"})
    assert set(doc["results"]) == {f"{m}-b{b}" for m in MODELS for b in (1, 2)}
    for key, row in doc["results"].items():
        lat = row["latency_ms"]
        assert 1 <= row["iterations"] <= QUICK.iterations, key
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], key
        assert row["throughput_seq_s"] == pytest.approx(row["batch"] * 1000 / lat["p50"])


def test_records_machine_engines_and_models(doc: dict[str, Any]) -> None:
    assert doc["config"]["threads"] >= 1 and doc["config"]["streams"] == 1
    assert {"model_name", "physical_cores", "avx512_vnni", "amx"} <= set(doc["cpu"])
    assert {"onnxruntime", "openvino", "torch"} <= set(doc["versions"])
    ov_fp32 = doc["engines"]["openvino-fp32"]["compiled"]
    assert ov_fp32["INFERENCE_PRECISION_HINT"] == "f32"  # read back from the compiled model
    assert doc["engines"]["onnxruntime-int8"]["int8_matmuls"] > 0 == doc["engines"]["onnxruntime-fp32"]["int8_matmuls"]
    assert doc["models"]["sparse_int8"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert {"bytes", "gzip_bytes"} <= set(doc["models"]["dense_fp32"]["sizes"]["onnx"])
    assert doc["models"]["torch_fp32"]["folder"].endswith("dense")
    assert doc["inputs"]["seq_len"] == 16 and 0 < doc["inputs"]["real_tokens_mean"] <= 16
    kernels = doc["engines"]["openvino-int8"]["matmul_kernels"]  # read after inference, when kernels are chosen
    assert kernels and not any(name.startswith("undef") for name in kernels)
    sparse = doc["openvino_sparse_weights"]
    assert sparse["decompression_rate"] == QUICK.sparse_rate
    assert sparse["status"] == ("unavailable" if not doc["cpu"]["amx"] else sparse["status"])


def test_rounds_interleave_every_variant(doc: dict[str, Any]) -> None:
    order = doc["round_order"]
    assert len(order) == QUICK.rounds
    assert all(sorted(r) == sorted(doc["results"]) for r in order)
    assert len({r[0] for r in order}) == QUICK.rounds  # each round starts with a different variant
    assert order[1] == order[0][1:] + order[0][:1]


def test_speedups_are_ratios_of_reported_throughputs(doc: dict[str, Any]) -> None:
    kernel_vs_kernel = {f"openvino-sparse-vs-openvino-int8-b{b}" for b in (1, 2)} if SPARSE_KERNEL_RUNS else set()
    assert set(doc["speedups"]) == kernel_vs_kernel | {
        f"{e}{vs}-b{b}" for e in SPARSE_ENGINES for vs in ("", "-vs-torch", "-vs-best-dense") for b in (1, 2)
    }
    for name, s in doc["speedups"].items():
        sparse = doc["results"][s["sparse_int8"]]["throughput_seq_s"]
        base = doc["results"][s["baseline"]]["throughput_seq_s"]
        assert s["speedup"] == pytest.approx(sparse / base) and s["sparse_int8_seq_s"] == sparse, name
    assert doc["speedups"]["openvino-vs-torch-b2"]["baseline"] == "torch-fp32-b2"
    assert doc["speedups"]["openvino-b1"]["baseline"] == "openvino-fp32-b1"  # the seed's comparison, unchanged


@pytest.mark.skipif(not SPARSE_KERNEL_RUNS, reason=openvino_op.availability().reason)
def test_sparse_form_is_timed_on_pruneofas_kernel(doc: dict[str, Any]) -> None:
    """model.sparse.onnx runs as its own variant, interleaved with the others, its Linears on the kernel."""
    info = doc["engines"]["openvino-sparse-int8"]
    assert info["engine"] == "openvino-sparse" and info["model"].endswith("model.sparse.onnx")
    assert info["sparse_linears"] == info["int8_matmuls"] > 0 and info["compiled"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert doc["sparse_kernel"]["status"] == "measured" and doc["sparse_kernel"]["kernel_isa"] == info["kernel_isa"]
    assert all("openvino-sparse-int8-b1" in r for r in doc["round_order"])
    row = doc["results"]["openvino-sparse-int8-b2"]
    assert (row["engine"], row["precision"]) == ("openvino-sparse", "int8")
    assert doc["speedups"]["openvino-sparse-b2"]["baseline"] == "openvino-fp32-b2"
    assert doc["speedups"]["openvino-sparse-vs-openvino-int8-b2"]["baseline"] == "openvino-int8-b2"
    assert doc["speedups"]["openvino-sparse-vs-best-dense-b2"]["baseline"] == doc["best_dense"]["b2"]["variant"]
    assert doc["models"]["sparse_int8"]["sizes"]["sparse_form"]["bytes"] > 0
    assert "pruneofa sparse kernel (openvino-sparse-int8, model.sparse.onnx): measured" in markdown(doc)


def test_fastest_engine_per_batch_is_the_fastest_int8_variant(doc: dict[str, Any]) -> None:
    assert set(doc["fastest_engine"]) == {"b1", "b2"}
    for batch, fastest in doc["fastest_engine"].items():
        int8 = {k: r["throughput_seq_s"] for k, r in doc["results"].items() if k.endswith(f"-int8-{batch}")}
        assert fastest["variant"] == max(int8, key=lambda k: int8[k]) and fastest["seq_s"] == max(int8.values())
        assert fastest["engine"] == doc["results"][fastest["variant"]]["engine"]
    assert "Fastest engine on the sparse-int8 export" in markdown(doc)


def test_unavailable_sparse_kernel_is_recorded_with_its_reason(
    tiny_exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = "libpruneofa_openvino.so was built against OpenVINO 1.0 but 2.0 is installed; reinstall pruneofa"
    monkeypatch.setattr(openvino_op, "availability", lambda: Availability(False, reason))
    cfg = dataclasses.replace(TINY, engines=("openvino-sparse", "openvino"))
    doc = run_bench(tiny_exports / "int8", tiny_exports / "fp32", cfg)
    why = doc["not_measured"]["openvino-sparse-int8"]
    assert why.startswith("unavailable: the native sparse kernel is unavailable: ") and reason in why
    assert doc["sparse_kernel"]["status"] == "unavailable" and reason in doc["sparse_kernel"]["note"]
    assert not any(k.startswith("openvino-sparse") for k in (*doc["results"], *doc["speedups"]))
    assert "pruneofa sparse kernel (openvino-sparse-int8, model.sparse.onnx): unavailable: " in markdown(doc)


def test_export_without_sparse_form_is_not_measured_on_the_kernel(tiny_exports: Path, tmp_path: Path) -> None:
    other = tmp_path / "int8"
    shutil.copytree(tiny_exports / "int8", other)
    (other / "model.sparse.onnx").unlink()
    doc = run_bench(other, tiny_exports / "fp32", dataclasses.replace(TINY, engines=("openvino-sparse", "onnxruntime")))
    assert doc["sparse_kernel"]["status"] == "not measured" and "--no_sparse_form" in doc["sparse_kernel"]["note"]


def test_openvino_default_runs_at_the_precision_openvino_picked(doc: dict[str, Any]) -> None:
    """No precision hint requested; the one OpenVINO used is read back from the compiled model, with the flags."""
    info = doc["engines"]["openvino-default"]
    assert "INFERENCE_PRECISION_HINT" not in info["requested"]
    used = info["compiled"]["INFERENCE_PRECISION_HINT"]
    assert used in ("bf16", "f16", "f32") and info["precision_used"] == used
    facts = info["default_precision"]
    assert facts["precision_used"] == used and facts["cpu_flags"]["avx512_bf16"] == doc["cpu"]["avx512_bf16"]
    if not (doc["cpu"]["avx512_bf16"] or "amx_bf16" in doc["cpu"]["amx_flags"]):
        assert used == "f32"  # no bf16 hardware: the default is the f32 baseline's precision
    assert doc["engines"]["openvino-fp32"]["precision_used"] == "f32"
    row = doc["results"]["openvino-default-b1"]
    assert (row["engine"], row["precision"]) == ("openvino", "default")


def test_best_dense_is_the_fastest_dense_variant_measured(doc: dict[str, Any]) -> None:
    assert set(doc["best_dense"]) == {"b1", "b2"}
    for batch, best in doc["best_dense"].items():
        dense = {f"{m}-{batch}": doc["results"][f"{m}-{batch}"]["throughput_seq_s"] for m in DENSE}
        assert best["variant"] == max(dense, key=lambda k: dense[k]) and best["seq_s"] == max(dense.values())
        s = doc["speedups"][f"openvino-vs-best-dense-{batch}"]
        assert s["baseline"] == best["variant"] and s["baseline_precision_used"] == best["precision_used"]
    text = markdown(doc)
    assert "Best dense baseline" in text and "| openvino-vs-best-dense-b1 |" in text


# ---------------------------------------------------------------- pure parts


def test_time_variants_interleaves_and_stops() -> None:
    calls: list[str] = []
    runners = {m: (lambda feeds, m=m: calls.append(m)) for m in ("a-int8", "b-fp32")}
    variants = [Variant("a", "int8", 1), Variant("b", "fp32", 1)]
    feeds = {1: [{"input_ids": np.zeros((1, 4), dtype=np.int64)}]}
    latencies, order = time_variants(variants, runners, feeds, StopRule(iterations=4, duration=60, rounds=2, warmup=1))
    assert calls == ["a-int8", "b-fp32"] + ["a-int8"] * 2 + ["b-fp32"] * 2 + ["b-fp32"] * 2 + ["a-int8"] * 2
    assert order == [["a-int8-b1", "b-fp32-b1"], ["b-fp32-b1", "a-int8-b1"]]
    assert {k: len(v) for k, v in latencies.items()} == {"a-int8-b1": 4, "b-fp32-b1": 4}  # warm-up not timed


def test_duration_stops_before_iterations() -> None:
    import time

    runners = {"a-int8": lambda feeds: time.sleep(0.02)}
    latencies, _ = time_variants(
        [Variant("a", "int8", 1)], runners, {1: [{}]}, StopRule(iterations=1000, duration=0.1, rounds=2, warmup=0)
    )
    assert 2 <= len(latencies["a-int8-b1"]) <= 8  # ~0.05 s per round of 20 ms runs, never 1000


def test_rotation() -> None:
    v = [Variant("a", "int8", 1), Variant("b", "int8", 1), Variant("c", "int8", 1)]
    assert [x.engine for x in rotated(v, 4)] == ["b", "c", "a"]


CPUINFO = """processor\t: 0
model name\t: Fake Xeon {name}
physical id\t: 0
core id\t: 0
flags\t\t: fpu avx512f {flags}

processor\t: 1
model name\t: Fake Xeon {name}
physical id\t: 0
core id\t: 0
flags\t\t: fpu avx512f {flags}
"""


def test_cpuinfo_flags_and_cores() -> None:
    spr = parse_cpuinfo(CPUINFO.format(name="SPR", flags="avx512_vnni amx_tile amx_int8 amx_bf16"))
    assert spr["amx"] and spr["avx512_vnni"] and spr["model_name"] == "Fake Xeon SPR"
    assert spr["logical_cpus"] == 2 and spr["physical_cores"] == 1  # two hyper-threads of one core
    old = parse_cpuinfo(CPUINFO.format(name="CLX", flags="avx512vnni"))
    assert old["avx512_vnni"] and not old["amx"]
    assert default_threads({**spr, "usable_cpus": 2}) == 1


def layer(kind: str, precision: str, primitive: str) -> dict[str, str]:
    return {"name": "fc", "layer_type": kind, "runtime_precision": precision, "primitive_type": primitive}


def result(engine: str, precision: str, batch: int, seq_s: float) -> dict[str, Any]:
    return {"engine": engine, "precision": precision, "batch": batch, "throughput_seq_s": seq_s}


MADE_UP = {
    r["engine"] + "-" + r["precision"] + f"-b{r['batch']}": r
    for r in (
        result("onnxruntime", "int8", 1, 300.0),
        result("onnxruntime", "fp32", 1, 100.0),
        result("openvino", "int8", 1, 400.0),
        result("openvino", "fp32", 1, 90.0),
        result("openvino", "default", 1, 200.0),
        result("torch", "fp32", 1, 250.0),  # the fastest dense at b1
        result("sparse", "int8", 1, 500.0),  # a future sparse engine: picked up by its precision alone
        result("openvino", "int8", 8, 800.0),
        result("openvino", "fp32", 8, 300.0),
        result("openvino", "default", 8, 1000.0),  # the fastest dense at b8, faster than the sparse model
    )
}
ENGINES = {"openvino-default": {"precision_used": "bf16"}, "openvino-fp32": {"precision_used": "f32"}}


def test_best_dense_picks_the_fastest_dense_result() -> None:
    best = best_dense(MADE_UP, ENGINES)
    assert best == {
        "b1": {"variant": "torch-fp32-b1", "seq_s": 250.0, "precision_used": "fp32", "engine": "torch",
               "precision": "fp32"},
        "b8": {"variant": "openvino-default-b8", "seq_s": 1000.0, "precision_used": "bf16", "engine": "openvino",
               "precision": "default"},
    }  # fmt: skip
    assert best_dense({k: v for k, v in MADE_UP.items() if v["precision"] == "int8"}) == {}


def test_every_sparse_variant_gets_a_speedup_over_best_dense() -> None:
    over = best_dense_speedups(MADE_UP, best_dense(MADE_UP, ENGINES))
    assert set(over) == {
        "onnxruntime-vs-best-dense-b1", "openvino-vs-best-dense-b1", "sparse-vs-best-dense-b1",
        "openvino-vs-best-dense-b8",
    }  # fmt: skip
    assert over["sparse-vs-best-dense-b1"]["speedup"] == pytest.approx(2.0)
    assert over["openvino-vs-best-dense-b8"]["speedup"] == pytest.approx(0.8)  # slower than bf16: said so
    assert over["openvino-vs-best-dense-b8"]["baseline"] == "openvino-default-b8"
    assert over["openvino-vs-best-dense-b8"]["baseline_precision_used"] == "bf16"
    assert fastest_engine(MADE_UP) == {
        "b1": {"engine": "sparse", "variant": "sparse-int8-b1", "seq_s": 500.0},
        "b8": {"engine": "openvino", "variant": "openvino-int8-b8", "seq_s": 800.0},
    }
    per_engine = speedups(MADE_UP, (1, 8))  # the seed's comparisons do not move to the best dense
    assert per_engine["openvino-b8"]["baseline"] == "openvino-fp32-b8" and "sparse-b1" not in per_engine
    heads = headline({"speedups": {**per_engine, **over}})
    assert [(h["name"], h["baseline"]) for h in heads] == [
        ("sparse-vs-best-dense-b1", "torch-fp32-b1"), ("openvino-vs-best-dense-b8", "openvino-default-b8")
    ]  # fmt: skip


def test_sparse_kernel_speedups_and_variant_names() -> None:
    rows = {
        **MADE_UP,
        "openvino-sparse-int8-b1": result("openvino-sparse", "int8", 1, 600.0),
        "torch-fp32-b8": result("torch", "fp32", 8, 100.0),
    }
    ratios = speedups(rows, (1, 8))
    assert ratios["openvino-sparse-b1"]["baseline"] == "openvino-fp32-b1"  # OpenVINO's fp32: the same engine
    assert ratios["openvino-sparse-b1"]["speedup"] == pytest.approx(600 / 90)
    assert ratios["openvino-sparse-vs-openvino-int8-b1"]["speedup"] == pytest.approx(1.5)
    assert ratios["openvino-sparse-vs-torch-b1"]["speedup"] == pytest.approx(600 / 250)
    assert not any(name.startswith("openvino-sparse") and name.endswith("b8") for name in ratios)
    over = best_dense_speedups(rows, best_dense(rows, ENGINES))
    assert over["openvino-sparse-vs-best-dense-b1"]["baseline"] == "torch-fp32-b1"
    assert fastest_engine(rows)["b1"]["engine"] == "openvino-sparse"
    assert _split("openvino-sparse-int8") == ("openvino-sparse", "int8")
    assert _split("openvino-default") == ("openvino", "default") and _split("torch-fp32") == ("torch", "fp32")


@pytest.mark.parametrize(("limit", "passed"), [(1.9, True), (2.0, True), (2.1, False)])
def test_gate_on_a_best_dense_speedup(limit: float, passed: bool) -> None:
    best = best_dense(MADE_UP, ENGINES)
    doc = {"format": "pruneofa-bench/1", "results": MADE_UP, "best_dense": best,
           "speedups": {**speedups(MADE_UP, (1, 8)), **best_dense_speedups(MADE_UP, best)}}  # fmt: skip
    rules = gates.parse_rules({"speedup": {"min": {"sparse-vs-best-dense-b1": limit}}}, "gates.toml")
    (outcome,) = gates.evaluate(rules, None, None, doc)
    assert outcome.passed is passed and outcome.measured == pytest.approx(2.0)
    assert outcome.detail == "sparse-int8-b1 / torch-fp32-b1"
    missing = gates.parse_rules({"speedup": {"min": {"sparse-vs-best-dense-b8": 1.0}}}, "gates.toml")
    with pytest.raises(gates.GateInputError, match=r"no speedup 'sparse-vs-best-dense-b8'; measured: .*best-dense"):
        gates.evaluate(missing, None, None, doc)


def test_default_precision_explained_by_cpu_flags() -> None:
    amx = default_precision_facts("bf16", {"amx": True, "amx_flags": ["amx_bf16", "amx_int8"], "avx512_bf16": True})
    assert amx["cpu_flags"] == {"avx512_bf16": True, "amx_bf16": True, "amx": True} and "AMX-BF16" in amx["note"]
    zen4 = default_precision_facts("bf16", {"amx": False, "amx_flags": [], "avx512_bf16": True})
    assert "AVX512-BF16" in zen4["note"] and "AMX" not in zen4["note"]
    old = default_precision_facts("f32", {"amx": False, "amx_flags": [], "avx512_bf16": False})
    assert old["precision_used"] == "f32" and "same as the f32-hint baseline" in old["note"]


def test_sparse_path_detection() -> None:
    dense = [layer("FullyConnected", "I8", "brgemm_avx512_I8")] * 3 + [layer("Softmax", "FP32", "jit")]
    sparse = [layer("FullyConnected", "I8", "brgemm_avx512_amx_sparse_I8")] * 2 + dense[:1]
    no_amx, amx = {"amx": False}, {"amx": True}
    assert sparse_weights_status(dense, no_amx, 0.5)["status"] == "unavailable"
    assert "no AMX" in sparse_weights_status(dense, no_amx, 0.5)["note"]
    inactive = sparse_weights_status(dense, amx, 0.7)
    assert inactive["status"] == "inactive" and not inactive["active"] and "0.7" in inactive["note"]
    active = sparse_weights_status(sparse, amx, 0.5)
    assert active["active"] and (active["sparse_kernels"], active["int8_matmuls"]) == (2, 3)


# ---------------------------------------------------------------- CLI, outputs and refusals


QUICK_FLAGS = ["--batch_sizes", "1", "--seq_len", "8", "--iterations", "2", "--duration", "0.2", "--rounds", "2"]


def test_cli_writes_outputs_and_refuses_to_overwrite(
    tiny_exports: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["bench", str(tiny_exports / "int8"), "--baseline", str(tiny_exports / "fp32"), *QUICK_FLAGS]
    args += ["--engines", "onnxruntime,openvino", "--output_dir", str(tmp_path)]
    _run_ok(args)
    out = capsys.readouterr().out
    assert "onnxruntime-int8-b1" in out and "sparse-weights path" in out
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert "torch-fp32-b1" not in saved["results"] and "openvino-b1" in saved["speedups"]
    assert saved["openvino_sparse_weights"]["status"] == "off"  # not asked for: OpenVINO's dense int8 kernel ran
    assert "openvino-int8 float ops: f32 (f32 hint" in out  # an export not checked at OpenVINO's default precision
    assert "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE" not in saved["engines"]["openvino-int8"]["requested"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "| openvino-int8-b1 |" in (tmp_path / "bench.md").read_text()
    assert "headline" in out and saved["best_dense"]["b1"]["variant"] in saved["results"]
    from pruneofa.core import hardware
    from pruneofa.runtime import engine_choice

    assert "recorded the fastest engine" in out  # predict/eval now default to it on this machine
    choice = engine_choice.choose(tiny_exports / "int8", 1, hardware.cpu_info())
    assert choice.engine == saved["fastest_engine"]["b1"]["engine"] and "pruneofa bench" in choice.reason
    line = cli_error(capsys, *args)
    assert "--overwrite" in line and "bench.json" in line
    gate = ["gate", "--bench", str(tmp_path / "bench.json"), "--min_speedup"]
    _run_ok([*gate, "openvino-vs-best-dense-b1=0.000001"])  # a floor any measurement clears: the key is usable
    with pytest.raises(SystemExit) as failed:
        main([*gate, "openvino-vs-best-dense-b1=1000000"])
    assert failed.value.code == 1
    assert "FAILED speedup.min[openvino-vs-best-dense-b1]" in capsys.readouterr().err


def test_no_openvino_default_leaves_it_out(tiny_exports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = dataclasses.replace(TINY, engines=("openvino",), openvino_default=False)
    doc = run_bench(tiny_exports / "int8", tiny_exports / "fp32", cfg)
    assert set(doc["results"]) == {"openvino-int8-b1", "openvino-fp32-b1"} and doc["not_measured"] == {}
    assert doc["best_dense"]["b1"]["variant"] == "openvino-fp32-b1"
    assert doc["speedups"]["openvino-vs-best-dense-b1"]["baseline"] == "openvino-fp32-b1"
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--no_openvino_default" in capsys.readouterr().out


def _run_ok(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as exc:  # Typer exits 0 after a command in standalone mode
        assert exc.code in (0, None)


def test_missing_folder_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = cli_error(
        capsys, "bench", str(tmp_path / "nope"), "--baseline", str(tmp_path), "--output_dir", str(tmp_path)
    )
    assert "no such folder" in line and "nope" in line


def test_swapped_precisions_refused(tiny_exports: Path) -> None:
    with pytest.raises(PruneofaError, match="is a fp32 export; SPARSE_INT8_EXPORT must be the int8 one"):
        run_bench(tiny_exports / "fp32", tiny_exports / "int8", QUICK)


def test_mismatched_inputs_refused(tiny_exports: Path, tmp_path: Path) -> None:
    other = tmp_path / "fp32"
    shutil.copytree(tiny_exports / "fp32", other)
    manifest = json.loads((other / "manifest.json").read_text())
    del manifest["inputs"]["token_type_ids"]  # as a RoBERTa-style export would be
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PruneofaError, match="take different inputs"):
        run_bench(tiny_exports / "int8", other, QUICK)


def test_missing_torch_and_ir_are_not_measured(tiny_exports: Path, tmp_path: Path) -> None:
    """A baseline whose source folder is gone and that has no IR: those variants are listed, never faked."""
    other = tmp_path / "fp32"
    shutil.copytree(tiny_exports / "fp32", other)
    (other / "openvino_model.xml").unlink()
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["source"]["folder"] = str(tmp_path / "gone")
    (other / "manifest.json").write_text(json.dumps(manifest))
    cfg = BenchConfig(batch_sizes=(1,), seq_len=8, warmup=0, iterations=2, duration=0.2, rounds=1)
    doc = run_bench(tiny_exports / "int8", other, cfg)
    kernel = {"openvino-sparse-int8"} if not SPARSE_KERNEL_RUNS else set()
    assert set(doc["not_measured"]) == {"openvino-fp32", "openvino-default", "torch-fp32", *kernel}
    assert "--torch_model" in doc["not_measured"]["torch-fp32"]
    assert "no openvino_model.xml" in doc["not_measured"]["openvino-default"]
    on_kernel = {"openvino-sparse-int8-b1"} if SPARSE_KERNEL_RUNS else set()
    assert set(doc["results"]) == {"onnxruntime-int8-b1", "onnxruntime-fp32-b1", "openvino-int8-b1", *on_kernel}
    kernel_ratios = {"openvino-sparse-vs-best-dense-b1", "openvino-sparse-vs-openvino-int8-b1"} if on_kernel else set()
    assert set(doc["speedups"]) == {
        "onnxruntime-b1", "onnxruntime-vs-best-dense-b1", "openvino-vs-best-dense-b1", *kernel_ratios
    }  # fmt: skip
    assert doc["best_dense"]["b1"]["variant"] == "onnxruntime-fp32-b1"


def _with_task(source: Path, target: Path, task: str, meta_file: str = "manifest.json") -> Path:
    """A copy of an export (manifest.json) or training folder (pruneofa.json) that records another task."""
    shutil.copytree(source, target)
    meta = json.loads((target / meta_file).read_text())
    meta["task_name"] = task
    (target / meta_file).write_text(json.dumps(meta))
    return target


TINY = BenchConfig(batch_sizes=(1,), seq_len=8, warmup=0, iterations=2, duration=0.2, rounds=1)


def test_baseline_export_of_another_task_refused(tiny_exports: Path, tmp_path: Path) -> None:
    """Same architecture and label count (sst2 and rotten_tomatoes are both binary): only the task tells them apart."""
    other = _with_task(tiny_exports / "fp32", tmp_path / "fp32", "sst2")
    with pytest.raises(PruneofaError, match=r"is task 'rotten_tomatoes' but --baseline .*fp32 is task 'sst2'"):
        run_bench(tiny_exports / "int8", other, TINY)


def test_baseline_training_folder_of_another_task_refused_before_export(
    tiny_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _with_task(tiny_exports / "dense", tmp_path / "dense", "sst2", "pruneofa.json")

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported a baseline of another task before refusing it")

    monkeypatch.setattr("pruneofa.export.exporter.export", no_export)
    with pytest.raises(PruneofaError, match=r"is task 'rotten_tomatoes' but --baseline .*dense is task 'sst2'"):
        run_bench(tiny_exports / "int8", other, TINY)


def test_torch_model_of_another_task_refused(tiny_exports: Path, tmp_path: Path) -> None:
    other = _with_task(tiny_exports / "dense", tmp_path / "dense", "sst2", "pruneofa.json")
    with pytest.raises(PruneofaError, match=r"--torch_model .*dense is task 'sst2'"):
        run_bench(tiny_exports / "int8", tiny_exports / "fp32", dataclasses.replace(TINY, torch_model=other))


def test_recorded_source_of_another_task_is_not_measured(tiny_exports: Path, tmp_path: Path) -> None:
    """The baseline's training folder was since reused for another task: its weights are not the baseline's."""
    reused = _with_task(tiny_exports / "dense", tmp_path / "dense", "sst2", "pruneofa.json")
    baseline = tmp_path / "fp32"
    shutil.copytree(tiny_exports / "fp32", baseline)
    manifest = json.loads((baseline / "manifest.json").read_text())
    manifest["source"]["folder"] = str(reused)
    (baseline / "manifest.json").write_text(json.dumps(manifest))
    doc = run_bench(tiny_exports / "int8", baseline, dataclasses.replace(TINY, engines=("onnxruntime", "torch")))
    assert set(doc["not_measured"]) == {"torch-fp32"}
    assert "'sst2'" in doc["not_measured"]["torch-fp32"] and "--torch_model" in doc["not_measured"]["torch-fp32"]


def test_cli_baseline_of_another_task_exit_2(
    tiny_exports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _with_task(tiny_exports / "fp32", tmp_path / "fp32", "sst2")
    args = ["bench", str(tiny_exports / "int8"), "--baseline", str(other), *QUICK_FLAGS, "--output_dir", str(tmp_path)]
    line = cli_error(capsys, *args)
    assert "'rotten_tomatoes'" in line and "'sst2'" in line and "--baseline" in line
    assert not (tmp_path / "bench.json").exists()
