"""`pruneofa gate`: each rule passes and fails on hand-made results, bad rules/inputs are one-line errors (exit 2),
and the real chain eval -> bench -> gate runs on the tiny model (the CI check of the mechanism itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pruneofa import gates
from pruneofa.cli import main


def eval_doc(accuracy: float) -> dict[str, Any]:
    return {"validation": {"accuracy": accuracy}, "task_name": "rotten_tomatoes", "engine": {"engine": "onnxruntime"}}


def bench_doc() -> dict[str, Any]:
    def row(p50: float, p90: float, batch: int = 1) -> dict[str, Any]:
        lat = {"min": p50 / 2, "p50": p50, "p90": p90, "p99": p90 * 1.5, "max": p90 * 2, "mean": p50}
        return {"batch": batch, "latency_ms": lat, "throughput_seq_s": batch * 1000 / p50}

    speedup = {"sparse_int8": "openvino-int8-b1", "baseline": "openvino-fp32-b1", "speedup": 2.0}
    return {
        "format": "pruneofa-bench/1",
        "results": {"openvino-int8-b1": row(10, 20), "openvino-fp32-b1": row(20, 40)},
        "speedups": {"openvino-b1": {**speedup, "sparse_int8_seq_s": 100.0, "baseline_seq_s": 50.0}},
        "not_measured": {"torch-fp32": "not measured: no torch weights"},
    }


def outcome(table: dict[str, Any], ev: float | None = 0.85, ref: float | None = 0.86) -> gates.Outcome:
    rules = gates.parse_rules(table, "test")
    ev_doc = eval_doc(ev) if ev is not None else None
    ref_doc = eval_doc(ref) if ref is not None else None
    (result,) = gates.evaluate(rules, ev_doc, ref_doc, bench_doc())
    return result


@pytest.mark.parametrize(
    ("table", "measured"),
    [
        ({"accuracy": {"min": 0.80}}, 0.85),
        ({"accuracy": {"max_drop": 0.02}}, 0.01),
        ({"latency": {"max_p90_ms": {"openvino-int8-b1": 25}}}, 20.0),
        ({"latency": {"max_p50_ms": {"openvino-fp32-b1": 20}}}, 20.0),  # equal to the limit passes
        ({"throughput": {"min_seq_s": {"openvino-int8-b1": 90}}}, 100.0),
        ({"speedup": {"min": {"openvino-b1": 1.5}}}, 2.0),
    ],
)
def test_each_rule_passes(table: dict[str, Any], measured: float) -> None:
    result = outcome(table)
    assert result.passed and result.measured == pytest.approx(measured)


@pytest.mark.parametrize(
    "table",
    [
        {"accuracy": {"min": 0.90}},
        {"accuracy": {"max_drop": 0.005}},
        {"latency": {"max_p90_ms": {"openvino-int8-b1": 15}}},
        {"latency": {"max_p99_ms": {"openvino-int8-b1": 29.9}}},
        {"throughput": {"min_seq_s": {"openvino-int8-b1": 101}}},
        {"speedup": {"min": {"openvino-b1": 2.5}}},
    ],
)
def test_each_rule_fails(table: dict[str, Any]) -> None:
    result = outcome(table)
    assert not result.passed
    (line,) = gates.failures([result])
    assert line.startswith(result.rule.name) and "limit" in line


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"acuracy": {"min": 0.8}}, "unknown section [acuracy]; use accuracy, latency, throughput, speedup"),
        ({"latency": {"max_p95_ms": {"x": 1}}}, "unknown key latency.max_p95_ms; valid keys: max_min_ms, max_p50_ms"),
        ({"speedup": {"min": 1.5}}, "speedup.min must map names to limits"),
        ({"accuracy": {"min": "high"}}, "'high' is not a number"),
    ],
)
def test_bad_rules_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(gates.GateInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gates.parse_rules(table, "gates.toml")


def test_unknown_and_unmeasured_variants_are_input_errors() -> None:
    with pytest.raises(gates.GateInputError, match="no speedup 'openvino-b8'; measured: openvino-b1"):
        outcome({"speedup": {"min": {"openvino-b8": 1.0}}})
    with pytest.raises(gates.GateInputError, match=r"'torch-fp32-b1' is not in bench.json \(not measured: no torch"):
        outcome({"latency": {"max_p90_ms": {"torch-fp32-b1": 100}}})
    with pytest.raises(gates.GateInputError, match="needs --reference"):
        outcome({"accuracy": {"max_drop": 0.01}}, ref=None)
    with pytest.raises(gates.GateInputError, match="no rules"):
        gates.evaluate(gates.Rules(()), None, None, None)


def test_metric_and_split_options() -> None:
    doc = {"validation": {"accuracy": 0.8, "f1": 0.7}, "task_name": "mrpc"}
    assert gates.metric_value(doc, gates.Rules(()), "--eval") == (0.7, "validation.f1")  # mrpc's main metric
    assert gates.metric_value(doc, gates.Rules((), metric="accuracy"), "--eval")[0] == 0.8
    with pytest.raises(gates.GateInputError, match="no 'pearson'; valid metrics: accuracy, f1"):
        gates.metric_value(doc, gates.Rules((), metric="pearson"), "--eval")


def test_flags_override_file_rules() -> None:
    file_rules = gates.parse_rules({"speedup": {"min": {"openvino-b1": 3.0}}, "accuracy": {"min": 0.5}}, "f")
    flag_rules = gates.parse_rules({"speedup": {"min": gates.flag_pairs(["openvino-b1=1.5"], "--min_speedup")}}, "f")
    merged = gates.merge(file_rules, flag_rules)
    assert sorted((r.name, r.limit) for r in merged.rules) == [("accuracy.min", 0.5), ("speedup.min[openvino-b1]", 1.5)]
    with pytest.raises(gates.GateInputError, match="write NAME=LIMIT"):
        gates.flag_pairs(["openvino-b1"], "--min_speedup")


# ---------------------------------------------------------------- CLI: exit codes 0 / 1 / 2


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = ["--eval", write(tmp_path / "e.json", eval_doc(0.85)), "--bench", write(tmp_path / "b.json", bench_doc())]
    rules = tmp_path / "gates.toml"
    rules.write_text('[accuracy]\nmin = 0.8\n[speedup]\nmin = { "openvino-b1" = 1.5 }\n')
    assert run("gate", *files, "--rules", str(rules)) == 0
    assert "2 of 2 rules passed" in capsys.readouterr().out
    assert (
        run("gate", *files, "--rules", str(rules), "--max_p90_ms", "openvino-int8-b1=5", "--min_accuracy", "0.9") == 1
    )
    err = capsys.readouterr().err
    assert "FAILED latency.max_p90_ms[openvino-int8-b1]: 20 > limit 5" in err and "FAILED accuracy.min" in err
    assert run("gate", *files, "--rules", str(tmp_path / "missing.toml")) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err
    assert run("gate", "--eval", str(tmp_path / "nope.json"), "--min_accuracy", "0.5") == 2
    assert "--eval" in capsys.readouterr().err
    rules.write_text("[accuracy\nmin = 0.8\n")
    assert run("gate", *files, "--rules", str(rules)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid TOML" in err[0]


def test_ci_gate_on_the_tiny_model(tiny_exports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a user's CI runs: eval the int8 and dense exports, bench them, gate on both files."""
    for name in ("int8", "fp32"):
        args = ["eval", str(tiny_exports / name), "--task_name", "rotten_tomatoes", "--max_eval_samples", "64"]
        assert run(*args, "--output", str(tmp_path / f"{name}.json")) == 0
    bench = ["bench", str(tiny_exports / "int8"), "--baseline", str(tiny_exports / "fp32"), "--batch_sizes", "1"]
    bench += ["--seq_len", "16", "--iterations", "3", "--duration", "0.3", "--rounds", "2", "--warmup", "1"]
    assert run(*bench, "--output_dir", str(tmp_path)) == 0
    files = ["--eval", str(tmp_path / "int8.json"), "--reference", str(tmp_path / "fp32.json")]
    files += ["--bench", str(tmp_path / "bench.json")]
    loose = ["--min_accuracy", "0", "--max_accuracy_drop", "1", "--max_p90_ms", "openvino-int8-b1=60000"]
    assert run("gate", *files, *loose, "--min_speedup", "openvino-vs-torch-b1=0.001") == 0
    assert run("gate", *files, *loose, "--min_accuracy", "0.999") == 1  # an untrained model cannot reach it
    assert "FAILED accuracy.min: " in capsys.readouterr().err
