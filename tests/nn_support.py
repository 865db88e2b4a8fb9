"""Helpers for the engine's tests (shared/nn)."""

from __future__ import annotations

import numpy as np

from shared.nn.layers import BatchNorm1d, Dense
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
        if isinstance(layer, Dense) and layer.use_bias:
            layer.b[...] = rng.normal(0, 0.1, layer.out_features)


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
