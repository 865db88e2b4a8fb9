"""The training loop, and `TrainingSpec`: the hyperparameters that choose its collaborators.

`train(model, x, y, epochs=..., batches=..., loss=..., optimizer=..., schedule=...)` is joelnet's
loop with every collaborator passed in: it knows no layer and no optimizer by name. Per step:

    logits = model.forward(x_batch)               (training mode)
    loss.forward(logits, y_batch); model.backward(loss.backward())    (fills model.grads)
    optimizer.step(schedule(epoch, step))         (updates model.params in place)

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from shared.nn.augment import Augmenter
from shared.nn.data import BatchIterator
from shared.nn.inference import InferencePlan
from shared.nn.losses import SoftmaxCrossEntropy, cross_entropy
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
class EpochRecord:
    """What happened in one epoch (1-based `epoch` of `epochs`). Loss/accuracy on the training
    data are averages over the epoch's batches in training mode (dropout on); validation is
    measured after the epoch in inference mode, with plain (unsmoothed) cross-entropy.
    `learning_rate` is the rate used by the epoch's last step."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def evaluate_logits(model: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model's inference-mode forward pass on (x, y)."""
    logits = InferencePlan(model).logits(x)
    return cross_entropy(logits, y), float(np.mean(logits.argmax(axis=1) == y))


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
    return train(
        model,
        x,
        y,
        epochs=spec.epochs,
        batches=batches,
        loss=SoftmaxCrossEntropy(spec.label_smoothing),
        optimizer=optimizer,
        schedule=schedule,
        augment=augment,
        validation=validation,
        early_stopping_patience=spec.early_stopping_patience,
        on_epoch=on_epoch,
        progress=progress,
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
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    early_stopping_patience: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `model` in place on x (float32 [N, model.input_size]) and y (int64 [N] labels).

    `optimizer` must update `model.params` from `model.grads`; `schedule(epoch, step)` gives each
    step's learning rate; `augment` (if any) maps each training batch to a distorted copy. After
    every epoch the model is measured on `validation` (x_val, y_val) if given. With
    `early_stopping_patience` (which needs `validation`), training stops after that many epochs
    without a better validation accuracy (ties broken by lower validation loss) and the best
    weights are restored. `on_epoch` runs after every epoch; if it raises, training stops and the
    exception propagates. `progress` shows a tqdm bar per epoch on stderr.
    """
    n = batches.rows(len(y))  # rows seen per epoch
    steps = batches.steps(len(y))
    result = TrainResult(model=model)
    best_key: tuple[float, float] | None = None
    best_state: dict[str, np.ndarray] | None = None
    since_best = 0
    bar_factory = _tqdm_factory() if progress else None
    start = time.perf_counter()

    for epoch in range(epochs):
        epoch_start = time.perf_counter()
        loss_sum, correct, lr = 0.0, 0, 0.0
        bar = bar_factory(epoch, epochs, steps) if bar_factory else None
        for step, (xb, yb) in enumerate(batches(x, y)):
            if augment is not None:
                xb = augment(xb)
            logits = model.forward(xb, training=True)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            loss_sum += loss.forward(logits, yb) * len(yb)
            model.backward(loss.backward())
            lr = schedule(epoch, step)
            optimizer.step(lr)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

        val_loss = val_acc = None
        if validation is not None:
            val_loss, val_acc = evaluate_logits(model, *validation)
        record = EpochRecord(
            epoch=epoch + 1,
            epochs=epochs,
            train_loss=loss_sum / n,
            train_accuracy=correct / n,
            val_loss=val_loss,
            val_accuracy=val_acc,
            learning_rate=lr,
            seconds=time.perf_counter() - epoch_start,
        )
        result.history.append(record)

        stop = False
        if early_stopping_patience is not None:
            key = (val_acc, -val_loss)
            if best_key is None or key > best_key:
                best_key, best_state, since_best = key, model.state(), 0
                result.best_epoch = epoch + 1
            else:
                since_best += 1
                stop = since_best >= early_stopping_patience and epoch + 1 < epochs
        else:
            result.best_epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(record)
        if not np.isfinite(record.train_loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1} (train loss {record.train_loss}); "
                "try a smaller learning_rate, or set grad_clip"
            )
        if stop:
            result.stopped_early = True
            break

    if best_state is not None and result.best_epoch != len(result.history):
        model.load_state(best_state)
    result.train_seconds = time.perf_counter() - start
    return result


def _tqdm_factory() -> Callable[[int, int, int], Any]:
    from tqdm import tqdm

    def make(epoch: int, epochs: int, steps: int) -> Any:
        return tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            mininterval=0.5,
        )

    return make
