"""Recipes for `pruneofa pipeline`: one TOML file describes the whole flow, validated before anything runs.

A recipe names the task and data, the teacher (fine-tuned here, or given), the sparse student (made here by
`sparsify`, or given), both training stages, export, bench and gate rules. Shipped recipes live in
`pruneofa/recipes/` and can be named without a path (`--recipe sst2`); `default` is the offline built-in one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

import tomllib

from pruneofa.core.errors import PruneofaError

DEFAULT_RECIPE = "default"


@dataclass(frozen=True)
class DataSection:
    task_name: str = "rotten_tomatoes"
    train_file: str | None = None
    validation_file: str | None = None
    max_seq_length: int = 128
    batch_size: int = 32
    seed: int = 5143
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass(frozen=True)
class TeacherSection:
    path: str | None = None  # a teacher already fine-tuned on the task: used as is
    model: str = "minilm-l6"  # otherwise this dense model is fine-tuned
    epochs: int = 2
    learning_rate: float = 5e-5


@dataclass(frozen=True)
class StudentSection:
    path: str | None = None  # a sparse pre-trained model (e.g. Intel's): used as is
    dense_model: str = "minilm-l6"  # otherwise this one is pruned by `sparsify` (not read by method "task")
    sparsity: float = 0.9
    method: str = "gradual"  # magnitude, obs, gradual, or task: the teacher step's output pruned on [data]
    text_file: str = "rotten_tomatoes"  # unlabeled text of obs / gradual (magnitude: drift measure only)
    steps: int = 600
    prune_every: int = 20
    learning_rate: float = 5e-5
    batch_size: int = 32
    # method "task" only (`sparsify --method task`): what picks the weights, the transfer set, the loss
    pruner: str = "magnitude"
    transfer_set: bool = True
    temperature: float = 2.0
    hidden_weight: float = 1.0
    block: int = 1  # `sparsify --block`: 1 = unstructured; 4 = groups of 4 input features (not with obs)
    block_rows: int = 1  # `sparsify --block_rows`: 16 with block 4 = the AMX kernel's blocks
    allocation: str = "layer"  # method "task", pruner "taylor": "global" = per-layer shares from one ranking

    TASK_ONLY: ClassVar[tuple[str, ...]] = ("pruner", "transfer_set", "temperature", "hidden_weight", "allocation")

    def fingerprint_json(self) -> dict[str, Any]:
        """The keys its step depends on: the task-only keys only for method "task" (so adding them did not
        change the fingerprint, and re-make the students, of other recipes)."""
        values = dataclasses.asdict(self)
        for key in ("block", "block_rows"):  # the defaults: left out, so adding the key re-made no earlier student
            if values[key] == 1:
                values.pop(key)
        if self.allocation == "layer":  # the same for the allocation key
            values.pop("allocation")
        return values if self.method == "task" else {k: v for k, v in values.items() if k not in self.TASK_ONLY}


@dataclass(frozen=True)
class StageSection:
    epochs: int = 3
    learning_rate: float = 1e-4
    temperature: float = 2.0
    loss_weights: tuple[float, float] = (0.0, 1.0)
    pad_to_max_length: bool = False
    hidden_distill_weight: float = 0.0  # `pruneofa train --hidden_distill_weight`: 0 = logits only
    attention_distill_weight: float = 0.0  # `pruneofa train --attention_distill_weight`


@dataclass(frozen=True)
class ExportSection:
    formats: tuple[str, ...] = ("onnx", "openvino")


@dataclass(frozen=True)
class BenchSection:
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_len: int = 128
    duration: float = 5.0
    iterations: int = 200
    threads: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    data: DataSection = field(default_factory=DataSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: StudentSection = field(default_factory=StudentSection)
    stage1: StageSection = field(default_factory=StageSection)
    stage2: StageSection = field(
        default_factory=lambda: StageSection(epochs=1, learning_rate=1e-5, pad_to_max_length=True)
    )
    export: ExportSection = field(default_factory=ExportSection)
    bench: BenchSection = field(default_factory=BenchSection)
    gate: dict[str, Any] = field(default_factory=dict)  # the `pruneofa gate` rules, as in a gates.toml

    def section_json(self, name: str) -> dict[str, Any]:
        value = getattr(self, name)
        return dict(value) if isinstance(value, dict) else dataclasses.asdict(value)


Section = TypeVar("Section")


def _section(default: Section, raw: Any, where: str, name: str) -> Section:
    """The default section with the recipe's keys applied. An unknown key, or a value that is not of its field's
    type, is an error naming `name.key`, the value and what is expected."""
    if not isinstance(raw, dict):
        raise PruneofaError(f"{where}: [{name}] must be a table of keys; write it as a [{name}] section")
    fields = [f.name for f in dataclasses.fields(default)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PruneofaError(f"{where} [{name}]: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(type(default))
    values = {k: _typed(v, hints[k], f"{name}.{k}", getattr(default, k), where) for k, v in raw.items()}
    return dataclasses.replace(default, **values)  # type: ignore[type-var]


# ---------------------------------------------------------------- value types

_TOML_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: bool is an int subclass
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "a list"),
    (tuple, "a list"),
    (dict, "a table"),
    (datetime.datetime, "a date-time"),
    (datetime.date, "a date"),
    (datetime.time, "a time"),
)


def _kind(value: Any) -> str:
    return next((name for kind, name in _TOML_KINDS if isinstance(value, kind)), type(value).__name__)


def _toml(value: Any) -> str:
    """`value` as it would be written in TOML (the user's spelling, not Python's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return repr(value)


def _expected(hint: Any) -> str:
    """What a type hint asks for, in the recipe's words."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        kinds = [_expected(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" (or leave the key out)" if type(None) in args else "")
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return "a list of " + ", ".join(_expected(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, _expected(hint))


class _Mismatch(Exception):
    """A value (or one item of a list) is not of the expected type; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _coerce(value: Any, hint: Any) -> Any:
    """`value` as `hint` asks (an int is a fine float and becomes one; a TOML list becomes a tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch(_kind(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(_kind(value))
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise _Mismatch(f"a list of {len(value)} value{'' if len(value) == 1 else 's'}")
        try:
            return tuple(_coerce(v, a) for v, a in zip(value, items, strict=True))
        except _Mismatch as exc:
            raise _Mismatch(f"a list holding {exc.reason}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch(_kind(value))
        if not math.isfinite(value):
            raise _Mismatch("not finite")
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _Mismatch(_kind(value))
    if hint in (bool, str) and not isinstance(value, hint):
        raise _Mismatch(_kind(value))
    return value


def _typed(value: Any, hint: Any, key: str, default: Any, where: str) -> Any:
    """`value` checked against (and coerced to) its field's type; else an error naming key, value and type."""
    try:
        return _coerce(value, hint)
    except _Mismatch as exc:
        name = key.split(".", 1)[1]
        example = f", e.g. {name} = {_toml(default)}" if default is not None else ""
        raise PruneofaError(
            f"{where}: {key} = {_toml(value)} is {exc.reason}; expected {_expected(hint)}{example}"
        ) from None


def _validate(recipe: Recipe, where: str) -> None:
    from pruneofa.data.tasks import get_task

    get_task(recipe.data.task_name)
    if recipe.student.method not in ("magnitude", "gradual", "obs", "task"):
        raise PruneofaError(f"{where} [student] method {recipe.student.method!r}: use magnitude, gradual, obs or task")
    if not 0.0 <= recipe.student.sparsity < 1.0:
        raise PruneofaError(f"{where} [student] sparsity {recipe.student.sparsity}: must be in [0, 1)")
    for name in ("stage1", "stage2"):
        stage: StageSection = getattr(recipe, name)
        if stage.epochs < 1 or stage.learning_rate <= 0 or len(stage.loss_weights) != 2:
            raise PruneofaError(f"{where} [{name}]: epochs >= 1, learning_rate > 0 and two loss_weights are needed")
    if not recipe.bench.batch_sizes or min(recipe.bench.batch_sizes) < 1:
        raise PruneofaError(f"{where} [bench] batch_sizes: give positive batch sizes, e.g. [1, 8]")
    from pruneofa.gates import parse_rules

    parse_rules(recipe.gate, f"{where} [gate]")
    bad = [f for f in recipe.export.formats if f not in ("onnx", "openvino")]
    if bad:
        raise PruneofaError(f"{where} [export] formats: unknown {bad[0]!r}; use onnx and/or openvino")
    _check_files(recipe, where)


def _check_files(recipe: Recipe, where: str) -> None:
    """The local files a run reads must be there now, not hours later when their step starts."""
    for key in ("train_file", "validation_file"):
        value = getattr(recipe.data, key)
        if value is None:
            continue
        from pruneofa.data.loading import SUFFIXES

        named = f"{where} [data] {key} {value!r}"
        if Path(value).suffix.lower() not in SUFFIXES:
            raise PruneofaError(f"{named}: unknown file type {Path(value).suffix!r}; use one of {', '.join(SUFFIXES)}")
        if not Path(value).is_file():
            raise PruneofaError(f"{named}: no such file (a relative path is read from the current folder); fix it")
    text = recipe.student.text_file
    reads_text = recipe.student.path is None and recipe.student.method != "task"
    if reads_text and text != "rotten_tomatoes" and not Path(text).is_file():
        raise PruneofaError(
            f"{where} [student] text_file {text!r}: no such file; give a text file (one text per line) or "
            "'rotten_tomatoes' for the built-in unlabeled text"
        )


_SECTIONS = ("data", "teacher", "student", "stage1", "stage2", "export", "bench")


def parse_recipe(text: str, where: str) -> Recipe:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PruneofaError(f"{where}: not valid TOML ({exc}); fix the file") from None
    unknown = sorted(set(raw) - set(_SECTIONS) - {"gate", "name"})
    if unknown:
        raise PruneofaError(f"{where}: unknown section [{unknown[0]}]; valid: {', '.join([*_SECTIONS, 'gate'])}")
    name = raw.get("name", Path(where).stem)
    if not isinstance(name, str):
        raise PruneofaError(f'{where}: name = {_toml(name)} is {_kind(name)}; expected a string, e.g. name = "mine"')
    gate = raw.get("gate", {})
    if not isinstance(gate, dict):
        raise PruneofaError(
            f"{where}: gate = {_toml(gate)} is {_kind(gate)}; expected a table: [gate.accuracy], [gate.speedup], ..."
        )
    base = Recipe(name=name)
    sections = {k: _section(getattr(base, k), raw[k], where, k) for k in _SECTIONS if k in raw}
    recipe = dataclasses.replace(base, **sections, gate=dict(gate))
    _validate(recipe, where)
    return recipe


def shipped_recipes() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files("pruneofa.pipeline.recipes").iterdir()
        if p.name.endswith(".toml")
    )


def load_recipe(ref: str | None) -> Recipe:
    """A recipe file, a shipped recipe's name, or (None) the built-in offline default."""
    name = ref or DEFAULT_RECIPE
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PruneofaError(
                f"--recipe {ref}: no such file; pass a recipe .toml or one of {', '.join(shipped_recipes())}"
            )
        return parse_recipe(_read_text(path), str(path))
    if name not in shipped_recipes():
        raise PruneofaError(
            f"--recipe {ref}: not a file or a shipped recipe; use one of {', '.join(shipped_recipes())}"
        )
    text = resources.files("pruneofa.pipeline.recipes").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_recipe(text, f"recipe {name}")


def _read_text(path: Path) -> str:
    """A recipe file's text; not UTF-8 is an error naming the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PruneofaError(
            f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            "TOML files are UTF-8: save it as UTF-8"
        ) from None


T = TypeVar("T")


def build(recipe: Recipe, step: str, sections: str, make: Callable[[], T]) -> T:
    """`make()`: a step's config object, built when the pipeline is planned (so `--dry_run` runs its checks too).
    Its errors, worded with the CLI's flag names, also name the recipe, the step and the sections it reads."""
    try:
        return make()
    except PruneofaError as exc:
        raise type(exc)(f"recipe {recipe.name!r}, step {step} ({sections}): {exc}") from None
