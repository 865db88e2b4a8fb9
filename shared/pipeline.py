"""One training run, end to end: data → validation split → engine → evaluation on the test set.

The engine (shared.nn) trains a network on the arrays it is given; everything about data lives
here: which training images (train_limit), the stratified validation split, the pixel mean the
Standardize layer subtracts (computed on the training part only), and the test-set metrics.
Both `python -m trainer_service train` and the RQ job call `run_training`: the same steps, the
same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.config import TrainConfig
from shared.datasets import Dataset, stratified_split
from shared.metrics import evaluate
from shared.nn.callbacks import EpochRecord
from shared.nn.layers import Standardize
from shared.nn.model import Sequential
from shared.nn.training import TrainResult, fit


@dataclass
class TrainingOutcome:
    """Everything a run produced: the model, how training went, and its test-set metrics."""

    model: Sequential
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float
    #: `shared.metrics.evaluate` on the dataset's test split (MNIST: the official 10k images).
    metrics: dict[str, Any]
    #: `Dataset.fingerprint` of the data trained and tested on.
    fingerprint: str
    stopped_early: bool
    config: TrainConfig
    dataset: str = "mnist"
    class_names: list[str] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    #: The test split and the model's float32 [N, 10] probabilities on it, exactly the ones
    #: `metrics` was computed from: reports (shared.reports) draw the worst mistakes from them.
    #: In memory only: never part of the manifest (shared.manifest).
    x_test: np.ndarray | None = field(default=None, repr=False)
    y_test: np.ndarray | None = field(default=None, repr=False)
    test_proba: np.ndarray | None = field(default=None, repr=False)

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def validation_split(
    x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """((x_train, y_train), (x_val, y_val) or None): `config.val_fraction` of the rows, at least
    one, held out per class in proportion (shared.datasets.stratified_split, seeded by
    config.seed). TrainConfig guarantees val_fraction < 0.5 and at least 10 rows."""
    if config.val_fraction == 0:
        return (x, y), None
    n_val = max(1, round(config.val_fraction * len(y)))
    train_idx, val_idx = stratified_split(y, n_val, seed=config.seed)
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def train_model(
    config: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Split off the validation rows, build the network and train it with the engine (`fit`) on
    x: float32 [N, features] in [0, 1] and y: int64 labels (the datasets' contract). With
    config.standardize the model starts with a Standardize layer holding the training rows' pixel
    mean, so it takes raw pixels/255 wherever it is used. Without augmentation the rows never
    change, so they are standardised once here and the layers behind Standardize are trained on
    them (~5 % of an epoch saved); augmented runs train the whole model on raw batches.
    """
    (x_train, y_train), validation = validation_split(x, y, config)
    spec = config.training_spec()
    kw = {"validation": validation, "on_epoch": on_epoch, "progress": progress}
    if not config.standardize:
        return fit(config.build_model(input_size=x.shape[1]), x_train, y_train, spec, **kw)
    mean = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    if config.augment:
        model = config.build_model(input_size=x.shape[1], mean=mean)
        return fit(model, x_train, y_train, spec, **kw)
    layers = config.model_copy(update={"standardize": False}).build_model(input_size=x.shape[1])
    if validation is not None:
        kw["validation"] = (validation[0] - mean, validation[1])
    result = fit(layers, x_train - mean, y_train, spec, **kw)
    result.model = Sequential([Standardize(mean), *layers.layers], input_size=x.shape[1])
    return result


def run_training(
    config: TrainConfig,
    *,
    dataset: Dataset,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
) -> TrainingOutcome:
    """Train `config` on the loaded `dataset` and evaluate on its test split; the one code path
    for CLI and RQ job (each finds and loads its data itself: `shared.datasets.locations`).
    `on_epoch` exceptions stop training and propagate (how the job reacts to cancellation)."""
    # The first `train_limit` images (not a random sample): a limited run is reproducible, and
    # MNIST's and Fashion-MNIST's training sets are shuffled, so the first N are close to balanced.
    x, y = dataset.x_train[: config.train_limit], dataset.y_train[: config.train_limit]
    result = train_model(config, x, y, on_epoch=on_epoch, progress=progress)
    # One forward pass over the test set serves both the metrics and the report.
    test_proba = result.model.predict_proba(dataset.x_test)
    return TrainingOutcome(
        model=result.model,
        history=list(result.history),
        best_epoch=int(result.best_epoch),
        train_seconds=float(result.train_seconds),
        metrics=evaluate(test_proba, dataset.y_test, class_names=dataset.class_names),
        fingerprint=dataset.fingerprint,
        stopped_early=bool(result.stopped_early),
        config=config,
        dataset=dataset.name,
        class_names=list(dataset.class_names),
        n_train=int(len(y)),
        n_test=int(len(dataset.y_test)),
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        test_proba=test_proba,
    )
