"""Training: learning on real digits, determinism, full-batch GD, early stopping, callbacks.

The engine's loop (`shared.nn.training.train` / `fit`) is driven here through
`shared.pipeline.train_model`, the same validation split, mean and network a job gets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from shared.config import PRESETS, TrainConfig
from shared.nn.callbacks import EpochRecord, evaluate_logits
from shared.nn.data import BatchIterator
from shared.nn.losses import SoftmaxCrossEntropy
from shared.nn.optimizers import Adam
from shared.nn.schedules import Constant
from shared.nn.training import TrainingSpec, fit, train
from shared.pipeline import train_model, validation_split


def _read_idx(path: Path, offset: int, limit: int, row: int) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read(offset + limit * row)
    return np.frombuffer(data, np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist_split(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3000 MNIST training digits (first 2500 train, last 500 held out), read inline."""
    n = 3000
    x = _read_idx(mnist_dir / "train-images-idx3-ubyte.gz", 16, n, 784).reshape(n, 784)
    y = _read_idx(mnist_dir / "train-labels-idx1-ubyte.gz", 8, n, 1).astype(np.int64)
    x = x.astype(np.float32) / 255.0
    return x[:2500], y[:2500], x[2500:], y[2500:]


def small(**kw) -> TrainConfig:
    """A small run, pinned explicitly so tuning TrainConfig's defaults never changes these tests."""
    base = {
        "hidden_layers": [64],
        "epochs": 3,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "dropout": 0.2,
        "label_smoothing": 0.0,
        "augment": False,
        "val_fraction": 0.1,
    }
    base.update(kw)
    return TrainConfig(**base)


def accuracy(model, x, y) -> float:
    return float(np.mean(model.predict_proba(x).argmax(axis=1) == y))


def test_learns_real_digits(mnist_split):
    x, y, x_test, y_test = mnist_split
    records: list[EpochRecord] = []
    result = train_model(small(epochs=8, learning_rate=2e-3), x, y, on_epoch=records.append)
    assert [r.epoch for r in records] == list(range(1, 9)) and records == result.history
    assert records[-1].train_loss < records[0].train_loss
    assert records[-1].val_accuracy > 0.85
    test_acc = accuracy(result.model, x_test, y_test)
    assert test_acc > 0.88, test_acc
    assert result.best_epoch == 8 and not result.stopped_early
    assert result.train_seconds >= sum(r.seconds for r in records) * 0.99
    d = records[0].to_dict()
    assert set(d) == {
        "epoch",
        "epochs",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
    }


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"dropout": 0.3, "batch_norm": True, "augment": True, "elastic": True},
        {"batch_size": 0, "optimizer": "nesterov", "l2": 1e-3, "grad_clip": 1.0},
    ],
)
def test_same_seed_gives_bit_identical_weights(mnist_split, extra):
    x, y, _, _ = mnist_split
    x, y = x[:800], y[:800]
    cfg = small(epochs=2, **extra)
    a = train_model(cfg, x, y).model.state()
    b = train_model(cfg, x, y).model.state()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    c = train_model(small(epochs=2, seed=1, **extra), x, y).model.state()
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_full_batch_reproduces_plain_gradient_descent(mnist_split):
    x, y, _, _ = mnist_split
    x, y = x[:300], y[:300]
    cfg = TrainConfig(
        preset="seed-basic", epochs=3, learning_rate=0.5, val_fraction=0.0, standardize=False
    )
    result = train_model(cfg, x, y)
    # The same thing by hand: w -= lr * dL/dw on the whole data set, three times.
    model = cfg.build_model()
    loss = SoftmaxCrossEntropy()
    for _ in range(3):
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        model.params -= np.float32(0.5) * model.grads
    np.testing.assert_allclose(result.model.params, model.params, rtol=1e-6, atol=1e-7)
    assert [r.val_accuracy for r in result.history] == [None] * 3


def test_the_loop_is_forward_backward_step_with_the_collaborators_it_is_given(mnist_split):
    """train() with an explicit Adam, loss, schedule and in-order batches takes exactly the
    steps of a hand-written loop: it adds nothing of its own (no optimizer-specific scaling)."""
    x, y, _, _ = mnist_split
    x, y = x[:300], y[:300]
    cfg = TrainConfig(hidden_layers=[16], standardize=True, dropout=0.0)
    mean = x.mean(axis=0)
    model = cfg.build_model(mean=mean)
    train(
        model,
        x,
        y,
        epochs=2,
        batches=BatchIterator(100),
        loss=SoftmaxCrossEntropy(0.1),
        optimizer=Adam(model.params, model.grads, l2=1e-3, decay_size=model.decay_size),
        schedule=Constant(0.01, epochs=2, steps_per_epoch=3),
    )
    by_hand = cfg.build_model(mean=mean)
    opt = Adam(by_hand.params, by_hand.grads, l2=1e-3, decay_size=by_hand.decay_size)
    loss = SoftmaxCrossEntropy(0.1)
    for _ in range(2):
        for start in range(0, 300, 100):
            loss.forward(
                by_hand.forward(x[start : start + 100], training=True), y[start : start + 100]
            )
            by_hand.backward(loss.backward())
            opt.step(0.01)
    np.testing.assert_array_equal(model.params, by_hand.params)


def test_standardising_once_trains_the_same_model_as_the_standardize_layer(mnist_split):
    """Without augmentation the pipeline standardises the rows once and trains the layers
    behind Standardize; the result equals training the whole model on raw pixels."""
    x, y, x_test, _ = mnist_split
    x, y = x[:500], y[:500]
    cfg = small(epochs=2, dropout=0.0, val_fraction=0.0)
    once = train_model(cfg, x, y).model
    per_batch = cfg.build_model(mean=x.mean(axis=0, dtype=np.float64).astype(np.float32))
    fit(per_batch, x, y, cfg.training_spec())
    assert [layer.kind for layer in once.layers] == [layer.kind for layer in per_batch.layers]
    np.testing.assert_allclose(once.params, per_batch.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        once.predict_proba(x_test), per_batch.predict_proba(x_test), rtol=1e-3, atol=1e-5
    )


def test_fit_builds_what_the_spec_names(mnist_split):
    x, y, _, _ = mnist_split
    model = TrainConfig(hidden_layers=[32]).build_model()
    spec = TrainingSpec(epochs=2, batch_size=50, optimizer="rmsprop", learning_rate=1e-3)
    result = fit(model, x[:500], y[:500], spec, validation=(x[500:700], y[500:700]))
    assert result.model is model and len(result.history) == 2
    assert result.history[-1].val_accuracy > 0.5


def test_early_stopping_restores_the_best_weights(mnist_split):
    x, y, _, _ = mnist_split
    x, y = x[:600], y[:600].copy()
    y[::3] = (y[::3] + 1) % 10  # noisy labels + a big model and learning rate: overfits fast
    cfg = small(
        hidden_layers=[256],
        epochs=40,
        learning_rate=3e-3,
        lr_schedule="constant",
        dropout=0.0,
        val_fraction=0.3,
        early_stopping_patience=3,
    )
    result = train_model(cfg, x, y)
    assert result.stopped_early and len(result.history) < 40
    assert result.best_epoch < len(result.history)
    best = result.history[result.best_epoch - 1]
    accs = [r.val_accuracy for r in result.history]
    assert best.val_accuracy == max(accs)
    assert all(a <= best.val_accuracy for a in accs[result.best_epoch :])
    _, (x_val, y_val) = validation_split(x, y, cfg)
    assert len(y_val) == 180
    val_loss, val_acc = evaluate_logits(result.model, x_val, y_val)
    assert val_acc == best.val_accuracy  # the returned model IS the best epoch's
    assert val_loss == pytest.approx(best.val_loss, rel=1e-6)


def test_on_epoch_exception_stops_training(mnist_split):
    x, y, _, _ = mnist_split
    seen = []

    def stop(record: EpochRecord) -> None:
        seen.append(record.epoch)
        if record.epoch == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        train_model(small(epochs=5), x[:500], y[:500], on_epoch=stop)
    assert seen == [1, 2]


def test_every_optimizer_and_schedule_learns(mnist_split):
    x, y, _, _ = mnist_split
    x, y = x[:2000], y[:2000]
    settings = [
        {"optimizer": "sgd", "learning_rate": 0.1, "lr_schedule": "step"},
        {"optimizer": "momentum", "learning_rate": 0.05},
        {"optimizer": "nesterov", "learning_rate": 0.05, "warmup_epochs": 1},
        {"optimizer": "rmsprop", "learning_rate": 1e-3},
        {"optimizer": "adamw", "weight_decay": 0.05, "label_smoothing": 0.1},
        {"activation": "sigmoid", "learning_rate": 3e-3},
        {"activation": "tanh", "batch_norm": True},
        {"activation": "leaky_relu", "learning_rate": 3e-3},
        {"augment": True, "elastic": True, "learning_rate": 3e-3, "dropout": 0.0},
    ]
    for extra in settings:
        result = train_model(small(epochs=6, **extra), x, y)
        assert result.history[-1].val_accuracy > 0.78, (extra, result.history[-1])


def test_progress_bar(mnist_split, capsys):
    x, y, _, _ = mnist_split
    train_model(small(epochs=1), x[:200], y[:200], progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_divergence_is_an_error_not_silent_nan(mnist_split):
    x, y, _, _ = mnist_split
    seen = []
    cfg = small(optimizer="sgd", learning_rate=10.0, lr_schedule="constant", dropout=0.0, epochs=5)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="diverged"):
        train_model(cfg, x[:500], y[:500], on_epoch=seen.append)
    assert seen and not np.isfinite(seen[-1].train_loss)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains(mnist_split, preset):
    """Each preset's architecture/optimizer/augmentation combination runs end to end."""
    x, y, x_test, y_test = mnist_split
    epochs = 40 if preset == "seed-basic" else 2  # full-batch GD: one step per epoch
    result = train_model(TrainConfig(preset=preset, epochs=epochs), x[:1000], y[:1000])
    assert len(result.history) == epochs
    assert np.isfinite(result.history[-1].train_loss)
    assert accuracy(result.model, x_test, y_test) > 0.2


def test_batches_cover_every_row_but_a_lone_trailing_one():
    """Batch norm cannot train on a batch of one: a trailing single row sits the epoch out."""
    x = np.arange(21, dtype=np.float32).reshape(21, 1)
    y = np.arange(21)
    batches = BatchIterator(5, np.random.default_rng(0))
    sizes = [len(yb) for _, yb in batches(x, y)]
    assert sizes == [5, 5, 5, 5] and batches.steps(21) == 4
    seen = np.concatenate([yb.copy() for _, yb in batches(x[:22], y[:22])])
    assert len(np.unique(seen)) == 20
    assert [len(yb) for _, yb in BatchIterator(5)(x[:17], y[:17])] == [5, 5, 5, 2]
    model = TrainConfig(hidden_layers=[4], batch_norm=True, standardize=False).build_model(
        input_size=1, n_classes=21
    )
    train(
        model,
        x,
        y,
        epochs=1,
        batches=batches,
        loss=SoftmaxCrossEntropy(0.0),
        optimizer=Adam(model.params, model.grads, decay_size=model.decay_size),
        schedule=Constant(0.01, epochs=1, steps_per_epoch=4),
    )
    assert np.isfinite(model.params).all()


def test_a_callback_that_says_stop_ends_training_after_every_callback_saw_the_epoch(mnist_split):
    """The loop knows no early stopping of its own: any callback's True stops it, and the
    callbacks after it still see that epoch (a report is never lost)."""
    from shared.nn.callbacks import Callback

    x, y, _, _ = mnist_split
    model = TrainConfig(hidden_layers=[8]).build_model()

    class StopAfterTwo(Callback):
        def on_epoch(self, epoch: int, lr: float) -> bool:
            return epoch == 1

    class Seen(Callback):
        def __init__(self) -> None:
            self.epochs: list[int] = []
            self.batches = 0

        def on_batch(self, logits, y, loss) -> None:
            assert logits.shape == (len(y), 10) and np.isfinite(loss)
            self.batches += 1

        def on_epoch(self, epoch: int, lr: float) -> bool:
            self.epochs.append(epoch)
            return False

    seen = Seen()
    train(
        model,
        x[:300],
        y[:300],
        epochs=5,
        batches=BatchIterator(100),
        loss=SoftmaxCrossEntropy(0.0),
        optimizer=Adam(model.params, model.grads, decay_size=model.decay_size),
        schedule=Constant(0.01, epochs=5, steps_per_epoch=3),
        callbacks=[StopAfterTwo(), seen],
    )
    assert seen.epochs == [0, 1] and seen.batches == 6
