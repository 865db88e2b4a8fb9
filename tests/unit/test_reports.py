"""shared.reports on synthetic numbers: every file is written, PNGs have their fixed pixel size,
report.json holds the metrics untouched, and the worst-mistakes selection is right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.manifest import ManifestMetrics
from shared.metrics import evaluate
from shared.reports import (
    FIGURE_PIXELS,
    GRID_COLS,
    GRID_ROWS,
    REPORT_FILES,
    SWEEP_REPORT_PIXELS,
    draw_sweep_report,
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
    assert report["metrics"] == ManifestMetrics.of(metrics).to_json()
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
    manifest = ManifestMetrics.of(evaluate(proba, y)).to_json()
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


def _sweep(trials: list[dict], objective: str = "val_accuracy", space: dict | None = None) -> dict:
    scored = [t for t in trials if t["value"] is not None]
    pick = max if objective == "val_accuracy" else min
    best = pick(scored, key=lambda t: t["value"]) if scored else None
    return {
        "sweep_id": "ab" * 16,
        "model": "mnist",
        "status": "finished" if trials else "running",
        "objective": objective,
        "trials": trials,
        "best": best,
        "promotion": None,
        "request": {"space": space or {"learning_rate": {"log_uniform": [1e-4, 1e-2]}}},
    }


def _trial(number: int, params: dict, status: str, curve: list[float], objective="val_accuracy"):
    return {
        "number": number,
        "params": params,
        "status": status,
        "pruned": status == "pruned",
        "value": curve[-1] if status == "finished" else None,
        "curve": [{"epoch": e + 1, objective: v} for e, v in enumerate(curve)],
        "model_version": number + 1 if status == "finished" else None,
    }


def test_sweep_report_has_its_fixed_size_whatever_the_sweep(tmp_path: Path) -> None:
    """A sweep just started (no trial, no best), a running one, and a finished one with every
    kind of dimension, more parameters than are plotted, pruned and failed trials, and the
    val_loss objective: one PNG of SWEEP_REPORT_PIXELS each, the same bytes for the same sweep."""
    space = {
        "learning_rate": {"log_uniform": [1e-4, 1e-2]},
        "dropout": {"uniform": [0.0, 0.3]},
        "epochs": {"int": [1, 5]},
        "hidden_layers": {"choice": [[256], [512, 256]]},
        "batch_size": [128, 256],
        "activation": ["relu", "tanh"],
    }
    params = {"learning_rate": 1e-3, "dropout": 0.1, "epochs": 3, "hidden_layers": [256],
              "batch_size": 128, "activation": "relu"}  # fmt: skip
    finished = [
        _trial(0, params, "finished", [0.5, 0.3, 0.2], "val_loss"),
        _trial(1, {**params, "hidden_layers": [512, 256]}, "pruned", [0.9], "val_loss"),
        _trial(2, {**params, "learning_rate": 5e-3}, "failed", [], "val_loss"),
        _trial(3, {**params, "batch_size": 256}, "finished", [0.6, 0.25, 0.15], "val_loss"),
    ]
    running = [_trial(0, {"learning_rate": 1e-3}, "running", [0.8, 0.9])]
    cases = {
        "empty": _sweep([]),
        "running": _sweep(running),
        "finished": _sweep(finished, "val_loss", space),
    }
    for name, sweep in cases.items():
        for copy in ("a", "b"):
            draw_sweep_report(sweep, tmp_path / f"{name}-{copy}.png")
        with Image.open(tmp_path / f"{name}-a.png") as picture:
            assert picture.size == SWEEP_REPORT_PIXELS, name
        assert (tmp_path / f"{name}-a.png").read_bytes() == (
            tmp_path / f"{name}-b.png"
        ).read_bytes()
    assert len({(tmp_path / f"{n}-a.png").read_bytes() for n in cases}) == 3
