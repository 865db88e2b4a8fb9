"""Sequential / build_mlp (through TrainConfig.build_model): architecture, spec round trip,
validation, prediction."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.nn.activations import ReLU
from shared.nn.inference import InferencePlan
from shared.nn.layers import BatchNorm1d, Dense, Dropout, Standardize
from shared.nn.model import Sequential, build_mlp


def kinds(model: Sequential) -> list[str]:
    return [layer.kind for layer in model.layers]


def test_build_model_follows_config():
    cfg = TrainConfig(hidden_layers=[32, 16], dropout=0.25, batch_norm=True, activation="tanh")
    model = cfg.build_model(mean=np.full(784, 0.1, np.float32))
    assert kinds(model) == [
        "standardize",
        "dense",
        "batchnorm1d",
        "tanh",
        "dropout",
        "dense",
        "batchnorm1d",
        "tanh",
        "dropout",
        "dense",
    ]
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [(784, 32), (32, 16), (16, 10)]
    assert not dense[0].use_bias  # batch norm's beta replaces the bias
    assert dense[0].init == "xavier" and dense[-1].use_bias
    assert model.layers[4].p == 0.25
    np.testing.assert_allclose(model.layers[0].mean, 0.1)
    assert model.params.dtype == np.float32


def test_build_model_plain_relu_without_extras():
    cfg = TrainConfig(hidden_layers=[10], dropout=0.0, standardize=False)
    model = cfg.build_model()
    assert kinds(model) == ["dense", "relu", "dense"]
    assert model.layers[0].init == "he"
    assert model.n_params == 784 * 10 + 10 + 10 * 10 + 10


def test_build_mlp_is_seeded_and_needs_no_config():
    def make(seed):
        return build_mlp(input_size=20, hidden_layers=[8], n_classes=3, dropout=0.5, seed=seed)

    a, b, c = make(1), make(1), make(2)
    assert kinds(a) == ["dense", "relu", "dropout", "dense"]
    assert (a.input_size, a.output_size) == (20, 3)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    cfg = TrainConfig(hidden_layers=[8], seed=5)
    np.testing.assert_array_equal(cfg.build_model().params, cfg.build_model().params)
    assert cfg.build_model().input_size == 784


def test_input_dropout_drops_pixels_in_training_only_and_leaves_other_streams_alone():
    def make(input_dropout):
        return build_mlp(
            input_size=400, hidden_layers=[8], n_classes=3, dropout=0.5,
            input_dropout=input_dropout, mean=np.zeros(400, np.float32), seed=3,
        )  # fmt: skip

    plain, noisy = make(0.0), make(0.25)
    assert kinds(noisy) == ["standardize", "dropout", "dense", "relu", "dropout", "dense"]
    # Same initial weights and the same hidden-layer dropout stream as without input dropout.
    np.testing.assert_array_equal(plain.params, noisy.params)
    np.testing.assert_array_equal(
        plain.layers[3].rng.bit_generator.random_raw(8),
        noisy.layers[4].rng.bit_generator.random_raw(8),
    )

    x = np.ones((50, 400), np.float32)
    dropped = noisy.layers[1].forward(x, True)
    kept = dropped != 0
    assert 0.2 < 1 - kept.mean() < 0.3  # ~25 % of the pixels zeroed, the rest scaled up
    np.testing.assert_allclose(dropped[kept], 1 / 0.75, rtol=1e-6)
    # Inference has no input dropout: both models answer the same.
    np.testing.assert_array_equal(plain.predict_proba(x), noisy.predict_proba(x))
    assert TrainConfig(hidden_layers=[8], input_dropout=0.2).build_model().layers[1].p == 0.2


def test_predict_proba_is_the_inference_plan():
    cfg = TrainConfig(hidden_layers=[16], dropout=0.5, batch_norm=True)
    model = cfg.build_model()
    x = np.random.default_rng(0).random((50, 784), dtype=np.float32)
    p = model.predict_proba(x)
    assert p.dtype == np.float32 and p.shape == (50, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    # Inference mode is deterministic (no dropout), and it is exactly the plan's pass.
    np.testing.assert_array_equal(model.predict_proba(x), p)
    np.testing.assert_array_equal(InferencePlan(model).predict_proba(x), p)
    # forward() is the training pass: dropout on, so two calls differ.
    a = model.forward(x[:5], training=True).copy()
    b = model.forward(x[:5], training=True)
    assert not np.array_equal(a, b)


def test_spec_state_round_trip_is_exact_and_json():
    cfg = TrainConfig(hidden_layers=[12, 6], dropout=0.1, batch_norm=True, activation="leaky_relu")
    model = cfg.build_model(mean=np.random.default_rng(1).random(784, dtype=np.float32))
    # Give batch norm non-trivial running statistics.
    model.forward(np.random.default_rng(2).random((64, 784), dtype=np.float32), training=True)
    spec = json.loads(json.dumps(model.spec()))
    clone = Sequential.from_spec(spec, model.state())
    x = np.random.default_rng(3).random((20, 784), dtype=np.float32)
    np.testing.assert_array_equal(clone.predict_proba(x), model.predict_proba(x))
    assert set(model.state()) >= {"0.mean", "1.W", "2.running_mean", "2.running_var"}


def _simple():
    model = Sequential(
        [Standardize(4), Dense(4, 3), ReLU(), Dropout(0.5), Dense(3, 2), BatchNorm1d(2)],
        input_size=4,
    )
    return model.spec(), model.state()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, a: s["layers"].__setitem__(1, {"type": "conv"}), "unknown type 'conv'"),
        (lambda s, a: s["layers"][1].update(in_features=5), "expected 4"),
        (lambda s, a: s["layers"][1].update(out_features=2), "declares in_features=3, expected 2"),
        (lambda s, a: s["layers"][1].update(extra=1), "exactly the fields"),
        (lambda s, a: s["layers"][1].update(bias="yes"), "'bias' must be bool"),
        (lambda s, a: s["layers"][3].update(p=1.5), "drop probability"),
        (lambda s, a: s.update(input_dim=0), "input_dim"),
        (lambda s, a: s.update(layers=[]), "non-empty"),
        (lambda s, a: s.update(output_dim=3), "output_dim"),
        (lambda s, a: a.pop("1.W"), "missing ['1.W']"),
        (lambda s, a: a.update({"9.W": np.zeros(1)}), "extra ['9.W']"),
        (lambda s, a: a.update({"1.W": np.zeros((3, 4))}), "has shape [3, 4], expected [4, 3]"),
        (lambda s, a: a.update({"1.b": np.zeros(3, np.int64)}), "expected float"),
    ],
)
def test_from_spec_rejects_inconsistent_input(mutate, message):
    spec, arrays = _simple()
    mutate(spec, arrays)
    with pytest.raises(ValueError, match=re.escape(message)):
        Sequential.from_spec(spec, arrays)


def test_load_state_restores_weights():
    model = TrainConfig(hidden_layers=[5], batch_norm=True).build_model()
    saved = model.state()
    model.params[:] = 0
    model.layers[2].running_var[:] = 7
    model.load_state(saved)
    for key, value in model.state().items():
        np.testing.assert_array_equal(value, saved[key])
