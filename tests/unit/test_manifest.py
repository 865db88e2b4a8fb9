"""shared.manifest: one manifest built from a run's outcome; the registry's manifest.json, the
model file's metadata, the CLI's --json line and the job's result are views of it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from shared.config import TrainConfig
from shared.manifest import Manifest, ManifestMetrics, SweepTrial
from shared.metrics import evaluate

#: Keys published manifests have had (readers rely on them; new keys may only be added).
PUBLISHED_KEYS = {
    "model", "dataset", "config", "metrics", "class_names", "history", "best_epoch",
    "epochs_run", "stopped_early", "train_seconds", "n_train", "dataset_fingerprint", "job_id",
    "trained_on",
}  # fmt: skip


def _outcome():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    proba = rng.dirichlet(np.ones(10), 200).astype(np.float32)
    history = [
        SimpleNamespace(to_dict=lambda e=e: {"epoch": e, "train_loss": np.float32(1.0 / e),
                                             "val_accuracy": np.float64(0.5 + e / 10)})
        for e in (1, 2, 3)
    ]  # fmt: skip
    return SimpleNamespace(
        config=TrainConfig(hidden_layers=[16], epochs=3),
        dataset="mnist",
        metrics=evaluate(proba, y),
        class_names=[str(i) for i in range(10)],
        history=history,
        best_epoch=np.int64(2),
        stopped_early=np.bool_(False),
        train_seconds=np.float64(1.5),
        n_train=1000,
        n_test=200,
        fingerprint="f" * 16,
    )


def test_manifest_keeps_every_published_key_and_its_metrics_shape():
    manifest = Manifest.from_outcome(_outcome(), job_id="j1")
    body = manifest.to_json()
    assert set(body) >= PUBLISHED_KEYS
    assert "staged" not in body and "sweep" not in body  # only on sweep trials
    assert set(body["metrics"]) == {
        "test_accuracy", "test_loss", "n_test", "per_class", "confusion_matrix"
    }  # fmt: skip
    assert body["metrics"]["n_test"] == 200 and body["epochs_run"] == 3
    assert body["history"][1] == {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.7}
    assert type(body["best_epoch"]) is int and body["job_id"] == "j1"


def test_every_view_is_the_same_manifest():
    manifest = Manifest.from_outcome(_outcome())
    body = manifest.to_json()
    accuracy = body["metrics"]["test_accuracy"]
    assert manifest.model_file_metadata() == {**body, "test_accuracy": accuracy}
    summary = manifest.summary()
    assert summary["test_accuracy"] == accuracy and summary["epochs"] == body["epochs_run"]
    assert summary["config"] == body["config"] and summary["n_test"] == 200
    result = manifest.job_result(7)
    assert result == {
        "model": "mnist", "model_version": 7, "test_accuracy": accuracy, "best_epoch": 2,
        "epochs_run": 3, "train_seconds": 1.5, "dataset_fingerprint": "f" * 16,
    }  # fmt: skip
    # The metrics block is built once: from evaluate's shape or from a manifest's, the same.
    assert ManifestMetrics.of(body["metrics"]).to_json() == body["metrics"]


def test_a_sweep_trial_is_staged_and_names_its_sweep():
    manifest = Manifest.from_outcome(_outcome())
    manifest.staged = True
    manifest.sweep = SweepTrial(
        sweep_id="s" * 32, trial=4, params={"dropout": 0.1}, objective="val_accuracy", value=0.7
    )
    body = manifest.to_json()
    assert body["staged"] is True
    assert body["sweep"] == {
        "sweep_id": "s" * 32, "trial": 4, "params": {"dropout": 0.1},
        "objective": "val_accuracy", "value": 0.7,
    }  # fmt: skip


def test_a_diverged_loss_is_null_not_nan():
    outcome = _outcome()
    outcome.metrics = {**outcome.metrics, "loss": float("nan")}
    assert Manifest.from_outcome(outcome).to_json()["metrics"]["test_loss"] is None
