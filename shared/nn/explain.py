"""Integrated gradients (Sundararajan, Taly & Yan 2017): which pixels made the model say 7.

For an input x, a baseline x' (here a black image: zeros in the [0, 1] pixel space the model
takes, i.e. minus the training mean after the model's own Standardize layer) and the logit F of
the target class, the attribution of pixel i is

    IG_i(x) = (x_i - x'_i) * integral_0^1  dF(x' + a (x - x')) / dx_i  da

and by the fundamental theorem of calculus along that straight path they add up to

    sum_i IG_i(x) = F(x) - F(x')                                  (completeness)

We integrate with the trapezoid rule over `steps` equal intervals (steps + 1 gradient
evaluations, the two ends included, so F(x) and F(x') come out of the same pass):

    IG_i ~ (x_i - x'_i) * (1/m) * [g_i(0)/2 + g_i(1/m) + ... + g_i((m-1)/m) + g_i(1)/2]

The gradients g are the layers' own backward pass (`Sequential.input_gradient`) on the
inference-mode function (dropout off, batch norm on running statistics), every image's path
points stacked into one batch, `CHUNK_ROWS` rows at a time to bound memory. For a ReLU network F
is piecewise linear along the path, so the rule's error comes from the few intervals where a unit
switches; `completeness_gap` reports it per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shared.nn.inference import chunk_rows

if TYPE_CHECKING:
    from shared.nn.model import Sequential

#: Trapezoid intervals when the caller names none.
DEFAULT_STEPS = 32
#: Path points (rows) per forward/backward pass: ~20 MB of float32 activations for 784-512-256-10;
#: fewer for a convolutional model, whose rows are bigger (`shared.nn.inference.chunk_rows`).
CHUNK_ROWS = 1024


@dataclass(frozen=True)
class Explanation:
    """Integrated-gradients attributions of a batch, with what completeness is checked against."""

    #: [N, input_size]: IG_i per image and input value.
    attributions: np.ndarray
    #: [N]: the class explained for each image.
    target: np.ndarray
    #: [N]: F_target(x), the target logit at the image (inference mode).
    logit: np.ndarray
    #: [N]: F_target(x'), the target logit at the baseline.
    baseline_logit: np.ndarray

    @property
    def logit_difference(self) -> np.ndarray:
        """[N]: F(x) - F(x'), what the attributions of each image should add up to."""
        return self.logit - self.baseline_logit

    @property
    def completeness_gap(self) -> np.ndarray:
        """[N]: sum_i IG_i - (F(x) - F(x')); the integration error (0 for the exact integral)."""
        return self.attributions.sum(axis=1) - self.logit_difference


def trapezoid_weights(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of the trapezoid rule on [0, 1] with `steps` intervals, float64:
    alphas k / steps for k = 0..steps; weights 1 / steps, halved at both ends (they sum to 1)."""
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] *= 0.5
    return alphas, weights


def integrated_gradients(
    model: Sequential,
    x: np.ndarray,
    target: int | np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
) -> Explanation:
    """Attributions of x [N, input_size] (pixels in [0, 1]) for the logit of `target` (one class
    for every image, or one per image), relative to `baseline` (None: zeros, a black image;
    else [input_size] or [N, input_size]), by the trapezoid rule with `steps` >= 1 intervals.

    Like the inference pass, it trusts its inputs (the caller validated them at the edge):
    targets are class indices in [0, classes).
    """
    n, size = x.shape
    dtype = model.dtype
    x64 = np.asarray(x, dtype=np.float64)
    base = np.zeros_like(x64) if baseline is None else np.broadcast_to(baseline, x64.shape)
    base = np.asarray(base, dtype=np.float64)
    targets = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
    alphas, weights = trapezoid_weights(steps)
    points_per_image = steps + 1
    per_chunk = max(1, min(CHUNK_ROWS, chunk_rows(model)) // points_per_image)

    attributions = np.empty((n, size), dtype=np.float64)
    logit = np.empty(n, dtype=np.float64)
    baseline_logit = np.empty(n, dtype=np.float64)
    for start in range(0, n, per_chunk):
        rows = slice(start, min(start + per_chunk, n))
        delta = x64[rows] - base[rows]  # [c, size]
        c = delta.shape[0]
        # Path points x' + a (x - x'), every image's steps + 1 of them stacked: [c * (m+1), size].
        points = base[rows, None, :] + alphas[None, :, None] * delta[:, None, :]
        one_hot = np.zeros((c * points_per_image, model.output_size), dtype=dtype)
        one_hot[np.arange(c * points_per_image), np.repeat(targets[rows], points_per_image)] = 1
        logits, grads = model.input_gradient(points.reshape(-1, size).astype(dtype), one_hot)
        # The rule's weighted sum over each image's path, accumulated in float64.
        mean_grad = np.einsum("k,ckd->cd", weights, grads.reshape(c, points_per_image, size))
        attributions[rows] = delta * mean_grad
        at_target = logits.reshape(c, points_per_image, -1)[np.arange(c), :, targets[rows]]
        logit[rows], baseline_logit[rows] = at_target[:, -1], at_target[:, 0]
    return Explanation(attributions, targets, logit, baseline_logit)
