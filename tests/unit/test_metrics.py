"""Metrics against straightforward loop-based references."""

from __future__ import annotations

import numpy as np
import pytest

from shared.metrics import evaluate

RNG = np.random.default_rng(42)


def reference_confusion(t, p, n=10):
    cm = np.zeros((n, n), dtype=np.int64)
    for a, b in zip(t, p, strict=True):
        cm[a, b] += 1
    return cm


def predicting(pred, n_classes=10) -> np.ndarray:
    """Probabilities whose argmax is `pred`."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(pred, dtype=np.int64)]


def test_accuracy():
    assert evaluate(predicting([1, 2, 0, 4]), [1, 2, 3, 4])["accuracy"] == 0.75
    empty = evaluate(np.zeros((0, 10), np.float32), np.array([], dtype=np.int64))
    assert empty["accuracy"] == 0.0 and empty["loss"] == 0.0 and empty["n"] == 0
    assert isinstance(evaluate(predicting([1]), [1])["accuracy"], float)


def test_confusion_matrix_matches_loop_and_orientation():
    t = RNG.integers(0, 10, 500)
    p = np.where(RNG.random(500) < 0.7, t, RNG.integers(0, 10, 500))
    cm = np.array(evaluate(predicting(p), t)["confusion_matrix"])
    assert cm.shape == (10, 10)
    np.testing.assert_array_equal(cm, reference_confusion(t, p))
    # rows = true, columns = predicted
    assert evaluate(predicting([5]), [3])["confusion_matrix"][3][5] == 1
    assert cm.sum() == 500 and np.trace(cm) == (t == p).sum()


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError, match="0..9"):
        evaluate(predicting([1]), [10])
    with pytest.raises(ValueError, match="0..9"):
        evaluate(predicting([1]), [-1])
    with pytest.raises(ValueError, match="proba must be"):
        evaluate(predicting([1]), [1, 2])
    with pytest.raises(ValueError, match="integer"):
        evaluate(predicting([1]), [1.5])
    with pytest.raises(ValueError, match="1-D"):
        evaluate(predicting([1]), [[1]])


def test_per_class_report():
    t = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1])
    report = evaluate(predicting(p, 4), t, class_names=["a", "b", "c", "d"])["per_class"]
    assert [r["class"] for r in report] == [0, 1, 2, 3]
    r0, r1, r2, r3 = report
    assert r0["support"] == 3 and r0["precision"] == pytest.approx(2 / 3)
    assert r0["recall"] == pytest.approx(2 / 3) and r0["f1"] == pytest.approx(2 / 3)
    assert r1["precision"] == pytest.approx(2 / 4) and r1["recall"] == 1.0
    assert r1["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert r2["precision"] == 1.0 and r2["recall"] == 0.5 and r2["name"] == "c"
    # a class never present nor predicted: defined as zeros, not NaN
    assert r3 == {"class": 3, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "name": "d"}
    assert "name" not in evaluate(predicting(p, 4), t)["per_class"][0]


def test_evaluate_and_log_loss():
    y = RNG.integers(0, 10, 200)
    logits = RNG.normal(size=(200, 10)) + 3 * np.eye(10)[y]
    proba = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    result = evaluate(proba, y)
    pred = proba.argmax(1)
    assert result["accuracy"] == pytest.approx((pred == y).mean())
    expected_loss = -np.mean(np.log(proba[np.arange(200), y]))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["confusion_matrix"] == reference_confusion(y, pred).tolist()
    assert len(result["per_class"]) == 10 and result["n"] == 200
    assert all(isinstance(v, float) for v in (result["accuracy"], result["loss"]))


def test_log_loss_is_finite_for_confident_mistakes():
    proba = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert np.isfinite(evaluate(proba, [1, 1])["loss"])
    with pytest.raises(ValueError, match="proba must be"):
        evaluate(proba, [1, 1, 1])
