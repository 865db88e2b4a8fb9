"""Sequential / build_model: architecture from config, spec round trip, validation, prediction."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.nn.activations import ReLU
from shared.nn.layers import BatchNorm1d, Dense, Dropout, Standardize
from shared.nn.model import Sequential, build_model


def kinds(model: Sequential) -> list[str]:
    return [layer.kind for layer in model.layers]


def test_build_model_follows_config():
    cfg = TrainConfig(hidden_layers=[32, 16], dropout=0.25, batch_norm=True, activation="tanh")
    model = build_model(cfg, mean=np.full(784, 0.1, np.float32))
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
    model = build_model(cfg)
    assert kinds(model) == ["dense", "relu", "dense"]
    assert model.layers[0].init == "he"
    assert model.n_params == 784 * 10 + 10 + 10 * 10 + 10


def test_build_model_is_seeded():
    cfg = TrainConfig(hidden_layers=[8])
    a, b, c = build_model(cfg, seed=1), build_model(cfg, seed=1), build_model(cfg, seed=2)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_predict_proba_chunks_and_inference_mode():
    cfg = TrainConfig(hidden_layers=[16], dropout=0.5, batch_norm=True)
    model = build_model(cfg)
    x = np.random.default_rng(0).random((50, 784), dtype=np.float32)
    p = model.predict_proba(x)
    assert p.dtype == np.float32 and p.shape == (50, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    # Chunking changes nothing, and inference mode is deterministic (no dropout).
    np.testing.assert_allclose(model.predict_proba(x, chunk=7), p, rtol=1e-6)
    np.testing.assert_array_equal(model.predict_proba(x), p)
    pred = model.predict(x)
    assert pred.dtype == np.int64 and (pred == p.argmax(1)).all()
    # forward() hands back arrays the caller owns, in both modes.
    a = model.forward(x[:5], training=True)
    b = model.forward(x[5:10], training=True)
    assert not np.shares_memory(a, b)


def test_predict_rejects_wrong_shapes():
    model = build_model(TrainConfig(hidden_layers=[4]))
    with pytest.raises(ValueError, match=r"\[N, 784\]"):
        model.predict_proba(np.zeros((3, 783), np.float32))
    with pytest.raises(ValueError):
        model.predict(np.zeros(784, np.float32))
    with pytest.raises(ValueError, match="divide by 255"):
        model.predict(np.zeros((2, 784), np.uint8))


def test_spec_state_round_trip_is_exact_and_json():
    cfg = TrainConfig(hidden_layers=[12, 6], dropout=0.1, batch_norm=True, activation="leaky_relu")
    model = build_model(cfg, mean=np.random.default_rng(1).random(784, dtype=np.float32))
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
        input_dim=4,
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
    model = build_model(TrainConfig(hidden_layers=[5], batch_norm=True))
    saved = model.state()
    model.params[:] = 0
    model.layers[2].running_var[:] = 7
    model.load_state(saved)
    for key, value in model.state().items():
        np.testing.assert_array_equal(value, saved[key])
