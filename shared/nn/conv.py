"""Conv2D: a 2-D convolution (cross-correlation, as in every deep-learning library) as one matrix
product per batch, by im2col.

For input x (N, C, H, W), kernel size k, stride s and output (N, O, Ho, Wo):

    y[n, o, p, q] = b[o] + sum_{i, j, c} x_pad[n, c, s*p + i, s*q + j] * W[i, j, c, o]

im2col copies every k x k x C input window into one row of a matrix X_col (N*Ho*Wo, k*k*C);
then y = X_col @ W_col + b with W_col = W reshaped to (k*k*C, O): all the arithmetic in one BLAS
call per block of samples (`IM2COL_BLOCK_FLOATS`). Backward is two more products and the reverse
of the copy:

    dW_col = X_col^T @ dY                     (k*k*C, O)
    dX_col = dY @ W_col^T                     (N*Ho*Wo, k*k*C)
    dx_pad[n, c, s*p + i, s*q + j] += dX_col[n, p, q, i, j, c]   (col2im: strided adds)

Layout (why the arrays look the way they do): the work is done channel-last. Rows of X_col
ordered (n, p, q) make the product's output (N, Ho, Wo, O) channel-last without a copy, and
columns ordered (i, j, c) make W stored as (k, k, C, O) reshape to W_col for free. The layer
returns that output as a (N, O, Ho, Wo) *view*, so shapes are (channels, height, width) per
sample everywhere while the next layers read memory in order. dX_col is written over the block's
X_col (same size, no longer needed) offset-major: one (N*Ho*Wo, C) plane per kernel offset
(i, j), k*k products dY @ W[i, j]^T in one stacked call, so that col2im is k*k adds of a whole
plane onto the input pixels it came from, each walking runs of Wo*C floats (stride 1) where a
row-major dX_col offers runs of k*C at most (`Conv2D._col2im`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from shared.nn.layers import Layer

PADDINGS = ("valid", "same")

#: The im2col matrix is built and used a block of samples at a time, each block's X_col within
#: this many floats (8 MB), so the layer holds one block, not the batch's when the batch is large,
#: and a block is still in cache when its products read it. Backward rebuilds each block's X_col
#: from the padded input the layer keeps (a copy from cache is cheaper than a trip to memory); a
#: batch that fits one block keeps its X_col from forward (the `cnn` network at batch 128: the
#: first conv's whole batch is one block, the second conv's blocks are 40 samples). Not smaller:
#: each block is 3 BLAS calls or more (k*k more in a stacked one), and with 2 BLAS threads every
#: call is a hand-over between the cores. `python -m benchmarks.layers --threads T --block-floats
#: 524288 1048576 2097152 4194304 16777216` (the `cnn` training step; Intel Xeon, 2 vCPUs,
#: 2026-12-06, BENCHMARKS.md §1): at 2 threads 2^21 floats takes 0.920 of the time of 2^19 (the
#: value before, chosen on one core), 2^22 and up the same as 2^21; at 1 thread 0.974.
IM2COL_BLOCK_FLOATS = 1 << 21


class Conv2D(Layer):
    """k x k convolution of C input channels into O output channels, stride s.

    padding "valid": no padding, Ho = (H - k) // s + 1. "same": Ho = ceil(H / s), zero rows and
    columns split as evenly as possible with the extra one at the bottom/right (TensorFlow's
    rule), so stride 1 keeps the image size. He initialisation (std = sqrt(2 / (k*k*C))): the
    convolution is a Dense layer over each window, and ReLU networks need that scale.
    """

    trainable = ("W", "b")
    decayed = ("W",)
    kind = "conv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: str = "valid",
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        if min(in_channels, out_channels, kernel_size, stride) < 1:
            raise ValueError("Conv2D needs positive channels, kernel_size and stride")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; expected 'valid' or 'same'")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), padding
        self.use_bias = bool(bias)
        rng = rng if rng is not None else np.random.default_rng(0)
        k = self.kernel_size
        std = np.float32(np.sqrt(2.0 / (k * k * self.in_channels)))
        w = rng.standard_normal((k, k, self.in_channels, self.out_channels), dtype=np.float32)
        self.W = (w * std).astype(self.dtype)
        self.dW = np.zeros_like(self.W)
        if self.use_bias:
            self.b = np.zeros(self.out_channels, self.dtype)
            self.db = np.zeros_like(self.b)
        else:
            self.trainable = ("W",)  # before batch norm, whose beta does the bias's job
        self._xp: np.ndarray | None = None  # the padded channel-last input, kept for backward
        self._input_hw = (0, 0)
        self._ones = np.ones(0, self.dtype)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "bias": self.use_bias,
        }

    # -- geometry ---------------------------------------------------------------------------------
    def _side(self, size: int) -> tuple[int, int, int]:
        """(output size, zeros before, zeros after) along one spatial axis of `size` pixels."""
        k, s = self.kernel_size, self.stride
        if self.padding == "valid":
            return (size - k) // s + 1, 0, 0
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2, total - total // 2

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(
                f"expects images of {self.in_channels} channels (C, H, W) but receives shape "
                f"{shape}"
            )
        if self.padding == "valid" and min(shape[1:]) < self.kernel_size:
            raise ValueError(
                f"image {shape[1]}x{shape[2]} is smaller than its {self.kernel_size}x"
                f"{self.kernel_size} kernel"
            )
        return (self.out_channels, self._side(shape[1])[0], self._side(shape[2])[0])

    # -- computation ------------------------------------------------------------------------------
    def _block(self, n: int, ho: int, wo: int) -> int:
        """Samples per im2col block (`IM2COL_BLOCK_FLOATS`), at least 1, at most n."""
        per_sample = ho * wo * self.kernel_size**2 * self.in_channels
        return max(1, min(n, IM2COL_BLOCK_FLOATS // per_sample))

    def _im2col(self, xp: np.ndarray, cols: np.ndarray, ho: int, wo: int) -> np.ndarray:
        """Copy the windows of the channel-last padded samples xp (m, Hp, Wp, C) into the flat
        buffer `cols` and return them as the matrix X_col (m*Ho*Wo, k*k*C), whose row (n, p, q)
        holds x_pad[n, c, s*p + i, s*q + j] in column (i, j, c); in memory row-major, or
        offset-major for a single channel (`_x_col`)."""
        k, s, m = self.kernel_size, self.stride, xp.shape[0]
        x_col = self._x_col(cols, m, ho, wo)
        if self._offset_major:
            planes = x_col.T.reshape(k, k, m, ho, wo)
            for i in range(k):
                for j in range(k):
                    np.copyto(
                        planes[i, j],
                        xp[:, i : i + (ho - 1) * s + 1 : s, j : j + (wo - 1) * s + 1 : s, 0],
                    )
        else:
            # windows[n, p, q, c, i, j] = xp[n, p*s + i, q*s + j, c]: a view of xp.
            windows = sliding_window_view(xp, (k, k), axis=(1, 2))
            windows = windows[:, : (ho - 1) * s + 1 : s, : (wo - 1) * s + 1 : s]
            rows = x_col.reshape(m, ho, wo, k, k, self.in_channels)
            np.copyto(rows, windows.transpose(0, 1, 2, 4, 5, 3))
        return x_col

    @property
    def _offset_major(self) -> bool:
        """Whether X_col is kept offset-major (`_x_col`): for a single input channel."""
        return self.in_channels == 1

    def _x_col(self, cols: np.ndarray, m: int, ho: int, wo: int) -> np.ndarray:
        """X_col of m samples as a view of the flat buffer `cols`.

        Row-major (the rows (n, p, q) one after the other) when the input has channels: a
        window's kernel row is then k*C consecutive floats in both xp and X_col. With a single
        channel (grayscale images: the first conv) those runs would be k floats, so X_col is
        kept offset-major instead: its transpose (k*k, m*Ho*Wo) is contiguous, each kernel
        offset's plane a copy of strided rows of xp, and the products read it transposed (a
        BLAS flag, no copy).
        """
        k, c = self.kernel_size, self.in_channels
        rows, size = m * ho * wo, m * ho * wo * k * k * c
        if self._offset_major:
            return cols[:size].reshape(k * k, rows).T
        return cols[:size].reshape(rows, k * k * c)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        n, c, h, w = x.shape
        k = self.kernel_size
        ho, top, bottom = self._side(h)
        wo, left, right = self._side(w)
        # Channel-last, zero-padded copy of x (the border is zeroed once: only the inside is
        # ever written).
        xp = self._out("xp", (n, h + top + bottom, w + left + right, c), training, zeros=True)
        xp[:, top : top + h, left : left + w, :] = x.transpose(0, 2, 3, 1)
        block = self._block(n, ho, wo)
        cols = self._out("cols", (block * ho * wo * k * k * c,), training)
        out = self._out("y", (n * ho * wo, self.out_channels), training)
        w_col = self.W.reshape(k * k * c, self.out_channels)
        pixels = ho * wo
        for start in range(0, n, block):
            m = min(block, n - start)
            x_col = self._im2col(xp[start : start + m], cols, ho, wo)
            np.matmul(x_col, w_col, out=out[start * pixels : (start + m) * pixels])
        if self.use_bias:
            out += self.b
        if training:
            self._xp, self._input_hw = xp, (h, w)
        return out.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        xp = self._xp
        if xp is None:
            raise RuntimeError("Conv2D.backward called before forward(training=True)")
        n, o, ho, wo = grad.shape
        k, c = self.kernel_size, self.in_channels
        rows, pixels = n * ho * wo, ho * wo
        g = grad.transpose(0, 2, 3, 1)  # (N, Ho, Wo, O): contiguous when grad is channel-last
        if not g.flags.c_contiguous:
            g_copy = self._out("g", g.shape, True)
            np.copyto(g_copy, g)
            g = g_copy
        g = g.reshape(rows, o)
        if self.use_bias:
            # Sum over every output pixel, as a matrix-vector product (faster than np.sum).
            if self._ones.shape[0] < rows or self._ones.dtype != self.dtype:
                self._ones = np.ones(rows, self.dtype)
            np.matmul(self._ones[:rows], g, out=self.db)
        self._xp = None
        dw = self.dW.reshape(k * k * c, o)
        w_col = self.W.reshape(k * k * c, o)
        w_planes = self.W.reshape(k * k, c, o).transpose(0, 2, 1)  # W[i, j]^T, a view
        h, w = self._input_hw
        if need_input_grad:
            dxp = self._out("dxp", xp.shape, True)
            dxp.fill(0)
        block = self._block(n, ho, wo)
        cols = self._out("cols", (block * ho * wo * k * k * c,), True)
        for start in range(0, n, block):
            m = min(block, n - start)
            x_col = (
                self._x_col(cols, m, ho, wo)
                if block == n  # X_col from forward is still there
                else self._im2col(xp[start : start + m], cols, ho, wo)
            )
            g_block = g[start * pixels : (start + m) * pixels]
            if start == 0:
                np.matmul(x_col.T, g_block, out=dw)
            else:
                dw_block = self._out("dw_block", dw.shape, True)
                np.matmul(x_col.T, g_block, out=dw_block)
                dw += dw_block
            if not need_input_grad:
                continue
            # dX_col = dY @ W_col^T, offset-major, into the memory of the block's X_col.
            planes = cols[: m * pixels * k * k * c].reshape(k * k, m * pixels, c)
            if c == 1:  # the planes are columns: one product (k*k, O) @ (O, m*Ho*Wo)
                np.matmul(w_col, g_block.T, out=planes[..., 0])
            else:  # plane (i, j) = dY @ W[i, j]^T, (m*Ho*Wo, O) @ (O, C)
                np.matmul(g_block, w_planes, out=planes)
            self._col2im(planes, dxp[start : start + m], ho, wo)
        if not need_input_grad:
            return None
        _, top, _ = self._side(h)
        _, left, _ = self._side(w)
        return dxp[:, top : top + h, left : left + w, :].transpose(0, 3, 1, 2)

    def _col2im(self, planes: np.ndarray, dxp: np.ndarray, ho: int, wo: int) -> None:
        """dxp[n, s*p + i, s*q + j, c] += dX_col[(n, p, q), (i, j, c)] for every window (p, q)
        and kernel offset (i, j): each window's gradient added onto the input pixels it read.

        dX_col comes offset-major, `planes` (k*k, m*Ho*Wo, C): the plane of offset (i, j) is
        added as a whole onto the pixels s*p + i, s*q + j of every window, k*k adds. NumPy's time
        in these adds goes by the runs of memory they walk, not by the floats; with stride 1 a
        plane's row of Wo*C floats lands on Wo*C consecutive floats of dxp (stride s: runs of C).
        Measured against a row-major dX_col added a window's kernel row (k*C floats) at a time:
        BENCHMARKS.md §1, "col2im by kernel offsets".
        """
        k, s, c, m = self.kernel_size, self.stride, self.in_channels, dxp.shape[0]
        planes = planes.reshape(k, k, m, ho, wo, c)
        for i in range(k):
            for j in range(k):
                dxp[:, i : i + (ho - 1) * s + 1 : s, j : j + (wo - 1) * s + 1 : s] += planes[i, j]

    def astype(self, dtype: Any) -> None:
        super().astype(dtype)
        self._ones = np.ones(0, self.dtype)
