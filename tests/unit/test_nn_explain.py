"""Integrated gradients and the input gradient they are built on.

* `Sequential.input_gradient` is checked against central finite differences of the *served*
  function (`InferencePlan` logits), on models with batch norm and dropout: so it differentiates
  the inference-mode function, not the training one;
* it leaves the model exactly as it was (parameters, gradients, running statistics, dropout
  streams), so an explanation can never leak into training;
* completeness: sum_i IG_i = F(x) - F(x') within |gap| <= 1e-2 * (|F(x) - F(x')| + 1) at 64
  trapezoid steps for a ReLU network (float32 and float64), much tighter for a smooth one, and the
  gap shrinks as the steps grow; a linear model's attributions are exact.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.nn import explain
from shared.nn.explain import integrated_gradients, trapezoid_weights
from shared.nn.inference import InferencePlan
from shared.nn.layers import BatchNorm1d, Dense, Dropout
from shared.nn.model import Sequential, build_mlp
from tests.nn_support import randomise_trained_state

#: The completeness tolerance this module promises (and the service reports against).
REL_TOL_64_STEPS = 1e-2


def _model(seed: int = 0, dtype=np.float64, **kw) -> Sequential:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0, 0.4, 20)
    model = build_mlp(
        input_size=20, hidden_layers=[16, 12], n_classes=5, mean=mean, seed=seed, **kw
    )
    randomise_trained_state(model, rng)
    return model.astype(dtype)


def _served_logits(model: Sequential, x: np.ndarray) -> np.ndarray:
    return InferencePlan(model).logits(x)


@pytest.mark.parametrize(
    "kw",
    [
        {"activation": "tanh", "batch_norm": True, "dropout": 0.3},
        {"activation": "relu", "batch_norm": True, "dropout": 0.2},
        {"activation": "sigmoid"},
        {"activation": "leaky_relu", "dropout": 0.5},
    ],
)
def test_input_gradient_matches_finite_differences_of_the_served_function(kw):
    model = _model(seed=3, **kw)
    rng = np.random.default_rng(1)
    x = rng.random((3, model.input_size))
    target = np.array([0, 2, 4])
    one_hot = np.eye(model.output_size)[target]
    logits, dx = model.input_gradient(x, one_hot)
    np.testing.assert_allclose(logits, _served_logits(model, x), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    numeric = np.empty_like(x)
    for i in range(model.input_size):
        step = np.zeros_like(x)
        step[:, i] = eps
        up = _served_logits(model, x + step)[np.arange(3), target]
        down = _served_logits(model, x - step)[np.arange(3), target]
        numeric[:, i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-5, atol=1e-7)


def test_a_batch_norm_with_no_dense_before_it_is_frozen_too():
    rng = np.random.default_rng(0)
    layers = [BatchNorm1d(6, dtype=np.float64), Dense(6, 3, rng=rng, dtype=np.float64)]
    model = Sequential(layers, input_size=6, dtype=np.float64)
    randomise_trained_state(model, rng)
    x = rng.random((4, 6))
    logits, dx = model.input_gradient(x, np.ones((4, 3)))
    np.testing.assert_allclose(logits, _served_logits(model, x), rtol=1e-12)
    # Linear: d(sum of logits)/dx = scale * (W @ 1), the same for every row.
    scale, _ = layers[0].inference_affine()
    np.testing.assert_allclose(dx, np.tile(scale * layers[1].W.sum(axis=1), (4, 1)), rtol=1e-12)


def test_input_gradient_leaves_the_model_as_it_was():
    model = _model(seed=5, dtype=np.float32, batch_norm=True, dropout=0.4)
    rng = np.random.default_rng(2)
    x = rng.random((8, model.input_size), dtype=np.float32)
    y = rng.integers(0, model.output_size, 8)
    model.forward(x, training=True)  # gradients of a training step in flight
    model.backward(np.eye(model.output_size, dtype=np.float32)[y], input_grad=False)
    params, grads = model.params.copy(), model.grads.copy()
    arrays = model.state()
    streams = [copy.deepcopy(layer.rng) for layer in model.layers if isinstance(layer, Dropout)]
    model.input_gradient(x, np.ones((8, model.output_size), np.float32))
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.grads, grads)
    for key, value in model.state().items():
        np.testing.assert_array_equal(value, arrays[key])
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    for layer, saved in zip(dropouts, streams, strict=True):
        assert layer.rng.random() == saved.random()  # no draw was taken from the stream
    # The training step's own caches are intact: its backward gives the same gradients again.
    model.backward(np.eye(model.output_size, dtype=np.float32)[y], input_grad=False)
    np.testing.assert_array_equal(model.grads, grads)


def test_trapezoid_weights_integrate_exactly_what_they_should():
    alphas, weights = trapezoid_weights(8)
    assert alphas[0] == 0 and alphas[-1] == 1 and len(alphas) == 9
    assert weights.sum() == pytest.approx(1.0)
    assert weights @ (3 * alphas + 1) == pytest.approx(2.5)  # exact for a linear integrand
    assert weights @ alphas**2 == pytest.approx(1 / 3 + 1 / (6 * 8**2))  # the rule's known error


def test_a_linear_model_is_explained_exactly():
    """F(x) = x @ W + b: IG_i = (x_i - x'_i) * W[i, t], whatever the steps."""
    rng = np.random.default_rng(0)
    dense = Dense(10, 4, rng=rng, dtype=np.float64)
    model = Sequential([dense], input_size=10, dtype=np.float64)
    x, base = rng.random((3, 10)), rng.random(10)
    out = integrated_gradients(model, x, [1, 3, 0], baseline=base, steps=1)
    np.testing.assert_allclose(out.attributions, (x - base) * dense.W[:, [1, 3, 0]].T, rtol=1e-12)
    np.testing.assert_allclose(out.completeness_gap, 0, atol=1e-12)


#: A tiny convolutional network: the same check runs through its convolutions, batch norm
#: (folded into them) and max pools.
TINY_CNN = [{"conv": 4, "kernel": 5}, {"pool": 2}, {"conv": 6, "kernel": 3, "stride": 2},
            {"pool": 2, "stride": 1}, {"dense": 16}]  # fmt: skip


@pytest.mark.parametrize("network", [None, TINY_CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_completeness_of_a_relu_network_within_the_stated_tolerance(dtype, network):
    rng = np.random.default_rng(7)
    mean = rng.uniform(0, 0.3, 784).astype(np.float32)
    if network is None:
        model = build_mlp(input_size=784, hidden_layers=[64, 32], n_classes=10, mean=mean, seed=7)
    else:
        model = TrainConfig(network=network, batch_norm=True, seed=7).build_model(mean=mean)
    randomise_trained_state(model, rng)
    model.astype(dtype)
    x = rng.random((12, 784)).astype(np.float32)
    target = _served_logits(model, x).argmax(axis=1)
    out = integrated_gradients(model, x, target, steps=64)
    assert out.attributions.shape == (12, 784)
    np.testing.assert_array_equal(out.target, target)
    served = _served_logits(model, x)[np.arange(12), target]
    np.testing.assert_allclose(out.logit, served, rtol=1e-5, atol=1e-5)
    baseline = _served_logits(model, np.zeros_like(x))[np.arange(12), target]
    np.testing.assert_allclose(out.baseline_logit, baseline, rtol=1e-5, atol=1e-5)
    relative = np.abs(out.completeness_gap) / (np.abs(out.logit_difference) + 1)
    assert relative.max() <= REL_TOL_64_STEPS, relative
    # The gap is the rule's error: far fewer steps leave more of it, far more steps less.
    coarse = integrated_gradients(model, x, target, steps=4).completeness_gap
    fine = integrated_gradients(model, x, target, steps=256).completeness_gap
    assert np.abs(fine).mean() < np.abs(out.completeness_gap).mean() < np.abs(coarse).mean()


def test_completeness_of_a_smooth_network_is_much_tighter():
    model = _model(seed=11, activation="tanh", batch_norm=True, dropout=0.3)
    x = np.random.default_rng(4).random((5, model.input_size))
    out = integrated_gradients(model, x, 2, steps=64)
    assert np.abs(out.completeness_gap).max() <= 1e-3 * (np.abs(out.logit_difference).max() + 1)


def test_baseline_equal_to_the_input_attributes_nothing():
    model = _model(seed=2)
    x = np.random.default_rng(0).random((2, model.input_size))
    out = integrated_gradients(model, x, 1, baseline=x, steps=8)
    np.testing.assert_array_equal(out.attributions, 0)
    np.testing.assert_allclose(out.logit_difference, 0, atol=1e-12)


def test_chunking_does_not_change_the_result(monkeypatch):
    model = _model(seed=9, batch_norm=True)
    rng = np.random.default_rng(3)
    x = rng.random((7, model.input_size))
    target = rng.integers(0, model.output_size, 7)
    whole = integrated_gradients(model, x, target, steps=16)
    monkeypatch.setattr(explain, "CHUNK_ROWS", 40)  # two images per pass, four passes
    chunked = integrated_gradients(model, x, target, steps=16)
    np.testing.assert_allclose(chunked.attributions, whole.attributions, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(chunked.target, target)
