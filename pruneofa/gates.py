"""`gate`: thresholds vs results -> a pass/fail report. Never runs a model: it reads `pruneofa eval` and
`pruneofa bench` JSON, so a CI job can gate on files an earlier step produced.

Rules (a TOML file and/or CLI flags, same keys):

    [accuracy]
    min = 0.80                       # floor on the eval's main metric (0..1 scale)
    max_drop = 0.01                  # ... and on its drop below --reference (teacher / dense eval JSON)
    metric = "accuracy"              # optional: default is the task's main metric
    split = "validation"             # optional: default is the task's first dev split
    [latency]
    max_p90_ms = { "openvino-int8-b1" = 50 }   # also max_min_ms, max_p50_ms, max_p99_ms, max_max_ms
    [throughput]
    min_seq_s = { "openvino-int8-b8" = 100 }
    [speedup]
    min = { "openvino-b1" = 1.5, "openvino-vs-torch-b1" = 3 }  # keys as in bench.json "speedups", also
                                     # "openvino-vs-best-dense-b1": over the fastest dense variant of that batch

A rule that names something the inputs do not have (an unknown key, a variant that was not measured) is an input
error, not a failure: the message names the key and the valid choices. So is a limit outside its domain, checked in
`parse_rules` for every source of rules (file, flags, a recipe's [gate]): accuracy limits are fractions in [0, 1]
(0.03 = 3 points), bench limits are finite and > 0. And so is an --eval and a --reference that did not score the same
task on the same dev examples (their `task_name` and `num_examples` differ): a drop between them would mean nothing.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruneofa.core.errors import PruneofaError

LATENCY_STATS = ("min", "p50", "p90", "p99", "max")
SECTIONS: dict[str, tuple[str, ...]] = {
    "accuracy": ("min", "max_drop", "metric", "split"),
    "latency": tuple(f"max_{s}_ms" for s in LATENCY_STATS),
    "throughput": ("min_seq_s",),
    "speedup": ("min",),
}


class GateInputError(PruneofaError):
    """A rule file, flag or input JSON that cannot be used (exit 2, not a gate failure)."""


@dataclass(frozen=True)
class Rule:
    section: str  # accuracy, latency, throughput, speedup
    key: str  # min, max_drop, max_p90_ms, min_seq_s
    target: str | None  # the variant / speedup name for bench rules
    limit: float

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" + (f"[{self.target}]" if self.target else "")

    @property
    def is_ceiling(self) -> bool:
        return self.key.startswith("max_")


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    measured: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    metric: str | None = None
    split: str | None = None


# ---------------------------------------------------------------- rules from TOML / flags


# The CLI flags that fill each key (`gate` passes them in as the "flags" table), to name them in errors.
FLAGS: dict[tuple[str, str], str] = {
    ("accuracy", "min"): "--min_accuracy",
    ("accuracy", "max_drop"): "--max_accuracy_drop",
    ("latency", "max_p90_ms"): "--max_p90_ms",
    ("latency", "max_p99_ms"): "--max_p99_ms",
    ("throughput", "min_seq_s"): "--min_throughput",
    ("speedup", "min"): "--min_speedup",
}
# What a positive bench limit means, and one that makes sense: for `must be > 0 (...)` errors.
_POSITIVE = {
    "latency": ("milliseconds", "50"),
    "throughput": ("sequences/s", "100"),
    "speedup": ("a throughput ratio, sparse-int8 over baseline", "1.5"),
}


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateInputError(f"{where}: {value!r} is not a number; write e.g. {where.split('[')[0]} = 1.5")
    return float(value)


def _label(where: str, section: str, key: str, target: str | None, value: float) -> str:
    """How the user wrote this limit: `--min_speedup openvino-b1=-1 (speedup.min[openvino-b1])` for a flag,
    `gates.toml: speedup.min[openvino-b1] = -1` for a file."""
    name = f"{section}.{key}" + (f"[{target}]" if target is not None else "")
    flag = FLAGS.get((section, key))
    if where == "flags" and flag:
        return f"{flag} {f'{target}=' if target is not None else ''}{value:g} ({name})"
    return f"{where}: {name} = {value:g}"


def _limit(value: object, where: str, section: str, key: str, target: str | None = None) -> float:
    """A limit of its section's domain: accuracy a fraction in [0, 1], bench limits finite and > 0."""
    name = f"{section}.{key}" + (f"[{target}]" if target is not None else "")
    limit = _number(value, f"{where}: {name}")
    label = _label(where, section, key, target, limit)
    if not math.isfinite(limit):
        example = "0.03" if section == "accuracy" else _POSITIVE[section][1]
        raise GateInputError(f"{label} is not a finite number; give a limit such as {example}")
    if section == "accuracy" and not 0.0 <= limit <= 1.0:
        hint = f"{limit / 100:g} = {limit:g} points" if 1.0 < limit <= 100.0 else "0.03 = 3 points"
        raise GateInputError(
            f"{label} is outside [0, 1]; accuracy limits are fractions, not points: use a fraction: {hint}"
        )
    if section != "accuracy" and limit <= 0.0:
        unit, example = _POSITIVE[section]
        raise GateInputError(f"{label} must be > 0 ({unit}); use e.g. {example}")
    return limit


def parse_rules(data: dict[str, Any], where: str) -> Rules:
    """Rules from a TOML-shaped dict (a rules file, the CLI flags, a recipe's [gate]): unknown sections/keys name
    the valid ones, and every limit must lie in its domain (`_limit`), whichever source it came from."""
    rules: list[Rule] = []
    options: dict[str, str] = {}
    for section, body in data.items():
        if section not in SECTIONS:
            raise GateInputError(f"{where}: unknown section [{section}]; use {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise GateInputError(f"{where}: [{section}] must be a table of keys ({', '.join(SECTIONS[section])})")
        for key, value in body.items():
            if key not in SECTIONS[section]:
                raise GateInputError(
                    f"{where}: unknown key {section}.{key}; valid keys: {', '.join(SECTIONS[section])}"
                )
            if key in ("metric", "split"):
                if not isinstance(value, str) or not value.strip():
                    example = "accuracy" if key == "metric" else "validation"
                    raise GateInputError(
                        f'{where}: {section}.{key} = {value!r} is not a name; write e.g. {key} = "{example}"'
                    )
                options[key] = value
            elif section == "accuracy":
                rules.append(Rule(section, key, None, _limit(value, where, section, key)))
            elif not isinstance(value, dict) or not value:
                raise GateInputError(
                    f'{where}: {section}.{key} must map names to limits, e.g. {{ "openvino-b1" = 1.5 }}'
                )
            else:
                rules += [Rule(section, key, t, _limit(v, where, section, key, t)) for t, v in value.items()]
    return Rules(tuple(rules), options.get("metric"), options.get("split"))


def load_rules_file(path: Path) -> Rules:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, from PyPI
        try:
            import tomli as tomllib
        except ImportError:
            raise GateInputError(
                "--rules needs Python 3.11+ or `pip install tomli`; or pass the rules as flags"
            ) from None
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GateInputError(f"--rules {path}: no such file; pass a gates.toml (see README, 'CI gates')") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GateInputError(f"--rules {path}: not valid TOML ({exc})") from None
    return parse_rules(data, str(path))


def flag_pairs(values: list[str], flag: str) -> dict[str, float]:
    """`NAME=LIMIT` flag values (repeatable) -> {NAME: LIMIT}."""
    out: dict[str, float] = {}
    for text in values:
        name, sep, limit = text.partition("=")
        try:
            out[name.strip()] = float(limit)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise GateInputError(f"{flag} {text!r}: write NAME=LIMIT, e.g. {flag} openvino-int8-b1=50")
    return out


def merge(base: Rules, extra: Rules) -> Rules:
    """Flags override file rules with the same name and add the rest."""
    names = {r.name for r in extra.rules}
    kept = tuple(r for r in base.rules if r.name not in names)
    return Rules(kept + extra.rules, extra.metric or base.metric, extra.split or base.split)


# ---------------------------------------------------------------- inputs


def read_result(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GateInputError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GateInputError(f"{flag} {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GateInputError(f"{flag} {path}: expected a JSON object")
    if flag == "--bench" and not str(data.get("format", "")).startswith("pruneofa-bench/"):
        raise GateInputError(f"--bench {path}: not a bench.json written by `pruneofa bench`")
    if flag != "--bench" and "task_name" not in data:
        raise GateInputError(f"{flag} {path}: not an eval JSON (no task_name); write one with `pruneofa eval --output`")
    return data


# ---------------------------------------------------------------- evaluation


def metric_value(doc: dict[str, Any], rules: Rules, flag: str) -> tuple[float, str]:
    """The gated metric of an eval JSON and where it was read (e.g. `validation.accuracy`)."""
    from pruneofa.data.tasks import get_task

    task = get_task(str(doc["task_name"]))
    split = rules.split or next((s for s in task.eval_splits if s in doc), task.eval_splits[0])
    metric = rules.metric or task.main_metric
    metrics = doc.get(split)
    if not isinstance(metrics, dict):
        found = ", ".join(k for k, v in doc.items() if isinstance(v, dict) and k not in ("engine",)) or "none"
        raise GateInputError(f"{flag}: no split {split!r} (found {found}); set accuracy.split")
    if metric not in metrics:
        raise GateInputError(f"{flag}: split {split!r} has no {metric!r}; valid metrics: {', '.join(metrics)}")
    return float(metrics[metric]), f"{split}.{metric}"


def _dev_counts(doc: dict[str, Any], name: str) -> dict[str, int]:
    counts = doc.get("num_examples")
    if not isinstance(counts, dict) or not counts:
        raise GateInputError(
            f"{name} records no num_examples, so which dev examples it scored is unknown; "
            "write it with `pruneofa eval --output`"
        )
    return counts


def check_comparable(ev: dict[str, Any], ref: dict[str, Any], names: tuple[str, str]) -> None:
    """An eval and its --reference scored the same task on the same dev examples, or a drop between them means
    nothing: both record `task_name` and `num_examples` ({split: rows}, which --max_eval_samples cuts)."""
    ev_name, ref_name = names
    fix = "re-run `pruneofa eval` on both with the same --task_name and --max_eval_samples"
    tasks = [str(d.get("task_name")) for d in (ev, ref)]
    if tasks[0].strip().lower() != tasks[1].strip().lower():
        raise GateInputError(
            f"{ev_name} is task {tasks[0]!r} but {ref_name} is task {tasks[1]!r}; "
            f"a drop compares two models on one task's dev set: {fix}"
        )
    counts = [_dev_counts(d, n) for d, n in ((ev, ev_name), (ref, ref_name))]
    if counts[0] != counts[1]:
        shown = [", ".join(f"{split}: {n}" for split, n in c.items()) for c in counts]
        raise GateInputError(
            f"{ev_name} scored {shown[0]} but {ref_name} scored {shown[1]} dev examples; "
            f"a drop needs the same dev examples on both sides: {fix}"
        )


def _bench_value(rule: Rule, bench: dict[str, Any]) -> tuple[float, str]:
    target = str(rule.target)
    if rule.section == "speedup":
        table = bench.get("speedups") or {}
        if target not in table:
            raise GateInputError(
                f"rule {rule.name}: bench.json has no speedup {target!r}; measured: {', '.join(table) or 'none'}"
            )
        s = table[target]
        return float(s["speedup"]), f"{s['sparse_int8']} / {s['baseline']}"
    results = bench.get("results") or {}
    if target not in results:
        skipped = bench.get("not_measured") or {}
        why = next((f" ({v})" for k, v in skipped.items() if target.startswith(k + "-")), "")
        raise GateInputError(
            f"rule {rule.name}: variant {target!r} is not in bench.json{why}; measured: {', '.join(results) or 'none'}"
        )
    row = results[target]
    if rule.section == "throughput":
        return float(row["throughput_seq_s"]), "seq/s (median)"
    stat = rule.key.removeprefix("max_").removesuffix("_ms")
    return float(row["latency_ms"][stat]), f"{stat} ms"


def _accuracy_value(
    rule: Rule, rules: Rules, ev: dict[str, Any] | None, ref: dict[str, Any] | None
) -> tuple[float, str]:
    if ev is None:
        raise GateInputError(f"rule {rule.name} needs --eval EVAL.json (from `pruneofa eval --output`)")
    value, where = metric_value(ev, rules, "--eval")
    if rule.key == "min":
        return value, where
    if ref is None:
        raise GateInputError(f"rule {rule.name} needs --reference EVAL.json (the teacher's or dense model's eval)")
    reference, _ = metric_value(ref, rules, "--reference")
    return reference - value, f"{where} {value:.4f} vs reference {reference:.4f}"


def evaluate(
    rules: Rules,
    ev: dict[str, Any] | None,
    ref: dict[str, Any] | None,
    bench: dict[str, Any] | None,
    names: tuple[str, str] = ("--eval", "--reference"),
) -> list[Outcome]:
    """One outcome per rule; ceilings (max_*) pass when measured <= limit, floors when measured >= limit.

    An eval and a reference that did not score the same task and dev examples are refused (`check_comparable`);
    `names` say which inputs they were, for that message.
    """
    if not rules.rules:
        raise GateInputError("no rules: pass --rules gates.toml or flags such as --min_accuracy / --min_speedup")
    if ev is not None and ref is not None:
        check_comparable(ev, ref, names)
    outcomes = []
    for rule in rules.rules:
        if rule.section == "accuracy":
            measured, detail = _accuracy_value(rule, rules, ev, ref)
        elif bench is None:
            raise GateInputError(f"rule {rule.name} needs --bench BENCH.json (from `pruneofa bench`)")
        else:
            measured, detail = _bench_value(rule, bench)
        passed = measured <= rule.limit if rule.is_ceiling else measured >= rule.limit
        outcomes.append(Outcome(rule, measured, passed, detail))
    return outcomes


def failures(outcomes: list[Outcome]) -> list[str]:
    """One line per failed rule: its name, the measured value and the limit it missed."""
    return [
        f"{o.rule.name}: {o.measured:.4g} {'>' if o.rule.is_ceiling else '<'} limit {o.rule.limit:g} ({o.detail})"
        for o in outcomes
        if not o.passed
    ]


# ---------------------------------------------------------------- the verb


@dataclass(frozen=True)
class GateConfig:
    """What `gate` checks: rules as a TOML-shaped table (`rules`) and/or a rules file, against result files.

    `rules` has the sections of this module's docstring, e.g. {"accuracy": {"max_drop": 0.01}}; where both are
    given, `rules` adds to (and overrides) `rules_file`.
    """

    rules: dict[str, Any] = field(default_factory=dict)
    rules_file: Path | None = None
    eval_json: Path | None = None
    reference_json: Path | None = None
    bench_json: Path | None = None


def check(cfg: GateConfig) -> list[Outcome]:
    """Read the result files, apply every rule, return one outcome per rule (see `failures` for the failed)."""
    given = parse_rules(cfg.rules, "flags")
    rules = merge(load_rules_file(cfg.rules_file), given) if cfg.rules_file else given
    ev, ref, bench = (
        read_result(path, flag) if path is not None else None
        for path, flag in ((cfg.eval_json, "--eval"), (cfg.reference_json, "--reference"), (cfg.bench_json, "--bench"))
    )
    return evaluate(rules, ev, ref, bench, (f"--eval {cfg.eval_json}", f"--reference {cfg.reference_json}"))
