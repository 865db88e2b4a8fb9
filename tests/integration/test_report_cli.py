"""`python -m trainer_service train --report DIR` on a real MNIST slice, and the pipeline's test
predictions the report is drawn from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.config import TrainConfig
from shared.datasets import load_dataset
from shared.manifest import Manifest
from shared.modelfile import load_model
from shared.pipeline import run_training
from shared.reports import FIGURE_PIXELS, REPORT_FILES
from trainer_service.cli.commands import main

pytestmark = pytest.mark.slow

ARGS = ["--train-limit", "1500", "--epochs", "2", "--hidden", "32", "--seed", "2"]


def test_train_writes_the_report_next_to_the_model(tmp_path: Path, mnist_dir, capsys) -> None:
    out = tmp_path / "model.npz"
    report_dir = tmp_path / "reports" / "run1"  # created, parents included
    rc = main(["train", "--data-dir", str(mnist_dir), *ARGS, "--out", str(out),
               "--report", str(report_dir), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert set(summary["report"]) == set(REPORT_FILES)
    assert "report written to" in captured.err

    for name, size in FIGURE_PIXELS.items():
        with Image.open(report_dir / name) as picture:
            picture.load()
            assert picture.format == "PNG" and picture.size == size, name
    report = json.loads((report_dir / "report.json").read_text())
    metadata = load_model(out).metadata
    # The same numbers as the model file (its metadata is the manifest).
    assert report["metrics"] == metadata["metrics"]
    assert report["metrics"]["test_accuracy"] == summary["test_accuracy"]
    assert report["history"] == metadata["history"]
    assert report["best_epoch"] == summary["best_epoch"]
    assert sum(map(sum, report["metrics"]["confusion_matrix"])) == 10000
    assert report["misclassified"]["count"] == round(10000 * (1 - summary["test_accuracy"]))


def test_report_dir_problems_fail_before_training(tmp_path: Path, mnist_dir, capsys) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    rc = main(["train", "--data-dir", str(mnist_dir), *ARGS, "--out", str(tmp_path / "m.npz"),
               "--report", str(a_file)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--report" in err and "not a folder" in err
    assert not (tmp_path / "m.npz").exists()


def test_outcome_carries_the_test_probabilities_behind_its_metrics(mnist_dir) -> None:
    config = TrainConfig(hidden_layers=[16], epochs=1, train_limit=1000)
    outcome = run_training(config, dataset=load_dataset("mnist", mnist_dir))
    assert outcome.test_proba.shape == (10000, 10) and outcome.test_proba.dtype == np.float32
    assert outcome.x_test.shape == (10000, 784) and outcome.y_test.shape == (10000,)
    pred = outcome.test_proba.argmax(axis=1)
    assert float((pred == outcome.y_test).mean()) == outcome.metrics["accuracy"]
    manifest = Manifest.from_outcome(outcome)
    assert "test_proba" not in manifest.to_json() and "test_proba" not in manifest.summary()
    assert "test_proba" not in repr(outcome)
