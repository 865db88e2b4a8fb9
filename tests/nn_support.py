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
