"""The training loop, and `TrainingSpec`: the hyperparameters that choose its collaborators.

`train(model, x, y, epochs=..., batches=..., loss=..., optimizer=..., schedule=...)` is joelnet's
loop with every collaborator passed in: it knows no layer and no optimizer by name. Per step:

    logits = model.forward(x_batch)               (training mode)
    loss.forward(logits, y_batch); model.backward(loss.backward())    (fills model.grads)
    optimizer.step(schedule(epoch, step))         (updates model.params in place)

Everything around the steps (the per-epoch record and validation, early stopping, the caller's
progress hook, the divergence check, the progress bar) is a callback (shared.nn.callbacks).
`fit(model, x, y, spec)` builds those collaborators from a `TrainingSpec` and calls `train`.
Neither knows datasets, validation splits, registries or presets: the caller (shared.pipeline)
splits the data and passes the validation part in.

Deterministic: shuffling and augmentation draw from streams derived from spec.seed through numpy
SeedSequence (the model's initial weights and dropout masks from their own, see build_mlp), so
the same seed and data give bit-identical weights (for a fixed BLAS thread count).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shared.nn.augment import Augmenter
from shared.nn.callbacks import (
    Callback,
    DivergenceCheck,
    EarlyStopping,
    EpochHook,
    EpochRecord,
    History,
    ProgressBar,
)
from shared.nn.data import BatchIterator
from shared.nn.losses import SoftmaxCrossEntropy
from shared.nn.model import Sequential
from shared.nn.optimizers import Optimizer, make_optimizer
from shared.nn.schedules import Schedule, make_schedule


@dataclass(frozen=True)
class TrainingSpec:
    """How to train (the network itself is built separately, e.g. by `build_mlp`).

    Names are those of `OPTIMIZERS` and `shared.nn.schedules.SCHEDULES`. Values are trusted: the
    job schema (shared.config.TrainConfig) validated them, so nothing is checked again here.
    """

    epochs: int = 8
    #: Rows per mini-batch; 0 means full batch.
    batch_size: int = 256
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    #: Only for the momentum / nesterov optimizers.
    momentum: float = 0.9
    #: Coupled L2: l2 * w is added to the weights' gradient.
    l2: float = 0.0
    #: Decoupled decay: w *= 1 - lr * weight_decay each step (AdamW).
    weight_decay: float = 0.0
    #: Global gradient-norm limit, None for none.
    grad_clip: float | None = None
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    #: Random affine distortion of every training batch (28x28 images), plus elastic if set.
    augment: bool = False
    elastic: bool = False
    #: Strength of the random affine distortion (shared.nn.augment.random_affine).
    max_rotation: float = 12.0
    max_shift: float = 2.0
    max_scale: float = 0.1
    flip: bool = False
    #: Stop after this many epochs without a better validation accuracy (needs validation data).
    early_stopping_patience: int | None = None
    seed: int = 0


@dataclass
class TrainResult:
    """`model` holds the weights of `best_epoch` (the last epoch unless early stopping is on)."""

    model: Sequential
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False


class Loss(Protocol):
    """A loss over logits: `forward` returns the mean loss, then `backward` dL/dlogits."""

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float: ...

    def backward(self) -> np.ndarray: ...


def fit(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainingSpec,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `model` on (x, y) as `spec` says: builds the batch iterator, loss, optimizer,
    schedule and augmentation it names, then runs `train`."""
    shuffle_seed, augment_seed = np.random.SeedSequence(spec.seed).spawn(2)
    batches = BatchIterator(spec.batch_size, np.random.default_rng(shuffle_seed))
    optimizer = make_optimizer(
        spec.optimizer,
        model.params,
        model.grads,
        momentum=spec.momentum,
        l2=spec.l2,
        weight_decay=spec.weight_decay,
        grad_clip=spec.grad_clip,
        decay_size=model.decay_size,
    )
    schedule = make_schedule(
        spec.lr_schedule,
        spec.learning_rate,
        epochs=spec.epochs,
        steps_per_epoch=batches.steps(len(y)),
        warmup_epochs=spec.warmup_epochs,
    )
    augment = None
    if spec.augment:
        augmenter = Augmenter(
            max_shift=spec.max_shift,
            max_rotation=spec.max_rotation,
            max_scale=spec.max_scale,
            flip=spec.flip,
            elastic=spec.elastic,
        )
        augment = functools.partial(augmenter, rng=np.random.default_rng(augment_seed))
    history = History(model, spec.epochs, validation)
    callbacks: list[Callback] = [history]
    early = None
    if spec.early_stopping_patience is not None:
        early = EarlyStopping(model, history, spec.early_stopping_patience)
        callbacks.append(early)
    if on_epoch is not None:
        callbacks.append(EpochHook(history, on_epoch))
    callbacks.append(DivergenceCheck(history))
    if progress:
        callbacks.append(ProgressBar(spec.epochs, batches.steps(len(y))))
    start = time.perf_counter()
    train(
        model,
        x,
        y,
        epochs=spec.epochs,
        batches=batches,
        loss=SoftmaxCrossEntropy(spec.label_smoothing),
        optimizer=optimizer,
        schedule=schedule,
        augment=augment,
        callbacks=callbacks,
    )
    if early is not None:
        early.restore_best()
    return TrainResult(
        model=model,
        history=history.records,
        best_epoch=early.best_epoch if early is not None else len(history.records),
        train_seconds=time.perf_counter() - start,
        stopped_early=early is not None and early.stopped,
    )


def train(
    model: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batches: BatchIterator,
    loss: Loss,
    optimizer: Optimizer,
    schedule: Schedule,
    augment: Callable[[np.ndarray], np.ndarray] | None = None,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Train `model` in place on x (float32 [N, model.input_size]) and y (int64 [N] labels).

    `optimizer` updates `model.params` from `model.grads`; `schedule(epoch, step)` gives each
    step's learning rate; `augment` (if any) maps each training batch to a distorted copy.
    Everything else (measuring, validating, stopping early, reporting) is a callback
    (shared.nn.callbacks); training stops after an epoch where one of them says so.
    """
    for epoch in range(epochs):
        for callback in callbacks:
            callback.on_epoch_start(epoch)
        lr = 0.0
        for step, (xb, yb) in enumerate(batches(x, y)):
            if augment is not None:
                xb = augment(xb)
            logits = model.forward(xb, training=True)
            batch_loss = loss.forward(logits, yb)
            for callback in callbacks:
                callback.on_batch(logits, yb, batch_loss)
            model.backward(loss.backward())
            lr = schedule(epoch, step)
            optimizer.step(lr)
        if any([callback.on_epoch(epoch, lr) for callback in callbacks]):  # every one sees it
            return
