"""Classification metrics, vectorised (no per-sample Python loops).

The CLI, the RQ job and the registry manifest all report the output of `evaluate`, so a model's
numbers mean the same thing wherever they are shown. Everything returned is plain Python
(float/int/list) so it can go straight into JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.images import N_CLASSES

#: Probabilities are clipped before the log so one confident mistake cannot give an infinite loss.
_EPS = 1e-7


def _as_labels(y: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class labels, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}")
    return t, p


def accuracy(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> float:
    """Fraction of exact matches (0.0 for empty input)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def confusion_matrix(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    n_classes: int = N_CLASSES,
) -> np.ndarray:
    """int64 [n_classes, n_classes]; rows = true class, columns = predicted class."""
    t, p = _pair(y_true, y_pred)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def per_class_report(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    n_classes: int = N_CLASSES,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (0.0 where undefined, e.g. never predicted).

    With `class_names`, each entry also carries "name".
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    report = []
    for c in range(n_classes):
        entry: dict[str, Any] = {
            "class": c,
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        if class_names is not None:
            entry["name"] = str(class_names[c])
        report.append(entry)
    return report


def log_loss(y_true: np.ndarray | Sequence[int], proba: np.ndarray) -> float:
    """Mean cross-entropy of the true class's probability."""
    t = _as_labels(y_true, "y_true")
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] != t.shape[0]:
        raise ValueError(f"proba must be [{t.shape[0]}, n_classes], got {proba.shape}")
    if not t.size:
        return 0.0
    picked = proba[np.arange(t.shape[0]), t].astype(np.float64)
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def evaluate(
    proba: np.ndarray,
    y: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, loss, confusion matrix (list of lists) and per-class report of the class
    probabilities `proba` [N, classes] (one forward pass: `model.predict_proba(x)`) against the
    labels y [N], so predictions and loss come from the same numbers."""
    y = _as_labels(y, "y")
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be [{y.shape[0]}, n_classes], got {list(proba.shape)}")
    n_classes = proba.shape[1]
    pred = np.argmax(proba, axis=1).astype(np.int64)
    return {
        "accuracy": accuracy(y, pred),
        "loss": log_loss(y, proba),
        "n": int(y.shape[0]),
        "confusion_matrix": confusion_matrix(y, pred, n_classes).tolist(),
        "per_class": per_class_report(y, pred, n_classes, class_names),
    }
