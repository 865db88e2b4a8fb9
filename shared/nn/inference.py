"""The inference-mode forward pass: every prediction (evaluation, validation during training, the
training pipeline's test metrics, the inference service) goes through `InferencePlan`.

It checks nothing: callers hand it float32 [N, model.input_size] with pixels in [0, 1] (the
inference service's decoders and the dataset loaders guarantee that), so a request pays for no
check twice.

Why it is folded: serving answers mostly single images. For one row the arithmetic is tiny and the
cost is the number of NumPy calls, each of which touches its own code and arrays — and between
two requests a gunicorn worker's caches have been swept by the network stack and the other
worker, so every extra call pays a cold-cache penalty (measured for the default 784-512-256-10
model, 1 BLAS thread: a layer-by-layer inference pass 95 µs warm / 464 µs after a cache
sweep, this plan 72 / 375; benchmarks/serving.py measures the effect over HTTP).

What is folded, all exact algebra in inference mode:

* Standardize then Dense:   (x - mean) @ W + b  =  x @ W + (b - mean @ W)
* Dense then BatchNorm1d:   ((x @ W + b) - mu) * s + beta  =  x @ (W * s) + ((b - mu) * s + beta),
  with s = gamma / sqrt(var + eps)
* BatchNorm2d (per channel) is the same x * s + shift, broadcast over each channel's pixels;
* Dropout is the identity at inference and disappears;
* ReLU and LeakyReLU run in place on the layer's output; the softmax runs in place on the logits.

Only the rounding order changes: probabilities agree with the layer-by-layer pass to ~1e-6
(tests/unit/test_nn_inference.py). The plan copies only the arrays it rewrites (biases, BN-scaled
weights); other weights are shared with the model, never modified, and no buffer is kept between
calls, so one plan may serve several threads at once.

Convolutional layers, pooling and reshapes run their own inference-mode forward. A Conv2D's im2col
matrix is large per row (k*k*C values per output pixel), so a plan of a model with Conv2D layers
predicts fewer rows per chunk (`chunk_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from shared.nn.activations import LeakyReLU, ReLU
from shared.nn.conv import Conv2D
from shared.nn.layers import BatchNorm1d, BatchNorm2d, Dense, Dropout, Layer, Standardize
from shared.nn.reshape import Flatten, Reshape


class Network(Protocol):
    """What a plan reads of a model: `shared.nn.model.Sequential` (which builds plans, so this
    module names the shape it needs rather than importing the class back)."""

    input_size: int
    dtype: np.dtype
    layers: list[Layer]


#: Rows per chunk: bounds memory for big inputs, keeps BLAS efficient.
PREDICT_CHUNK = 4096
#: A convolutional model's chunk keeps its largest im2col matrix within this many floats (16 MB):
#: smaller chunks stay in cache, which pays more than their extra NumPy calls cost (conv5x5x32 ->
#: pool -> conv5x5x64 on 10k MNIST images, 1 thread: 1.5-1.6 s CPU in chunks of 32-64 rows,
#: 2.1 s in chunks of 327).
IM2COL_FLOATS = 1 << 22

#: One step of the plan: takes the running activation, returns the next (in place when it can).
Step = Callable[[np.ndarray], np.ndarray]


def _affine(weight: np.ndarray, bias: np.ndarray | None) -> Step:
    def step(h: np.ndarray) -> np.ndarray:
        out = h @ weight
        if bias is not None:
            out += bias
        return out

    return step


def _shift(mean: np.ndarray) -> Step:
    return lambda h: h - mean


def _scale_shift(scale: np.ndarray, shift: np.ndarray) -> Step:
    def step(h: np.ndarray) -> np.ndarray:
        out = h * scale
        out += shift
        return out

    return step


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0, out=h)


def _leaky(alpha: float) -> Step:
    def step(h: np.ndarray) -> np.ndarray:
        return np.maximum(h, h * alpha, out=h)

    return step


_IN_PLACE = (_relu,)  # plus every _leaky step (marked below)


def _generic(layer: Layer) -> Step:
    return lambda h: layer.forward(h, False)


class InferencePlan:
    """A `Sequential`'s inference-mode forward pass, with the folds listed above.

    A snapshot: built from the model's current weights (the unfolded ones are shared, not
    copied), so build a new plan after the weights change.
    """

    def __init__(self, model: Network) -> None:
        self.input_size = model.input_size
        self.dtype = model.dtype
        self.chunk = chunk_rows(model)
        self.steps: list[Step] = []
        layers = [layer for layer in model.layers if not isinstance(layer, Dropout)]
        pending_mean: np.ndarray | None = None  # a Standardize waiting for the next Dense
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Standardize):
                if pending_mean is not None:
                    self.steps.append(_shift(pending_mean))
                pending_mean = layer.mean
            elif isinstance(layer, Dense):
                weight, bias = layer.W, (layer.b if layer.use_bias else None)
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(nxt, BatchNorm1d):  # the only fold that rewrites the weights
                    scale, shift = nxt.inference_affine()
                    weight = (layer.W.astype(np.float64) * scale).astype(self.dtype)
                    bias = (0.0 if bias is None else bias.astype(np.float64)) * scale + shift
                    i += 1
                if pending_mean is not None:
                    folded = pending_mean.astype(np.float64) @ weight.astype(np.float64)
                    bias = (0.0 if bias is None else np.asarray(bias, np.float64)) - folded
                    pending_mean = None
                self.steps.append(
                    _affine(weight, None if bias is None else np.asarray(bias, dtype=self.dtype))
                )
            else:
                if pending_mean is not None:
                    self.steps.append(_shift(pending_mean))
                    pending_mean = None
                if isinstance(layer, BatchNorm1d):
                    scale, shift = layer.inference_affine()
                    per_channel = (-1, 1, 1) if isinstance(layer, BatchNorm2d) else (-1,)
                    self.steps.append(
                        _scale_shift(
                            scale.astype(self.dtype).reshape(per_channel),
                            shift.astype(self.dtype).reshape(per_channel),
                        )
                    )
                elif isinstance(layer, ReLU):
                    self.steps.append(_relu)
                elif isinstance(layer, LeakyReLU):
                    step = _leaky(layer.dtype.type(layer.alpha))
                    step.in_place = True  # type: ignore[attr-defined]
                    self.steps.append(step)
                else:
                    step = _generic(layer)
                    step.view = isinstance(layer, Reshape | Flatten)  # type: ignore[attr-defined]
                    self.steps.append(step)
            i += 1
        if pending_mean is not None:
            self.steps.append(_shift(pending_mean))
        # In-place steps must never write into the caller's array: copy first if one leads
        # (after reshapes, which may return views of it).
        first = next((step for step in self.steps if not getattr(step, "view", False)), None)
        self._copy_input = first is None or first in _IN_PLACE or getattr(first, "in_place", False)

    def logits(self, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Logits [N, classes] of x [N, input_size], `chunk` rows (default `self.chunk`) at a
        time."""
        chunk = self.chunk if chunk is None else chunk
        if x.shape[0] <= chunk:
            return self._logits(x)
        return np.concatenate([self._logits(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])

    def predict_proba(self, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Class probabilities [N, classes] of x [N, input_size], `chunk` rows (default
        `self.chunk`) at a time so a large batch never holds more than one chunk's activations."""
        chunk = self.chunk if chunk is None else chunk
        if x.shape[0] <= chunk:
            return self._softmax(self._logits(x))
        return np.concatenate(
            [self._softmax(self._logits(x[i : i + chunk])) for i in range(0, x.shape[0], chunk)]
        )

    def _logits(self, x: np.ndarray) -> np.ndarray:
        h = x.copy() if self._copy_input else x
        for step in self.steps:
            h = step(h)
        return h

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        """Row-wise softmax in place (numerically stable: the row max is subtracted first)."""
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z


def chunk_rows(model: Network) -> int:
    """Rows per forward pass: PREDICT_CHUNK, or for a model with Conv2D layers as many as keep
    the largest im2col matrix (a k x k x C window per output pixel) within IM2COL_FLOATS."""
    shape: tuple[int, ...] = (model.input_size,)
    rows = PREDICT_CHUNK
    for layer in model.layers:
        out = layer.output_shape(shape)
        if isinstance(layer, Conv2D):
            per_row = math.prod(out[1:]) * layer.kernel_size**2 * shape[0]
            rows = min(rows, max(1, IM2COL_FLOATS // per_row))
        shape = out
    return rows
