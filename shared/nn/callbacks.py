"""What happens around the training loop's steps, one concept per class.

The loop (`shared.nn.training.train`) only steps. It calls each callback's `on_epoch_start(epoch)`
before an epoch, `on_batch(logits, y, loss)` after each batch's forward pass (before the backward
pass, which may reuse the logits' buffer) and `on_epoch(epoch, lr)` after the epoch; when any
`on_epoch` returns True, training stops once every callback has seen that epoch. An exception
from a callback stops training and propagates (that is how a job reacts to being canceled).

`fit` passes them in this order: `History` (measures the epoch), `EarlyStopping` (judges it),
the caller's `EpochHook` (reports it), `DivergenceCheck` (fails a diverged run), and a
`ProgressBar` when asked for one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shared.nn.inference import InferencePlan
from shared.nn.losses import cross_entropy
from shared.nn.model import Sequential


@dataclass
class EpochRecord:
    """What happened in one epoch (1-based `epoch` of `epochs`). Loss/accuracy on the training
    data are averages over the epoch's batches in training mode (dropout on); validation is
    measured after the epoch in inference mode, with plain (unsmoothed) cross-entropy.
    `learning_rate` is the rate used by the epoch's last step; `seconds` is the epoch's wall
    time, its validation included."""

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


def evaluate_logits(model: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model's inference-mode forward pass on (x, y)."""
    logits = InferencePlan(model).logits(x)
    return cross_entropy(logits, y), float(np.mean(logits.argmax(axis=1) == y))


class Callback:
    """The hooks the loop calls; each does nothing unless a subclass says otherwise."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before epoch `epoch` (0-based) starts."""

    def on_batch(self, logits: np.ndarray, y: np.ndarray, loss: float) -> None:
        """After a batch's forward pass: its logits, labels and mean loss."""

    def on_epoch(self, epoch: int, lr: float) -> bool:
        """After epoch `epoch` (0-based), whose last step used `lr`. True stops training."""
        return False


class History(Callback):
    """One `EpochRecord` per epoch in `records`: the training loss and accuracy summed over the
    epoch's batches, the validation pass on `validation` (x_val, y_val) if given, the time."""

    def __init__(
        self, model: Sequential, epochs: int, validation: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        self.model, self.epochs, self.validation = model, epochs, validation
        self.records: list[EpochRecord] = []

    def on_epoch_start(self, epoch: int) -> None:
        self._started = time.perf_counter()
        self._loss_sum, self._correct, self._rows = 0.0, 0, 0

    def on_batch(self, logits: np.ndarray, y: np.ndarray, loss: float) -> None:
        self._correct += int(np.count_nonzero(logits.argmax(axis=1) == y))
        self._loss_sum += loss * len(y)
        self._rows += len(y)

    def on_epoch(self, epoch: int, lr: float) -> bool:
        val_loss = val_accuracy = None
        if self.validation is not None:
            val_loss, val_accuracy = evaluate_logits(self.model, *self.validation)
        self.records.append(
            EpochRecord(
                epoch=epoch + 1,
                epochs=self.epochs,
                train_loss=self._loss_sum / self._rows,
                train_accuracy=self._correct / self._rows,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                learning_rate=lr,
                seconds=time.perf_counter() - self._started,
            )
        )
        return False


class EarlyStopping(Callback):
    """Stop after `patience` epochs without a better validation accuracy (ties broken by the
    lower validation loss); `restore_best()` then puts the best epoch's weights back. Needs a
    `History` with validation data, placed before it."""

    def __init__(self, model: Sequential, history: History, patience: int) -> None:
        self.model, self.history, self.patience = model, history, patience
        self.best_epoch = 0
        self.stopped = False
        self._best_key: tuple[float, float] | None = None
        self._best_state: dict[str, np.ndarray] | None = None
        self._since_best = 0

    def on_epoch(self, epoch: int, lr: float) -> bool:
        record = self.history.records[-1]
        key = (record.val_accuracy, -record.val_loss)
        if self._best_key is None or key > self._best_key:
            self._best_key, self._best_state, self._since_best = key, self.model.state(), 0
            self.best_epoch = epoch + 1
            return False
        self._since_best += 1
        self.stopped = self._since_best >= self.patience and epoch + 1 < record.epochs
        return self.stopped

    def restore_best(self) -> None:
        """Load the best epoch's weights, unless they are the last epoch's (already there)."""
        if self._best_state is not None and self.best_epoch != len(self.history.records):
            self.model.load_state(self._best_state)


class EpochHook(Callback):
    """Hands each epoch's record to the caller's function (a job's progress report)."""

    def __init__(self, history: History, fn: Callable[[EpochRecord], None]) -> None:
        self.history, self.fn = history, fn

    def on_epoch(self, epoch: int, lr: float) -> bool:
        self.fn(self.history.records[-1])
        return False


class DivergenceCheck(Callback):
    """A non-finite training loss fails the run with advice, instead of training on NaNs."""

    def __init__(self, history: History) -> None:
        self.history = history

    def on_epoch(self, epoch: int, lr: float) -> bool:
        loss = self.history.records[-1].train_loss
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1} (train loss {loss}); "
                "try a smaller learning_rate, or set grad_clip"
            )
        return False


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr, a tick per batch."""

    def __init__(self, epochs: int, steps: int) -> None:
        from tqdm import tqdm  # only when a bar is asked for

        self._tqdm, self.epochs, self.steps = tqdm, epochs, steps

    def on_epoch_start(self, epoch: int) -> None:
        self._bar = self._tqdm(
            total=self.steps,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            leave=False,
            mininterval=0.5,
        )

    def on_batch(self, logits: np.ndarray, y: np.ndarray, loss: float) -> None:
        self._bar.update(1)

    def on_epoch(self, epoch: int, lr: float) -> bool:
        self._bar.close()
        return False
