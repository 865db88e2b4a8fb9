"""Layers that only change the per-sample shape: Reshape (rows -> images) and Flatten (images ->
rows). Neither has parameters; the gradient is reshaped back.

Models take rows (N, input_size), the one input contract of the engine, the services and the
model file; a convolutional model starts with Reshape((1, 28, 28)) and turns its feature maps back
into rows with Flatten before its Dense layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.nn.layers import Layer


class Reshape(Layer):
    """(N, *input shape) -> (N, *shape) in C order; e.g. 784 pixels -> (1, 28, 28)."""

    kind = "reshape"

    def __init__(self, shape: tuple[int, ...] | list[int], *, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        if not shape or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ValueError("Reshape shape must be a non-empty list of positive integers")
        self.shape = tuple(int(d) for d in shape)
        self._input_shape: tuple[int, ...] = ()

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(
                f"cannot reshape {math.prod(shape)} values per sample into {list(self.shape)}"
            )
        return self.shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        if training:
            self._input_shape = x.shape[1:]
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return grad.reshape(grad.shape[0], *self._input_shape) if need_input_grad else None


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in (channel, row, column) order whatever the memory layout.

    A channel-last input (from the conv and pool layers) is copied into C order here: the Dense
    weights after it mean the same thing however the layers before store their outputs.
    """

    kind = "flatten"

    def __init__(self, *, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        self._input_shape: tuple[int, ...] = ()

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        if training:
            self._input_shape = x.shape[1:]
        if x.flags.c_contiguous:
            return x.reshape(x.shape[0], -1)
        out = self._out("y", x.shape, training)
        np.copyto(out, x)
        return out.reshape(x.shape[0], -1)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return grad.reshape(grad.shape[0], *self._input_shape) if need_input_grad else None
