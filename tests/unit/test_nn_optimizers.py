"""Optimizer steps against hand-computed values (2-3 steps each)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.nn.optimizers import (
    SGD,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    RMSprop,
    clip_grad_norm,
    make_optimizer,
)


def run(opt_cls, grads_per_step, p0, lr, **kw):
    """Take one step per gradient, rewriting grads each time as a backward pass would."""
    p = np.array(p0, np.float64)
    g = np.zeros_like(p)
    opt = opt_cls(p, g, **kw)
    trace = []
    for grad in grads_per_step:
        g[:] = grad
        opt.step(lr)
        trace.append(p.copy())
    return trace


def test_sgd():
    trace = run(SGD, [[0.5, 0.25], [1.0, -1.0]], [1.0, -2.0], 0.1)
    np.testing.assert_allclose(trace, [[0.95, -2.025], [0.85, -1.925]])


def test_momentum():  # v = 0.9 v + g; p -= lr v
    trace = run(Momentum, [[1.0]] * 3, [0.0], 0.1, momentum=0.9)
    np.testing.assert_allclose(np.ravel(trace), [-0.1, -0.29, -0.561])


def test_nesterov():  # v = 0.9 v + g; p -= lr (g + 0.9 v)
    trace = run(Nesterov, [[1.0]] * 2, [0.0], 0.1, momentum=0.9)
    np.testing.assert_allclose(np.ravel(trace), [-0.19, -0.19 - 0.1 * (1 + 0.9 * 1.9)])


def test_rmsprop():  # s = 0.9 s + 0.1 g^2; p -= lr g / (sqrt(s) + eps)
    trace = run(RMSprop, [[2.0]] * 2, [0.0], 0.01)
    p1 = -0.01 * 2 / (np.sqrt(0.4) + 1e-8)
    p2 = p1 - 0.01 * 2 / (np.sqrt(0.76) + 1e-8)
    np.testing.assert_allclose(np.ravel(trace), [p1, p2], rtol=1e-12)


def adam_reference(grads, p, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    """Textbook Adam(W), written as in the paper."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p)
    return out


def test_adam_three_steps():
    grads = [1.0, -2.0, 0.5]
    trace = run(Adam, [[g] for g in grads], [0.0], 0.1)
    np.testing.assert_allclose(np.ravel(trace), adam_reference(grads, 0.0, 0.1), rtol=1e-12)
    # First step of Adam moves by ~lr regardless of the gradient's scale; second by hand:
    assert trace[0][0] == pytest.approx(-0.1)
    m2, v2 = (0.09 - 0.2) / 0.19, (0.000999 + 0.004) / (1 - 0.999**2)
    assert trace[1][0] == pytest.approx(-0.1 - 0.1 * m2 / np.sqrt(v2), rel=1e-7)  # eps ignored


def test_adam_state_is_the_papers_m_and_v_by_hand():
    """Two steps of Algorithm 1 written out with numbers (b1 0.9, b2 0.999, eps 1e-8, lr 0.01)."""
    p, g = np.array([1.0, -1.0]), np.zeros(2)
    opt = Adam(p, g)
    g[:] = [0.2, -4.0]
    opt.step(0.01)
    # m1 = 0.1 g, v1 = 0.001 g^2; m_hat = g, v_hat = g^2: the step is lr * g / (|g| + eps)
    np.testing.assert_allclose(opt.m, [0.02, -0.4], rtol=1e-12)
    np.testing.assert_allclose(opt.v, [0.00004, 0.016], rtol=1e-12)
    np.testing.assert_allclose(p, [1.0 - 0.01 * 0.2 / (0.2 + 1e-8), -1.0 + 0.01 * 4 / (4 + 1e-8)])
    p1 = p.copy()
    g[:] = [0.4, 2.0]
    opt.step(0.01)
    m2 = np.array([0.9 * 0.02 + 0.1 * 0.4, 0.9 * -0.4 + 0.1 * 2.0])  # [0.058, -0.16]
    v2 = np.array([0.999 * 0.00004 + 0.001 * 0.16, 0.999 * 0.016 + 0.001 * 4.0])
    np.testing.assert_allclose(opt.m, m2, rtol=1e-12)
    np.testing.assert_allclose(opt.v, v2, rtol=1e-12)
    m_hat, v_hat = m2 / (1 - 0.9**2), v2 / (1 - 0.999**2)
    np.testing.assert_allclose(p, p1 - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-12)


def test_adam_many_steps_with_clipping_and_l2_match_the_reference():
    """Clipping and L2 only change the gradient Adam sees; 40 steps, widely scaled gradients."""
    rng = np.random.default_rng(4)
    grads = rng.standard_normal((40, 3)) * np.array([1e-3, 1.0, 50.0])
    p, g = np.array([0.5, -1.0, 2.0]), np.zeros(3)
    opt = Adam(p, g, beta2=0.6, l2=0.1, grad_clip=20.0, decay_size=2)
    q, m, v = p.copy(), np.zeros(3), np.zeros(3)
    for t, grad in enumerate(grads, start=1):
        g[:] = grad
        opt.step(0.05)
        ref = grad.copy()
        norm = np.linalg.norm(ref)
        ref *= min(1.0, 20.0 / (norm + 1e-12))
        ref[:2] += 0.1 * q[:2]
        m = 0.9 * m + 0.1 * ref
        v = 0.6 * v + 0.4 * ref**2
        q = q - 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.6**t)) + 1e-8)
        np.testing.assert_allclose(p, q, rtol=1e-10)


def test_adamw_decoupled_decay_only_on_weights():
    grads = [[0.0, 0.0], [1.0, 1.0]]
    # decay_size=1: the first entry is a weight, the second a bias (never decayed).
    trace = run(AdamW, grads, [1.0, 1.0], 0.1, weight_decay=0.1, decay_size=1)
    assert trace[0][0] == pytest.approx(0.99)  # g = 0: only the decay moves the weight
    assert trace[0][1] == pytest.approx(1.0)
    ref_w = adam_reference([0.0, 1.0], 1.0, 0.1, wd=0.1)
    ref_b = adam_reference([0.0, 1.0], 1.0, 0.1)
    np.testing.assert_allclose([t[0] for t in trace], ref_w, rtol=1e-12)
    np.testing.assert_allclose([t[1] for t in trace], ref_b, rtol=1e-12)


def test_l2_is_added_to_the_gradient_for_weights_only():
    trace = run(SGD, [[1.0, 1.0]] * 2, [2.0, 2.0], 0.1, l2=0.5, decay_size=1)
    # weight: g + 0.5 w -> 2.0 - 0.1 * 2.0 = 1.8 ; then 1.8 - 0.1 * (1 + 0.9) = 1.61
    np.testing.assert_allclose([t[0] for t in trace], [1.8, 1.61])
    np.testing.assert_allclose([t[1] for t in trace], [1.9, 1.8])
    # Same coupled L2 through Adam: it is just part of the gradient Adam sees.
    trace = run(Adam, [[1.0]] * 2, [2.0], 0.1, l2=0.5)
    g1, g2 = 1 + 0.5 * 2.0, None
    p1 = adam_reference([g1], 2.0, 0.1)[0]
    g2 = 1 + 0.5 * p1
    np.testing.assert_allclose(np.ravel(trace), adam_reference([g1, g2], 2.0, 0.1), rtol=1e-12)


def test_global_norm_clipping():
    g = np.array([3.0, 4.0])
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8])
    g = np.array([0.3, 0.4])
    clip_grad_norm(g, 1.0)
    np.testing.assert_array_equal(g, [0.3, 0.4])  # below the limit: untouched
    trace = run(SGD, [[3.0, 4.0], [0.3, 0.4]], [0.0, 0.0], 1.0, grad_clip=1.0)
    np.testing.assert_allclose(trace, [[-0.6, -0.8], [-0.9, -1.2]])


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_float32_in_place_without_allocation(name):
    p = np.random.default_rng(0).standard_normal(1000, dtype=np.float32)
    g = np.ones_like(p)
    before = p.ctypes.data
    opt = make_optimizer(name, p, g, l2=1e-3, weight_decay=1e-2, decay_size=500, grad_clip=10.0)
    for _ in range(3):
        opt.step(1e-2)
    assert p.dtype == np.float32 and p.ctypes.data == before
    assert np.isfinite(p).all()
    state = [a for a in vars(opt).values() if isinstance(a, np.ndarray)]  # v, s, m, buffers
    assert len(state) >= 2 and all(a.dtype == np.float32 for a in state)


def test_rejects_non_flat_or_mismatched_arrays():
    with pytest.raises(ValueError):
        SGD(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        SGD(np.zeros(3, np.float32), np.zeros(3))
