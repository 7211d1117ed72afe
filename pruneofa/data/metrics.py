"""GLUE metrics from model outputs, on the 0..1 scale of HF `evaluate` (published numbers / 100)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pruneofa.core.errors import PruneofaError
from pruneofa.data.tasks import TaskSpec

# Tasks whose published numbers include F1 of the positive class (label 1) next to accuracy.
_F1_TASKS = frozenset({"mrpc", "qqp"})


def compute_metrics(task: TaskSpec, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Metrics of `task` from logits (N, C) for classification, scores (N,) or (N, 1) for regression."""
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if task.is_regression:
        return _regression_metrics(preds.reshape(len(preds), -1)[:, 0], refs.astype(np.float64))
    return _classification_metrics(task, preds, refs.astype(np.int64))


def _classification_metrics(task: TaskSpec, logits: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    if logits.ndim != 2:
        raise ValueError(f"task '{task.name}': expected logits of shape (N, C), got {logits.shape}")
    labels = logits.argmax(axis=-1)
    metrics = {"accuracy": float(accuracy_score(refs, labels))}
    if task.name in _F1_TASKS:
        metrics["f1"] = float(f1_score(refs, labels, pos_label=1, average="binary", zero_division=0.0))
    if task.name == "cola":
        metrics["matthews_correlation"] = float(matthews_corrcoef(refs, labels))
    return metrics


def _regression_metrics(scores: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    # Correlation is undefined for a constant vector (an untrained head can output one): report 0, not NaN,
    # so "best epoch" comparisons stay well-defined.
    if len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(refs) == 0:
        return {"pearson": 0.0, "spearmanr": 0.0}
    return {
        "pearson": float(pearsonr(scores, refs)[0]),
        "spearmanr": float(spearmanr(scores, refs)[0]),
    }


def main_metric_value(task: TaskSpec, metrics: dict[str, float]) -> float:
    """The number that decides the best epoch for `task`."""
    if task.main_metric not in metrics:
        found = ", ".join(sorted(metrics)) or "none"
        raise PruneofaError(
            f"task '{task.name}': metrics lack '{task.main_metric}' (found {found}); compute them with "
            "pruneofa.data.metrics.compute_metrics"
        )
    return metrics[task.main_metric]
