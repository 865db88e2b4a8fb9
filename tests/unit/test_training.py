"""train(): learning on real digits, determinism, full-batch GD, early stopping, callbacks."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.nn.losses import SoftmaxCrossEntropy
from shared.nn.model import build_model
from shared.nn.optimizers import Adam
from shared.nn.training import (
    EpochRecord,
    evaluate_logits,
    stratified_split,
    train,
    validation_split,
)


def _read_idx(path: Path, offset: int, limit: int, row: int) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read(offset + limit * row)
    return np.frombuffer(data, np.uint8, offset=offset)


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def test_learns_real_digits(digits):
    x, y, x_test, y_test = digits
    records: list[EpochRecord] = []
    result = train(small(epochs=8, learning_rate=2e-3), x, y, on_epoch=records.append)
    assert [r.epoch for r in records] == list(range(1, 9)) and records == result.history
    assert records[-1].train_loss < records[0].train_loss
    assert records[-1].val_accuracy > 0.85
    test_acc = float(np.mean(result.model.predict(x_test) == y_test))
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
def test_same_seed_gives_bit_identical_weights(digits, extra):
    x, y, _, _ = digits
    x, y = x[:800], y[:800]
    cfg = small(epochs=2, **extra)
    a = train(cfg, x, y).model.state()
    b = train(cfg, x, y).model.state()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    c = train(small(epochs=2, seed=1, **extra), x, y).model.state()
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_full_batch_reproduces_plain_gradient_descent(digits):
    x, y, _, _ = digits
    x, y = x[:300], y[:300]
    cfg = TrainConfig(
        preset="seed-basic", epochs=3, learning_rate=0.5, val_fraction=0.0, standardize=False
    )
    result = train(cfg, x, y)
    # The same thing by hand: w -= lr * dL/dw on the whole data set, three times.
    model = build_model(cfg)
    loss = SoftmaxCrossEntropy()
    for _ in range(3):
        loss.forward(model.forward_into(x, True), y)
        model.backward(loss.backward())
        model.params -= np.float32(0.5) * model.grads
    np.testing.assert_allclose(result.model.params, model.params, rtol=1e-6, atol=1e-7)
    assert [r.val_accuracy for r in result.history] == [None] * 3


def test_adam_with_the_pre_scaled_gradient_matches_a_plain_adam_loop(digits):
    """train() hands Adam its gradient pre-multiplied (through dL/dlogits): same steps as
    Adam fed the plain gradient, L2 included. (No clipping here: an active clip rescales the
    gradient to the limit and would hide a missing factor; tests/unit/test_nn_optimizers.py
    checks clipping with the pre-scaled gradient.)"""
    x, y, _, _ = digits
    x, y = x[:300], y[:300]
    cfg = TrainConfig(
        preset="seed-basic",
        optimizer="adam",
        learning_rate=0.01,
        l2=1e-3,
        epochs=5,
        val_fraction=0.0,
        standardize=False,
    )
    result = train(cfg, x, y)
    model = build_model(cfg)
    opt = Adam(model.params, model.grads, l2=1e-3, decay_size=model.decay_size)
    loss = SoftmaxCrossEntropy()
    for _ in range(5):
        loss.forward(model.forward_into(x, True), y)
        model.backward(loss.backward())
        opt.step(0.01)
    # float32 rounding differs by ~4e-8; a missing factor shows as ~1e-4.
    np.testing.assert_allclose(result.model.params, model.params, rtol=0, atol=1e-6)


def test_early_stopping_restores_the_best_weights(digits):
    x, y, _, _ = digits
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
    result = train(cfg, x, y)
    assert result.stopped_early and len(result.history) < 40
    assert result.best_epoch < len(result.history)
    best = result.history[result.best_epoch - 1]
    accs = [r.val_accuracy for r in result.history]
    assert best.val_accuracy == max(accs)
    assert all(a <= best.val_accuracy for a in accs[result.best_epoch :])
    _, val_idx = validation_split(y, cfg)
    val_loss, val_acc = evaluate_logits(result.model, x[val_idx], y[val_idx])
    assert val_acc == best.val_accuracy  # the returned model IS the best epoch's
    assert val_loss == pytest.approx(best.val_loss, rel=1e-6)


def test_on_epoch_exception_stops_training(digits):
    x, y, _, _ = digits
    seen = []

    def stop(record: EpochRecord) -> None:
        seen.append(record.epoch)
        if record.epoch == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        train(small(epochs=5), x[:500], y[:500], on_epoch=stop)
    assert seen == [1, 2]


def test_stratified_split_keeps_class_balance():
    y = np.repeat(np.arange(10), [100, 200, 50, 50, 50, 50, 50, 50, 50, 350])
    train_idx, val_idx = stratified_split(y, 0.1, np.random.default_rng(0))
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert len(train_idx) + len(val_idx) == len(y)
    np.testing.assert_array_equal(np.bincount(y[val_idx]), [10, 20, 5, 5, 5, 5, 5, 5, 5, 35])
    assert len(stratified_split(y, 0.0, np.random.default_rng(0))[1]) == 0


def test_every_optimizer_and_schedule_learns(digits):
    x, y, _, _ = digits
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
        result = train(small(epochs=6, **extra), x, y)
        assert result.history[-1].val_accuracy > 0.78, (extra, result.history[-1])


def test_progress_bar_and_bad_inputs(digits, capsys):
    x, y, _, _ = digits
    train(small(epochs=1), x[:200], y[:200], progress=True)
    assert "epoch 1/1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="validation split"):
        train(small(val_fraction=0.0, early_stopping_patience=2), x[:200], y[:200])
    with pytest.raises(ValueError, match="n_classes"):
        train(small(), x[:20], np.full(20, 12))
    with pytest.raises(ValueError, match="expected x"):
        train(small(), x[:20], y[:19])


def test_divergence_is_an_error_not_silent_nan(digits):
    x, y, _, _ = digits
    seen = []
    cfg = small(optimizer="sgd", learning_rate=10.0, lr_schedule="constant", dropout=0.0, epochs=5)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="diverged"):
        train(cfg, x[:500], y[:500], on_epoch=seen.append)
    assert seen and not np.isfinite(seen[-1].train_loss)


@pytest.mark.parametrize("preset", ["default", "seed-basic", "seed-deep", "best"])
def test_every_preset_trains(digits, preset):
    """Each preset's architecture/optimizer/augmentation combination runs end to end."""
    x, y, x_test, y_test = digits
    epochs = 40 if preset == "seed-basic" else 2  # full-batch GD: one step per epoch
    result = train(TrainConfig(preset=preset, epochs=epochs), x[:1000], y[:1000])
    assert len(result.history) == epochs
    assert np.isfinite(result.history[-1].train_loss)
    assert float(np.mean(result.model.predict(x_test) == y_test)) > 0.2
