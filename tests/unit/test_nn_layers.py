"""Finite-difference gradient checks (float64) for every layer and activation, plus dropout."""

from __future__ import annotations

import numpy as np
import pytest

from shared.nn.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from shared.nn.layers import BatchNorm1d, Dense, Dropout, Standardize
from shared.nn.model import Sequential
from tests.nn_support import check_layer, check_network

F64 = np.float64


@pytest.fixture
def x() -> np.ndarray:
    # Entries kept away from 0 so ReLU's kink never sits inside the finite-difference step.
    rng = np.random.default_rng(0)
    v = rng.standard_normal((6, 5))
    return v + np.sign(v) * 0.1


def test_dense_gradients(x):
    layer = Dense(5, 4, rng=np.random.default_rng(2), dtype=F64)
    layer.b[:] = np.random.default_rng(3).standard_normal(4)
    check_layer(layer, x)


def test_dense_without_bias_and_skipped_input_grad(x):
    layer = Dense(5, 3, bias=False, init="xavier", rng=np.random.default_rng(2), dtype=F64)
    assert layer.trainable == ("W",)
    check_layer(layer, x)
    layer.forward(x, True)
    assert layer.backward(np.ones((6, 3)), need_input_grad=False) is None
    np.testing.assert_allclose(layer.dW, x.T @ np.ones((6, 3)))


def test_init_scales():
    rng = np.random.default_rng(0)
    he = Dense(1000, 500, init="he", rng=rng)
    xavier = Dense(1000, 500, init="xavier", rng=rng)
    assert he.W.dtype == np.float32
    assert abs(he.W.std() - np.sqrt(2 / 1000)) < 0.002
    limit = np.sqrt(6 / 1500)
    assert np.abs(xavier.W).max() <= limit
    assert abs(xavier.W.std() - limit / np.sqrt(3)) < 0.002


@pytest.mark.parametrize(
    "make",
    [lambda: ReLU(F64), lambda: LeakyReLU(0.1, F64), lambda: Sigmoid(F64), lambda: Tanh(F64)],
)
def test_activation_gradients(make, x):
    check_layer(make(), x)


def test_activation_values():
    v = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]], np.float32)
    np.testing.assert_array_equal(ReLU().forward(v, False), [[0, 0, 0, 0.5, 3]])
    np.testing.assert_allclose(LeakyReLU(0.1).forward(v, False), [[-0.2, -0.05, 0, 0.5, 3]])
    np.testing.assert_allclose(Sigmoid().forward(v, False), 1 / (1 + np.exp(-v)), rtol=1e-6)
    np.testing.assert_allclose(Tanh().forward(v, False), np.tanh(v), rtol=1e-6)


def test_sigmoid_is_stable_for_huge_inputs():
    with np.errstate(all="raise"):
        out = Sigmoid().forward(np.array([[-1e4, -100.0, 100.0, 1e4]], np.float32), False)
    np.testing.assert_allclose(out, [[0, 0, 1, 1]], atol=1e-30)


def test_batchnorm_gradients_train_mode(x):
    layer = BatchNorm1d(5, dtype=F64)
    layer.gamma[:] = [0.5, 1.5, -1.0, 2.0, 1.0]
    layer.beta[:] = [0.1, -0.2, 0.3, 0.0, 1.0]
    check_layer(layer, x)


def test_batchnorm_normalises_and_tracks_running_stats():
    rng = np.random.default_rng(0)
    layer = BatchNorm1d(3, momentum=0.5)
    data = (rng.standard_normal((256, 3)) * [1, 2, 3] + [5, -1, 0]).astype(np.float32)
    out = layer.forward(data, True)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running_mean, 0.5 * data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.5 + 0.5 * data.var(0, ddof=1), rtol=1e-5)
    for _ in range(30):
        layer.forward(data, True)
    # Inference uses the running statistics, which have converged to the data's.
    np.testing.assert_allclose(layer.forward(data, False), out, atol=1e-2)


def test_standardize_subtracts_mean_and_passes_gradient(x):
    mean = np.arange(5.0)
    layer = Standardize(mean, dtype=F64)
    np.testing.assert_allclose(layer.forward(x, False), x - mean)
    check_layer(layer, x)


def test_dropout_gradient_with_fixed_mask(x):
    layer = Dropout(0.4, dtype=F64)
    check_layer(layer, x, before_forward=lambda: setattr(layer, "rng", np.random.default_rng(7)))


def test_dropout_p_is_drop_probability_and_keeps_expectation():
    layer = Dropout(0.3, rng=np.random.default_rng(0))
    ones = np.ones((400, 500), np.float32)
    out = layer.forward(ones, True)
    dropped = np.mean(out == 0)
    assert abs(dropped - 0.3) < 0.005  # p is the DROP probability
    kept = out[out != 0]
    np.testing.assert_allclose(kept, 1 / layer.keep)  # inverted: survivors scaled by 1/q
    assert abs(out.mean() - 1.0) < 0.01  # expectation preserved
    # Backward routes the gradient through the same mask and scale.
    np.testing.assert_array_equal(layer.backward(ones), out)
    # Inference is the identity, no rescaling.
    np.testing.assert_array_equal(layer.forward(ones, False), ones)


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match="drop probability"):
        Dropout(1.0)


def test_sequential_gradient_end_to_end():
    """A small net with every layer type, loss included: dL/dparams and dL/dx vs differences."""
    rng = np.random.default_rng(0)
    layers = [
        Standardize(rng.standard_normal(4) * 0.1),
        Dense(4, 6, rng=rng),
        BatchNorm1d(6),
        LeakyReLU(0.1),
        Dense(6, 5, init="xavier", rng=rng),
        Tanh(),
        Dense(5, 3, init="xavier", rng=rng),
    ]
    model = Sequential(layers, input_size=4).astype(F64)
    x = rng.standard_normal((7, 4))
    y = rng.integers(0, 3, 7)
    check_network(model, x, y)


def test_sequential_flat_parameters_are_views():
    model = Sequential([Dense(3, 4), ReLU(), Dense(4, 2)], input_size=3)
    first = model.layers[0]
    assert np.shares_memory(first.W, model.params)
    assert np.shares_memory(first.dW, model.grads)
    # Weights (decayed) come first: 3*4 + 4*2 entries, then the biases.
    assert model.decay_size == 20 and model.n_params == 20 + 4 + 2
    model.params[:] = 0
    assert not first.W.any()
