"""Softmax cross-entropy: values, stability, gradients with and without label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from shared.nn.losses import SoftmaxCrossEntropy, cross_entropy, log_softmax
from tests.nn_support import softmax


def _numeric(loss_fn, logits, y, eps=1e-6):
    grad = np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        old = logits[i]
        logits[i] = old + eps
        up = loss_fn.forward(logits, y)
        logits[i] = old - eps
        down = loss_fn.forward(logits, y)
        logits[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_gradient_matches_finite_differences(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 3
    y = rng.integers(0, 4, 5)
    loss_fn = SoftmaxCrossEntropy(smoothing)
    loss_fn.forward(logits, y)
    analytic = loss_fn.backward().copy()
    np.testing.assert_allclose(analytic, _numeric(loss_fn, logits, y), rtol=1e-6, atol=1e-9)


def test_gradient_is_p_minus_smoothed_target_over_n():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    loss_fn = SoftmaxCrossEntropy(0.3)
    loss_fn.forward(logits, y)
    target = np.full((2, 3), 0.1)
    target[[0, 1], y] += 0.7
    np.testing.assert_allclose(loss_fn.backward(), (softmax(logits) - target) / 2)


def test_values_plain_and_smoothed():
    logits = np.array([[2.0, 0.0, -1.0]])
    logp = logits[0] - np.log(np.exp(logits[0]).sum())
    plain = SoftmaxCrossEntropy().forward(logits, np.array([0]))
    assert plain == pytest.approx(-logp[0])
    smoothed = SoftmaxCrossEntropy(0.2).forward(logits, np.array([0]))
    assert smoothed == pytest.approx(-(0.8 * logp[0] + 0.2 * logp.mean()))
    assert cross_entropy(logits, np.array([0])) == pytest.approx(-logp[0])


def test_stable_for_huge_logits_in_float32():
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, -3e4, -3e4]], np.float32)
    # Underflow of exp(-huge) to 0 is expected and harmless; overflow/NaN are not.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss_fn = SoftmaxCrossEntropy()
        loss = loss_fn.forward(logits, np.array([0, 1]))
        grad = loss_fn.backward()
        p = softmax(logits)
        lp = log_softmax(logits)
    assert loss == pytest.approx(np.log(3) / 2)
    assert np.isfinite(grad).all() and grad.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    assert np.isfinite(lp[0, 0]) and lp[0, 1] == pytest.approx(-2e4)


def test_backward_needs_forward():
    with pytest.raises(RuntimeError):
        SoftmaxCrossEntropy().backward()
