"""Helpers for the engine's tests (shared/nn)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared.nn.conv import Conv2D
from shared.nn.layers import BatchNorm1d, Dense, Layer
from shared.nn.losses import SoftmaxCrossEntropy
from shared.nn.model import Sequential


def randomise_trained_state(model: Sequential, rng: np.random.Generator) -> None:
    """Batch-norm statistics and biases as after training (fresh ones are the identity / 0),
    so folds and derivatives are tested on non-trivial values."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm1d):
            layer.gamma[...] = rng.uniform(0.5, 2.0, layer.dim)
            layer.beta[...] = rng.normal(0, 0.5, layer.dim)
            layer.running_mean[...] = rng.normal(0, 1.0, layer.dim)
            layer.running_var[...] = rng.uniform(0.2, 3.0, layer.dim)
        if isinstance(layer, Dense | Conv2D) and layer.use_bias:
            layer.b[...] = rng.normal(0, 0.1, layer.b.shape)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable: the reference the engine's fused loss and in-place
    inference softmax are checked against (the engine itself never needs a separate one)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def identity_affine(n: int, size: int = 28) -> np.ndarray:
    """[n, 2, 3] affine maps (the augmenter's format) that leave images unchanged."""
    t = np.zeros((n, 2, 3), np.float32)
    t[:, 0, 0] = t[:, 1, 1] = 1.0
    t[:, :, 2] = (size - 1) / 2.0
    return t


def numeric_grad(f: Callable[[], float], arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every entry of arr (perturbed in place)."""
    grad = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):  # indexes arr itself, whatever its memory layout
        old = arr[i]
        arr[i] = old + eps
        up = f()
        arr[i] = old - eps
        down = f()
        arr[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_network(model: Sequential, x: np.ndarray, y: np.ndarray) -> None:
    """dL/dparams and dL/dx of a whole float64 network, loss included (label-smoothed softmax
    cross-entropy), against central differences."""
    loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)

    def loss() -> float:
        return loss_fn.forward(model.forward(x, training=True), y)

    loss()
    dx = model.backward(loss_fn.backward(), input_grad=True).copy()
    analytic = model.grads.copy()
    np.testing.assert_allclose(analytic, numeric_grad(loss, model.params), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-8)


def check_layer(layer: Layer, x: np.ndarray, before_forward: Callable[[], None] = lambda: None):
    """L = sum(forward(x) * R): compare backward(R) with finite differences for x and params."""
    rng = np.random.default_rng(1)
    before_forward()
    r = rng.standard_normal(layer.forward(x, True).shape)

    def loss() -> float:
        before_forward()
        return float(np.sum(layer.forward(x, True) * r))

    loss()
    dx = layer.backward(r.copy()).copy()
    analytic = {name: getattr(layer, "d" + name).copy() for name in layer.trainable}
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name, grad in analytic.items():
        np.testing.assert_allclose(
            grad, numeric_grad(loss, getattr(layer, name)), rtol=1e-5, atol=1e-7, err_msg=name
        )
