"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pruneofa.core.errors import PruneofaError
from pruneofa.data.metrics import compute_metrics, main_metric_value
from pruneofa.data.tasks import get_task


def _logits(labels: list[int], num_labels: int = 2) -> np.ndarray:
    return np.eye(num_labels, dtype=np.float32)[labels] * 3.0 - 1.0


def test_perfect_predictions_score_one() -> None:
    refs = np.array([0, 1, 1, 0])
    assert compute_metrics(get_task("cola"), _logits([0, 1, 1, 0]), refs) == {
        "accuracy": 1.0,
        "matthews_correlation": 1.0,
    }
    assert compute_metrics(get_task("mrpc"), _logits([0, 1, 1, 0]), refs) == {"accuracy": 1.0, "f1": 1.0}


def test_imperfect_binary_matches_hand_computation() -> None:
    refs = np.array([1, 1, 1, 0, 0, 0])
    preds = [1, 1, 0, 1, 0, 0]  # tp=2 fn=1 fp=1 tn=2
    qqp = compute_metrics(get_task("qqp"), _logits(preds), refs)
    assert qqp["accuracy"] == pytest.approx(4 / 6)
    assert qqp["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    cola = compute_metrics(get_task("cola"), _logits(preds), refs)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4 - 1) / 9
    assert cola["matthews_correlation"] == pytest.approx(3 / 9)
    assert set(compute_metrics(get_task("sst2"), _logits(preds), refs)) == {"accuracy"}


def test_three_class_argmax() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    metrics = compute_metrics(get_task("mnli"), logits, np.array([1, 0, 1]))
    assert metrics == {"accuracy": pytest.approx(2 / 3)}
    assert all(type(v) is float for v in metrics.values())


def test_regression_correlations() -> None:
    refs = np.array([0.0, 1.0, 2.0, 3.0])
    scores = np.array([[0.0], [1.0], [2.0], [30.0]])  # (N, 1) like a regression head's logits
    metrics = compute_metrics(get_task("stsb"), scores, refs)
    assert metrics["spearmanr"] == pytest.approx(1.0)
    x, y = scores[:, 0], refs
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert metrics["pearson"] == pytest.approx(pearson)
    assert compute_metrics(get_task("stsb"), -refs, refs)["pearson"] == pytest.approx(-1.0)


def test_constant_regression_output_scores_zero_not_nan() -> None:
    metrics = compute_metrics(get_task("stsb"), np.ones(5), np.arange(5.0))
    assert metrics == {"pearson": 0.0, "spearmanr": 0.0}


def test_main_metric_value() -> None:
    assert main_metric_value(get_task("mrpc"), {"accuracy": 0.8, "f1": 0.9}) == 0.9
    with pytest.raises(PruneofaError, match="metrics lack 'matthews_correlation'"):
        main_metric_value(get_task("cola"), {"accuracy": 0.5})


def test_length_mismatch_is_a_bug_not_a_silent_score() -> None:
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(get_task("sst2"), _logits([0, 1, 1]), np.array([0, 1]))
