"""Element-wise activations, any shape. Each keeps what its derivative needs and nothing more.

Buffers follow the input's memory layout (`Layer._out_like`): channel-last image batches from
the conv layers stay channel-last, so every ufunc here runs in memory order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.nn.layers import Layer


def _mask_of_positive(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Float 0/1 mask of x > 0 in the layer's reused buffer.

    Multiplying by a float mask is cheaper in NumPy than np.maximum (NaN handling) or
    where/copyto with a boolean mask, and the same mask then serves the backward pass.
    """
    positive = layer._out_like("positive", x, True, dtype=np.bool_)
    np.greater(x, 0, out=positive)
    mask = layer._out_like("mask", x, True)
    np.copyto(mask, positive, casting="unsafe")
    return mask


class ReLU(Layer):
    """relu(x) = max(x, 0); derivative 1 where x > 0, else 0."""

    kind = "relu"

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        if not training:
            return np.maximum(x, self.dtype.type(0))
        self._mask = _mask_of_positive(self, x)
        return np.multiply(x, self._mask, out=self._out_like("y", x, True))

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return np.multiply(grad, self._mask, out=self._out_like("dx", grad, True))


class LeakyReLU(Layer):
    """leaky(x) = x for x > 0, alpha * x otherwise (0 < alpha < 1): dead units still learn.

    Written as x * slope with slope = 1 where x > 0 and alpha elsewhere; slope is also the
    derivative, so backward is one multiplication.
    """

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        if not 0.0 < alpha < 1.0:
            raise ValueError("LeakyReLU alpha must be in (0, 1)")
        self.alpha = float(alpha)
        self._slope: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        if not training:
            # For 0 < alpha < 1, max(x, alpha * x) picks x when positive and alpha * x otherwise.
            return np.maximum(x, x * self.alpha)
        slope = _mask_of_positive(self, x)
        slope *= 1.0 - self.alpha
        slope += self.alpha
        self._slope = slope
        return np.multiply(x, slope, out=self._out_like("y", x, True))

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return np.multiply(grad, self._slope, out=self._out_like("dx", grad, True))


class Sigmoid(Layer):
    """sigmoid(x) = 1 / (1 + e^-x), computed as 0.5 * tanh(x / 2) + 0.5.

    The tanh form never overflows (e^-x does for x < -88 in float32) and is one ufunc.
    Derivative: s * (1 - s).
    """

    kind = "sigmoid"

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        out = self._out_like("y", x, training)
        np.multiply(x, 0.5, out=out)
        np.tanh(out, out=out)
        out *= 0.5
        out += 0.5
        if training:
            self._y = out
        return out

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        y = self._y
        dx = self._out_like("dx", grad, True)
        np.subtract(1.0, y, out=dx)
        dx *= y
        dx *= grad
        return dx


class Tanh(Layer):
    """tanh(x); derivative 1 - tanh(x)^2."""

    kind = "tanh"

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        out = self._out_like("y", x, training)
        np.tanh(x, out=out)
        if training:
            self._y = out
        return out

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        y = self._y
        dx = self._out_like("dx", grad, True)
        np.multiply(y, y, out=dx)
        np.subtract(1.0, dx, out=dx)
        dx *= grad
        return dx


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}
