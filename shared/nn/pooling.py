"""MaxPool2D: the largest value of each size x size window, windows `stride` apart.

    y[n, c, p, q] = max_{i, j < size} x[n, c, s*p + i, s*q + j]       Ho = (H - size) // s + 1

No padding (pixels past the last whole window are ignored). The gradient goes to the input that
was the maximum, the first one in row-major window order on ties, as in PyTorch.

How, without a loop over samples or pixels: the window position (i, j) picks the strided slice
x[:, :, i::s, j::s] (cut to Ho x Wo), so the max is size*size element-wise maxima of slices, and
the forward pass records which offset won (`argmax`, uint8). Backward adds the gradient times
"this offset won" into each offset's slice, which also accumulates correctly when windows overlap
(stride < size). Work is done channel-last, the layout the conv layers produce, so slices read
memory in runs of C floats or more. Masks are multiplied, never used as `where=` (NumPy's masked
loops branch per element: ~10x slower on the random masks pooling makes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.nn.layers import Layer


class MaxPool2D(Layer):
    """Max pooling over size x size windows; `stride` defaults to `size` (no overlap)."""

    kind = "maxpool2d"

    def __init__(self, size: int = 2, stride: int | None = None, *, dtype: Any = np.float32):
        super().__init__(dtype)
        stride = size if stride is None else stride
        if size < 1 or stride < 1:
            raise ValueError("MaxPool2D needs a positive size and stride")
        if size * size > 256:
            raise ValueError("MaxPool2D size must be at most 16 (window offsets are kept as uint8)")
        self.size, self.stride = int(size), int(stride)
        self._argmax: np.ndarray | None = None
        self._input_hw = (0, 0)

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "stride": self.stride}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise ValueError(f"expects images (C, H, W) but receives shape {shape}")
        if min(shape[1:]) < self.size:
            raise ValueError(f"image {shape[1]}x{shape[2]} is smaller than its pool window")
        c, h, w = shape
        return (c, (h - self.size) // self.stride + 1, (w - self.size) // self.stride + 1)

    def _windows(self, x: np.ndarray, ho: int, wo: int) -> list[np.ndarray]:
        """Channel-last x (N, H, W, C) seen at each window offset (i, j): (N, Ho, Wo, C) views."""
        s = self.stride
        return [
            x[:, i : i + (ho - 1) * s + 1 : s, j : j + (wo - 1) * s + 1 : s, :]
            for i in range(self.size)
            for j in range(self.size)
        ]

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        n, c, h, w = x.shape
        _, ho, wo = self.output_shape((c, h, w))
        windows = self._windows(x.transpose(0, 2, 3, 1), ho, wo)
        out = self._out("y", (n, ho, wo, c), training)
        np.copyto(out, windows[0])
        if training:
            argmax = self._out("argmax", out.shape, True, np.uint8)
            argmax.fill(0)
            larger = self._out("larger", out.shape, True, np.bool_)
            offset_if_larger = self._out("offset_if_larger", out.shape, True, np.uint8)
        for offset, window in enumerate(windows[1:], start=1):
            if training:
                # Strictly larger, so the first maximum keeps the gradient on ties. Offsets only
                # grow, so "argmax = offset where larger" is a maximum with larger * offset.
                np.greater(window, out, out=larger)
                np.multiply(larger.view(np.uint8), np.uint8(offset), out=offset_if_larger)
                np.maximum(argmax, offset_if_larger, out=argmax)
            np.maximum(out, window, out=out)
        if training:
            self._argmax, self._input_hw = argmax, (h, w)
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        argmax = self._argmax
        if argmax is None:
            raise RuntimeError("MaxPool2D.backward called before forward(training=True)")
        if not need_input_grad:
            return None
        n, c, ho, wo = grad.shape
        h, w = self._input_hw
        g = grad.transpose(0, 2, 3, 1)
        dx = self._out("dx", (n, h, w, c), True)
        # Windows that tile the image exactly (the usual size 2, stride 2 on even sides) give
        # each pixel one window: its gradient is written once, no zeroing or adding needed.
        tiled = self.stride == self.size and h % self.size == 0 and w % self.size == 0
        if not tiled:
            dx.fill(0)  # pixels in no window, and the sums where windows overlap, start from 0
        won = self._out("won", argmax.shape, True, np.bool_)
        routed = self._out("routed", argmax.shape, True)
        for offset, target in enumerate(self._windows(dx, ho, wo)):
            np.equal(argmax, offset, out=won)
            if tiled:
                np.multiply(g, won, out=target)
            else:
                np.multiply(g, won, out=routed)
                target += routed
        return dx.transpose(0, 3, 1, 2)
