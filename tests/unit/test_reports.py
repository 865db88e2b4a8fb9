"""shared.reports on synthetic numbers: every file is written, PNGs have their fixed pixel size,
report.json holds the metrics untouched, and the worst-mistakes selection is right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.metrics import evaluate
from shared.reports import (
    FIGURE_PIXELS,
    GRID_COLS,
    GRID_ROWS,
    REPORT_FILES,
    manifest_metrics,
    worst_misclassified,
    write_report,
)

RNG = np.random.default_rng(3)
N = 300


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = RNG.integers(0, 10, N)
    logits = RNG.normal(size=(N, 10)).astype(np.float32)
    logits[np.arange(N), y] += 2.5  # mostly right, some confident mistakes
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    x = RNG.random((N, 784), dtype=np.float32)
    return x, y, proba.astype(np.float32)


def _history(epochs: int = 3, with_val: bool = True) -> list[dict]:
    return [
        {
            "epoch": e,
            "epochs": epochs,
            "train_loss": 1.0 / e,
            "train_accuracy": 1 - 0.5 / e,
            "val_loss": 1.1 / e if with_val else None,
            "val_accuracy": 1 - 0.6 / e if with_val else None,
            "learning_rate": 1e-3,
            "seconds": 0.5,
        }
        for e in range(1, epochs + 1)
    ]


def _assert_pngs(paths: dict[str, Path]) -> None:
    for name, size in FIGURE_PIXELS.items():
        with Image.open(paths[name]) as picture:
            picture.load()  # decodes the whole file: a truncated PNG fails here
            assert picture.format == "PNG", name
            assert picture.size == size, (name, picture.size)


def test_writes_every_file_with_fixed_sizes_and_the_metrics_untouched(tmp_path: Path) -> None:
    x, y, proba = _data()
    metrics = evaluate(proba, y)
    paths = write_report(
        tmp_path / "new" / "report",
        history=_history(),
        metrics=metrics,
        x_test=x,
        y_test=y,
        test_proba=proba,
        best_epoch=3,
        title="synthetic",
    )
    assert set(paths) == set(REPORT_FILES)
    assert all(p.is_file() and p.parent == tmp_path / "new" / "report" for p in paths.values())
    _assert_pngs(paths)

    report = json.loads(paths["report.json"].read_text())
    assert report["format"] == "digitflow-report" and report["format_version"] == 1
    assert report["metrics"] == manifest_metrics(metrics)
    assert report["metrics"]["test_accuracy"] == metrics["accuracy"]
    assert report["metrics"]["confusion_matrix"] == metrics["confusion_matrix"]
    assert report["history"] == _history()
    wrong = int((proba.argmax(axis=1) != y).sum())
    assert wrong > 0 and report["misclassified"]["count"] == wrong
    assert report["misclassified"]["worst"] == worst_misclassified(y, proba)
    assert report["figures"]["misclassified.png"] == {"width": 800, "height": 600}
    assert not list(paths["report.json"].parent.glob(".*")), "temp file left behind"


def test_manifest_shaped_metrics_are_stored_as_given(tmp_path: Path) -> None:
    """The RQ job passes the manifest's own metrics: report.json must equal them exactly."""
    x, y, proba = _data()
    manifest = manifest_metrics(evaluate(proba, y))
    assert set(manifest) == {
        "test_accuracy",
        "test_loss",
        "n_test",
        "per_class",
        "confusion_matrix",
    }
    paths = write_report(tmp_path, history=_history(), metrics=manifest)
    assert json.loads(paths["report.json"].read_text())["metrics"] == manifest
    _assert_pngs(paths)  # no test images: the grid says so instead of failing


def test_same_input_same_bytes(tmp_path: Path) -> None:
    x, y, proba = _data()
    metrics = evaluate(proba, y)
    kw = {"history": _history(), "metrics": metrics, "x_test": x, "y_test": y, "test_proba": proba}
    a = write_report(tmp_path / "a", **kw)
    b = write_report(tmp_path / "b", **kw)
    for name in REPORT_FILES:
        assert a[name].read_bytes() == b[name].read_bytes(), name


def test_edge_cases_still_draw(tmp_path: Path) -> None:
    """No validation split, one epoch, a perfect model, non-digit class names."""
    y = np.arange(20) % 10
    proba = np.eye(10, dtype=np.float32)[y]
    x = np.zeros((20, 784), dtype=np.float32)
    metrics = evaluate(proba, y)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"]  # fmt: skip
    paths = write_report(
        tmp_path,
        history=_history(1, with_val=False),
        metrics=metrics,
        class_names=names,
        x_test=x,
        y_test=y,
        test_proba=proba,
    )
    _assert_pngs(paths)
    report = json.loads(paths["report.json"].read_text())
    assert report["misclassified"] == {"count": 0, "worst": []}
    assert report["class_names"] == names
    write_report(tmp_path / "empty", history=[], metrics=metrics)  # no epochs at all


def test_worst_misclassified_most_confident_first() -> None:
    y = np.array([0, 1, 2, 3, 4])
    proba = np.full((5, 10), 0.01, dtype=np.float32)
    proba[0, 0] = 0.9  # right
    proba[1, 7] = 0.6  # wrong, 0.6
    proba[2, 5] = 0.95  # wrong, 0.95
    proba[3, 3] = 0.5  # right
    proba[4, 9] = 0.6  # wrong, 0.6 (tie: lower index first)
    worst = worst_misclassified(y, proba)
    assert [w["index"] for w in worst] == [2, 1, 4]
    assert worst[0] == {
        "index": 2,
        "true": 2,
        "predicted": 5,
        "confidence": pytest.approx(0.95),
        "true_class_probability": pytest.approx(0.01),
    }
    assert len(worst_misclassified(np.zeros(100, int), np.eye(10)[np.ones(100, int)])) == (
        GRID_ROWS * GRID_COLS
    )
