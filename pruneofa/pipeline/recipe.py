"""Recipes for `pruneofa pipeline`: one TOML file describes the whole flow, validated before anything runs.

A recipe names the task and data, the teacher (fine-tuned here, or given), the sparse student (made here by
`sparsify`, or given), both training stages, export, bench and gate rules. Shipped recipes live in
`pruneofa/recipes/` and can be named without a path (`--recipe sst2`); `default` is the offline built-in one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

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
    dense_model: str = "minilm-l6"  # otherwise this one is pruned by `sparsify`
    sparsity: float = 0.9
    method: str = "gradual"
    text_file: str = "rotten_tomatoes"
    steps: int = 600
    prune_every: int = 20
    learning_rate: float = 5e-5
    batch_size: int = 32


@dataclass(frozen=True)
class StageSection:
    epochs: int = 3
    learning_rate: float = 1e-4
    temperature: float = 2.0
    loss_weights: tuple[float, float] = (0.0, 1.0)
    pad_to_max_length: bool = False


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


def _section(default: Section, raw: Any, where: str) -> Section:
    """The default section with the recipe's keys applied; an unknown key is an error naming the valid ones."""
    if not isinstance(raw, dict):
        raise PruneofaError(f"{where}: must be a table")
    fields = [f.name for f in dataclasses.fields(default)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PruneofaError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return dataclasses.replace(default, **values)  # type: ignore[type-var]
    except TypeError as exc:
        raise PruneofaError(f"{where}: {exc}") from None


def _validate(recipe: Recipe, where: str) -> None:
    from pruneofa.data.tasks import get_task

    get_task(recipe.data.task_name)
    if recipe.student.method not in ("magnitude", "gradual"):
        raise PruneofaError(f"{where} [student] method {recipe.student.method!r}: use magnitude or gradual")
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


_SECTIONS = ("data", "teacher", "student", "stage1", "stage2", "export", "bench")


def parse_recipe(text: str, where: str) -> Recipe:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PruneofaError(f"{where}: not valid TOML ({exc}); fix the file") from None
    unknown = sorted(set(raw) - set(_SECTIONS) - {"gate", "name"})
    if unknown:
        raise PruneofaError(f"{where}: unknown section [{unknown[0]}]; valid: {', '.join([*_SECTIONS, 'gate'])}")
    base = Recipe(name=str(raw.get("name", Path(where).stem)))
    sections = {k: _section(getattr(base, k), raw[k], f"{where} [{k}]") for k in _SECTIONS if k in raw}
    recipe = dataclasses.replace(base, **sections, gate=dict(raw.get("gate", {})))
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
        return parse_recipe(path.read_text(encoding="utf-8"), str(path))
    if name not in shipped_recipes():
        raise PruneofaError(
            f"--recipe {ref}: not a file or a shipped recipe; use one of {', '.join(shipped_recipes())}"
        )
    text = resources.files("pruneofa.pipeline.recipes").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_recipe(text, f"recipe {name}")
