"""The training loop: split, build, train mini-batches, validate, early-stop.

Deterministic: every random stream (validation split, initial weights, shuffling, dropout,
augmentation) derives from config.seed through numpy SeedSequence, so the same seed and data
give bit-identical weights (for a fixed BLAS thread count).

Speed: batches are gathered with np.take(..., out=) from the caller's array into one reused
buffer (no per-epoch copy of the data set, no per-batch allocation); every layer reuses its own
buffers; the optimizer updates one flat parameter vector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.nn.augment import Augmenter
from shared.nn.layers import Standardize
from shared.nn.losses import SoftmaxCrossEntropy, cross_entropy
from shared.nn.model import Sequential, build_model
from shared.nn.optimizers import make_optimizer
from shared.nn.schedules import make_schedule

if TYPE_CHECKING:
    from shared.config import TrainConfig


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


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): `fraction` of each class goes to validation, so both sides keep
    the class balance. Indices are sorted (the caller shuffles per epoch)."""
    if fraction <= 0:
        return np.arange(len(y)), np.empty(0, np.int64)
    val_parts = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        k = int(round(fraction * len(members)))
        val_parts.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.empty(0, np.int64)
    if len(val) == 0 and len(y) >= 2:  # tiny data: still validate on something
        val = np.sort(rng.permutation(len(y))[:1])
    mask = np.ones(len(y), bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def validation_split(y: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (train_idx, val_idx) split train() uses for this config: stratified, seeded."""
    split_ss = np.random.SeedSequence(config.seed).spawn(3)[0]
    return stratified_split(y, config.val_fraction, np.random.default_rng(split_ss))


def evaluate_logits(model: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in inference mode."""
    logits = model.predict_logits(x)
    return cross_entropy(logits, y), float(np.mean(logits.argmax(axis=1) == y))


def _check_data(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected x [N, D] and y [N]; got {list(x.shape)} and {list(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 training samples")
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if y.min() < 0:
        raise ValueError("labels must be non-negative integers")
    return x, y


def train(
    config: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = False,
    n_classes: int = 10,
) -> TrainResult:
    """Train the model `config` describes on (x, y); see the module docstring.

    x: float32 [N, D] in [0, 1]; y: int64 [N]. Splits off config.val_fraction (stratified) for
    validation, builds the model (Standardize uses the training split's pixel mean), trains for
    config.epochs with per-epoch reshuffling, and with config.early_stopping_patience stops after
    that many epochs without a better validation accuracy (ties broken by lower validation loss),
    restoring the best weights. `on_epoch` runs after every epoch; if it raises, training stops
    and the exception propagates. `progress` shows a tqdm bar per epoch on stderr.
    """
    x, y = _check_data(x, y)
    if int(y.max()) >= n_classes:
        raise ValueError(f"labels must be < n_classes={n_classes}; found {int(y.max())}")
    if config.early_stopping_patience is not None and config.val_fraction <= 0:
        raise ValueError("early_stopping_patience needs a validation split (val_fraction > 0)")

    train_idx, val_idx = validation_split(y, config)
    _, shuffle_ss, augment_ss = np.random.SeedSequence(config.seed).spawn(3)
    n_train = len(train_idx)
    x_train = x[train_idx] if config.standardize else None
    mean = None if x_train is None else x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    model = build_model(
        config,
        input_dim=x.shape[1],
        n_classes=n_classes,
        mean=mean,
        seed=config.seed,
    )
    x_val, y_val = x[val_idx], y[val_idx]

    full_batch = config.batch_size == 0 or config.batch_size >= n_train
    batch = n_train if full_batch else config.batch_size
    steps = -(-n_train // batch)
    optimizer = make_optimizer(
        config.optimizer,
        model.params,
        model.grads,
        momentum=config.momentum,
        l2=config.l2,
        weight_decay=config.weight_decay,
        grad_clip=config.grad_clip,
        decay_size=model.decay_size,
        prescaled=True,
    )
    schedule = make_schedule(
        config.lr_schedule,
        config.learning_rate,
        epochs=config.epochs,
        steps_per_epoch=steps,
        warmup_epochs=config.warmup_epochs,
    )
    loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
    shuffle_rng = np.random.default_rng(shuffle_ss)
    augment_rng = np.random.default_rng(augment_ss)
    augmenter = Augmenter(elastic=config.elastic) if config.augment else None

    # Batches are gathered from `source` at `positions`. Without augmentation the fixed
    # Standardize layer is applied once to the whole training split here (one pass instead of
    # one per batch per epoch) and skipped in the training forward pass.
    skip = 1 if augmenter is None and isinstance(model.layers[0], Standardize) else 0
    if skip:
        source = x_train
        source -= model.layers[0].mean
        positions = np.arange(n_train)
    else:
        source, positions = x, train_idx
    del x_train
    y_source = y[train_idx] if skip else y
    # Full batch: one fixed array, no shuffling needed (the gradient is order-independent).
    if full_batch:
        whole = skip or n_train == len(x)
        x_full = source if whole else source[positions]
        y_full = y_source if whole else y_source[positions]
    else:
        xb_buf = np.empty((batch, x.shape[1]), np.float32)
        yb_buf = np.empty(batch, np.int64)

    result = TrainResult(model=model)
    best_key: tuple[float, float] | None = None
    best_state: dict[str, np.ndarray] | None = None
    since_best = 0
    bar_factory = _tqdm_factory() if progress else None
    start = time.perf_counter()

    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        order = None if full_batch else positions[shuffle_rng.permutation(n_train)]
        loss_sum, correct, lr = 0.0, 0, config.learning_rate
        bar = bar_factory(epoch, config.epochs, steps) if bar_factory else None
        for step in range(steps):
            if order is None:
                xb, yb = x_full, y_full
            else:
                idx = order[step * batch : (step + 1) * batch]
                xb = np.take(source, idx, axis=0, out=xb_buf[: len(idx)], mode="clip")
                yb = np.take(y_source, idx, out=yb_buf[: len(idx)], mode="clip")
            if augmenter is not None:
                xb = augmenter(xb, augment_rng)
            logits = model.forward_into(xb, training=True, start=skip)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            loss_sum += loss_fn.forward(logits, yb) * len(yb)
            # The optimizer may want the gradient times a known factor (Adam: one pass fewer);
            # back-propagation is linear, so scaling dL/dlogits scales every gradient.
            dlogits = loss_fn.backward()
            scale = optimizer.grad_scale()
            if scale != 1.0:
                dlogits *= scale
            model.backward(dlogits)
            lr = schedule(epoch, step)
            optimizer.step(lr)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

        val_loss = val_acc = None
        if len(val_idx):
            val_loss, val_acc = evaluate_logits(model, x_val, y_val)
        record = EpochRecord(
            epoch=epoch + 1,
            epochs=config.epochs,
            train_loss=loss_sum / n_train,
            train_accuracy=correct / n_train,
            val_loss=val_loss,
            val_accuracy=val_acc,
            learning_rate=lr,
            seconds=time.perf_counter() - epoch_start,
        )
        result.history.append(record)

        stop = False
        if config.early_stopping_patience is not None and val_acc is not None:
            key = (val_acc, -val_loss)
            if best_key is None or key > best_key:
                best_key, best_state, since_best = key, model.state(), 0
                result.best_epoch = epoch + 1
            else:
                since_best += 1
                stop = since_best >= config.early_stopping_patience and epoch + 1 < config.epochs
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
