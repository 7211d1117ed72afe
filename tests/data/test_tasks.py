"""The task table: entries well-formed, labels in the Hub's order, unknown names answered with the list."""

from __future__ import annotations

import pytest

from pruneofa.core.errors import PruneofaError
from pruneofa.data.tasks import TASKS, TaskSpec, get_task

GLUE_NAMES = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def test_table_holds_glue_and_the_builtin_task() -> None:
    assert set(TASKS) == GLUE_NAMES | {"rotten_tomatoes"}


@pytest.mark.parametrize("spec", TASKS.values(), ids=list(TASKS))
def test_every_task_is_well_formed(spec: TaskSpec) -> None:
    assert TASKS[spec.name] is spec
    assert 1 <= len(spec.text_keys) <= 2
    assert len(set(spec.text_keys)) == len(spec.text_keys)
    assert len(set(spec.label_names)) == len(spec.label_names)
    assert spec.eval_splits
    assert spec.num_labels == (1 if spec.is_regression else len(spec.label_names))
    assert spec.is_regression == (spec.main_metric == "pearson")
    if spec.name in GLUE_NAMES:
        assert spec.hub_dataset == ("nyu-mll/glue", spec.name)
    else:
        assert spec.hub_dataset is None


def test_label_orders_match_the_hub() -> None:
    # ClassLabel names of nyu-mll/glue: a file with integer labels means the same as the Hub data.
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("cola").label_names == ("unacceptable", "acceptable")
    assert get_task("qqp").label_names[1] == "duplicate"


def test_main_metrics_follow_the_paper() -> None:
    assert {n: t.main_metric for n, t in TASKS.items()} == {
        "cola": "matthews_correlation",
        "sst2": "accuracy",
        "mrpc": "f1",
        "qqp": "accuracy",
        "stsb": "pearson",
        "mnli": "accuracy",
        "qnli": "accuracy",
        "rte": "accuracy",
        "wnli": "accuracy",
        "rotten_tomatoes": "accuracy",
    }


def test_mnli_selects_on_matched_and_reports_mismatched() -> None:
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1


def test_get_task_ignores_case() -> None:
    assert get_task(" SST2 ") is TASKS["sst2"]


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(PruneofaError, match="task 'sst-2': unknown task; use one of cola, sst2") as info:
        get_task("sst-2")
    assert "rotten_tomatoes" in str(info.value)
    assert "\n" not in str(info.value)
