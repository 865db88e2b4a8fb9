"""Classification metrics, vectorised. The CLI, the RQ job and the registry manifest all report
`evaluate`'s output (plain Python, ready for JSON), so a model's numbers mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Probabilities are clipped before the log so one confident mistake cannot give an infinite loss.
_EPS = 1e-7


def evaluate(
    proba: np.ndarray, y: np.ndarray | Sequence[int], *, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The class probabilities `proba` [N, classes] (one forward pass: `model.predict_proba(x)`)
    against the labels y [N], so predictions and loss come from the same numbers: accuracy, loss
    (mean cross-entropy of the true class; both 0.0 for no rows), the confusion matrix (rows =
    true class, columns = predicted) and per class precision, recall, F1 (0.0 where undefined,
    e.g. never predicted), support and, with `class_names`, "name"."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    if y.size and y.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class labels, got {y.dtype}")
    y = y.astype(np.int64, copy=False)
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be [{y.shape[0]}, n_classes], got {list(proba.shape)}")
    n, k = proba.shape
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1}")
    pred = np.argmax(proba, axis=1).astype(np.int64)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.int64)
    tp, predicted, support = np.diag(cm).astype(np.float64), cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    per_class: list[dict[str, Any]] = []
    for c in range(k):
        entry = {"class": c, "precision": float(precision[c]), "recall": float(recall[c])}
        entry |= {"f1": float(f1[c]), "support": int(support[c])}
        if class_names is not None:
            entry["name"] = str(class_names[c])
        per_class.append(entry)
    picked = proba[np.arange(n), y].astype(np.float64)
    return {
        "accuracy": float(np.mean(y == pred)) if n else 0.0,
        "loss": float(-np.mean(np.log(np.clip(picked, _EPS, 1.0)))) if n else 0.0,
        "n": int(n),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
    }
