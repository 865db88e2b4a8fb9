"""InferencePlan, the one inference-mode forward pass: its folds give the probabilities of the
layer-by-layer definition (each layer's forward in inference mode, then softmax)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.nn.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from shared.nn.inference import InferencePlan
from shared.nn.layers import BatchNorm1d, Dense, Dropout, Standardize
from shared.nn.model import Sequential
from tests.nn_support import randomise_trained_state, softmax


def _check(model: Sequential, n: int = 64, seed: int = 0) -> InferencePlan:
    rng = np.random.default_rng(seed)
    randomise_trained_state(model, rng)
    x = rng.random((n, model.input_size), dtype=np.float32)
    before = x.copy()
    plan = InferencePlan(model)
    got = plan.predict_proba(x)
    want = softmax(model.forward(x.copy(), training=False).astype(np.float64))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.98  # ties may flip
    np.testing.assert_array_equal(x, before)  # the caller's array is never written
    return plan


def _rng_dense(i: int, o: int, seed: int, **kw) -> Dense:
    return Dense(i, o, rng=np.random.default_rng(seed), **kw)


def test_default_architecture_folds_standardize_into_the_first_dense():
    model = TrainConfig(hidden_layers=[64, 32]).build_model(mean=np.full(784, 0.13, np.float32))
    plan = _check(model)
    # standardize + dense folded into one affine step: dense, relu, dense, relu, dense
    assert len(plan.steps) == 5


def test_batch_norm_after_dense_is_folded_and_dropout_disappears():
    cfg = TrainConfig(hidden_layers=[48, 24], batch_norm=True, dropout=0.3, activation="tanh")
    model = cfg.build_model(mean=np.full(784, 0.2, np.float32))
    plan = _check(model)
    kinds = [layer.kind for layer in model.layers]
    assert "dropout" in kinds and "batchnorm1d" in kinds
    assert len(plan.steps) == 5  # (std+dense+bn), tanh, (dense+bn), tanh, dense


@pytest.mark.parametrize(
    "layers",
    [
        # every activation, a bias-free dense before batch norm, leaky in place
        lambda: [
            Standardize(np.full(20, 0.5, np.float32)),
            _rng_dense(20, 16, 1, bias=False),
            BatchNorm1d(16),
            LeakyReLU(0.1),
            _rng_dense(16, 12, 2),
            Sigmoid(),
            Dropout(0.5),
            _rng_dense(12, 8, 3),
            Tanh(),
            _rng_dense(8, 5, 4),
        ],
        # batch norm that does not follow a dense layer; standardize not followed by dense
        lambda: [
            Standardize(np.full(20, 0.3, np.float32)),
            BatchNorm1d(20),
            _rng_dense(20, 10, 5),
            ReLU(),
            BatchNorm1d(10),
            _rng_dense(10, 4, 6),
        ],
        # an in-place activation first: the input must be copied, not overwritten
        lambda: [ReLU(), _rng_dense(20, 6, 7)],
        lambda: [LeakyReLU(0.2), _rng_dense(20, 6, 8)],
        # no affine layer at all
        lambda: [Standardize(np.full(20, 0.5, np.float32))],
        lambda: [Dropout(0.1), Tanh()],
    ],
)
def test_any_layer_sequence_matches_the_model(layers):
    _check(Sequential(layers(), input_size=20))


def test_large_batches_are_chunked_with_the_same_result():
    model = TrainConfig(hidden_layers=[16]).build_model(mean=np.full(784, 0.1, np.float32))
    plan = InferencePlan(model)
    x = np.random.default_rng(3).random((50, 784), dtype=np.float32)
    whole = plan.predict_proba(x)
    # float32 GEMMs of 7 and 50 rows may round differently (BLAS picks kernels by shape)
    np.testing.assert_allclose(plan.predict_proba(x, chunk=7), whole, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-5)


def test_input_size_comes_from_the_model():
    model = TrainConfig(hidden_layers=[8]).build_model(input_size=100, n_classes=4)
    plan = InferencePlan(model)
    assert model.input_size == plan.input_size == 100
    assert plan.predict_proba(np.zeros((3, 100), np.float32)).shape == (3, 4)


def test_extreme_logits_stay_finite():
    dense = _rng_dense(4, 3, 9)
    dense.W[...] = [[1e4, -1e4, 0]] * 4
    plan = InferencePlan(Sequential([dense], input_size=4))
    proba = plan.predict_proba(np.ones((2, 4), np.float32))
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba[:, 0], 1.0)
