"""`pruneofa gate`: each rule passes and fails on hand-made results, bad rules/inputs are one-line errors (exit 2),
and the real chain eval -> bench -> gate runs on the tiny model (the CI check of the mechanism itself)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli_error

from pruneofa import gates
from pruneofa.cli import main


def eval_doc(
    accuracy: float, task: str = "rotten_tomatoes", num_examples: dict[str, int] | None = None
) -> dict[str, Any]:
    """What `pruneofa eval --output` writes (the parts gate reads)."""
    return {
        "validation": {"accuracy": accuracy},
        "task_name": task,
        "engine": {"engine": "onnxruntime"},
        "num_examples": {"validation": 200} if num_examples is None else num_examples,
    }


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


def _escaped(message: str) -> str:
    return re.escape(message)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        # accuracy limits are fractions: points (3, 80) were accepted and then always passed / always failed
        ({"accuracy": {"max_drop": 3}}, "gates.toml: accuracy.max_drop = 3 is outside [0, 1]"),
        ({"accuracy": {"max_drop": 3}}, "use a fraction: 0.03 = 3 points"),
        ({"accuracy": {"min": 80}}, "gates.toml: accuracy.min = 80 is outside [0, 1]"),
        ({"accuracy": {"min": 80}}, "use a fraction: 0.8 = 80 points"),
        ({"accuracy": {"min": 1.01}}, "accuracy.min = 1.01 is outside [0, 1]"),
        ({"accuracy": {"min": -0.1}}, "accuracy.min = -0.1 is outside [0, 1]; accuracy limits are fractions"),
        ({"accuracy": {"max_drop": -0.01}}, "accuracy.max_drop = -0.01 is outside [0, 1]"),
        # bench limits: floors and ceilings must be positive
        ({"speedup": {"min": {"openvino-b1": -1}}}, "speedup.min[openvino-b1] = -1 must be > 0"),
        ({"speedup": {"min": {"openvino-b1": 0}}}, "speedup.min[openvino-b1] = 0 must be > 0"),
        ({"latency": {"max_p90_ms": {"openvino-int8-b1": 0}}}, "latency.max_p90_ms[openvino-int8-b1] = 0 must be > 0"),
        ({"latency": {"max_max_ms": {"openvino-int8-b1": -5}}}, "latency.max_max_ms[openvino-int8-b1] = -5 must be"),
        ({"throughput": {"min_seq_s": {"openvino-int8-b1": 0}}}, "throughput.min_seq_s[openvino-int8-b1] = 0 must"),
        # NaN never compares (always fails), inf always passes a ceiling: neither is a limit
        ({"accuracy": {"min": float("nan")}}, "accuracy.min = nan is not a finite number"),
        ({"accuracy": {"max_drop": float("inf")}}, "accuracy.max_drop = inf is not a finite number"),
        ({"latency": {"max_p99_ms": {"openvino-int8-b1": float("inf")}}}, "max_p99_ms[openvino-int8-b1] = inf is not"),
        ({"speedup": {"min": {"openvino-b1": float("-inf")}}}, "speedup.min[openvino-b1] = -inf is not a finite"),
        ({"throughput": {"min_seq_s": {"openvino-int8-b1": float("nan")}}}, "min_seq_s[openvino-int8-b1] = nan is"),
        # the options are names, not numbers
        ({"accuracy": {"metric": 1}}, "gates.toml: accuracy.metric = 1 is not a name"),
    ],
)
def test_limits_outside_their_domain_are_input_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(gates.GateInputError, match=_escaped(message)) as info:
        gates.parse_rules(table, "gates.toml")
    assert "\n" not in str(info.value)


def test_limits_on_the_domain_edges_are_accepted() -> None:
    table = {"accuracy": {"min": 0, "max_drop": 1}, "speedup": {"min": {"openvino-b1": 0.001}}}
    assert [r.limit for r in gates.parse_rules(table, "f").rules] == [0.0, 1.0, 0.001]
    assert gates.parse_rules({"accuracy": {"min": 1.0, "max_drop": 0.0}}, "f").rules[0].limit == 1.0


def test_flag_limits_outside_their_domain_name_the_flag() -> None:
    with pytest.raises(gates.GateInputError, match=_escaped("--max_accuracy_drop 3 (accuracy.max_drop) is outside")):
        gates.parse_rules({"accuracy": {"max_drop": 3.0}}, "flags")
    speedup = {"speedup": {"min": gates.flag_pairs(["openvino-b1=-1"], "--min_speedup")}}
    with pytest.raises(
        gates.GateInputError, match=_escaped("--min_speedup openvino-b1=-1 (speedup.min[openvino-b1]) must")
    ):
        gates.parse_rules(speedup, "flags")


def test_reference_of_another_task_or_dev_subset_is_an_input_error() -> None:
    rules = gates.parse_rules({"accuracy": {"max_drop": 0.02}}, "test")
    ev = eval_doc(0.85)
    cases = [
        (eval_doc(0.86, task="sst2"), "--eval is task 'rotten_tomatoes' but --reference is task 'sst2'"),
        (
            eval_doc(0.86, num_examples={"validation": 64}),
            "--eval scored validation: 200 but --reference scored validation: 64",
        ),
        (eval_doc(0.86, num_examples={"test": 200}), "--eval scored validation: 200 but --reference scored test: 200"),
        (eval_doc(0.86, num_examples={}), "--reference records no num_examples"),
        ({**eval_doc(0.86), "num_examples": 200}, "--reference records no num_examples"),
    ]
    for ref, message in cases:
        with pytest.raises(gates.GateInputError, match=_escaped(message)):
            gates.evaluate(rules, ev, ref, None)
    no_count = {k: v for k, v in ev.items() if k != "num_examples"}
    with pytest.raises(gates.GateInputError, match=_escaped("--eval records no num_examples")):
        gates.evaluate(rules, no_count, eval_doc(0.86), None)
    # the same task named in another case, and the same subset: compared
    (result,) = gates.evaluate(rules, ev, eval_doc(0.86, task="Rotten_Tomatoes"), None)
    assert result.measured == pytest.approx(0.01)


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


def test_cli_limits_outside_their_domain_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev, ref = write(tmp_path / "e.json", eval_doc(0.85)), write(tmp_path / "r.json", eval_doc(0.86))
    files = ["--eval", ev, "--reference", ref, "--bench", write(tmp_path / "b.json", bench_doc())]
    line = cli_error(capsys, "gate", *files, "--max_accuracy_drop", "3")  # passed before: 0.01 <= 3
    assert "--max_accuracy_drop 3" in line and "outside [0, 1]" in line and "0.03 = 3 points" in line
    line = cli_error(capsys, "gate", *files, "--min_accuracy", "80")  # was exit 1, a "failed" gate
    assert "--min_accuracy 80" in line and "0.8 = 80 points" in line
    line = cli_error(capsys, "gate", *files, "--min_speedup", "openvino-b1=-1")
    assert "--min_speedup openvino-b1=-1" in line and "must be > 0" in line
    line = cli_error(capsys, "gate", *files, "--max_p90_ms", "openvino-int8-b1=0")
    assert "--max_p90_ms openvino-int8-b1=0" in line and "must be > 0" in line
    line = cli_error(capsys, "gate", *files, "--max_p99_ms", "openvino-int8-b1=inf")
    assert "not a finite number" in line
    line = cli_error(capsys, "gate", *files, "--min_throughput", "openvino-int8-b1=nan")
    assert "--min_throughput openvino-int8-b1=nan" in line and "not a finite number" in line
    rules = tmp_path / "gates.toml"
    for text, where in (
        ("[accuracy]\nmax_drop = 3\n", "accuracy.max_drop = 3"),
        ("[accuracy]\nmin = nan\n", "accuracy.min = nan"),
        ('[speedup]\nmin = { "openvino-b1" = -1.5 }\n', "speedup.min[openvino-b1] = -1.5"),
    ):
        rules.write_text(text)
        line = cli_error(capsys, "gate", *files, "--rules", str(rules))
        assert f"{rules}: {where}" in line


def test_cli_reference_mismatch_names_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = write(tmp_path / "e.json", eval_doc(0.85))
    for ref_doc, wrong in (
        (eval_doc(0.86, task="sst2"), "task 'sst2'"),
        (eval_doc(0.86, num_examples={"validation": 64}), "validation: 64"),
    ):
        ref = write(tmp_path / "r.json", ref_doc)
        line = cli_error(capsys, "gate", "--eval", ev, "--reference", ref, "--max_accuracy_drop", "0.02")
        assert f"--eval {ev}" in line and f"--reference {ref}" in line and wrong in line
        assert "--task_name" in line and "--max_eval_samples" in line
