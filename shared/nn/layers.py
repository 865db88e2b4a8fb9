"""Layers: Dense, Dropout, BatchNorm1d, BatchNorm2d, Standardize (and the Layer base every other
layer shares).

Every layer is a small object with `forward(x, training)` and `backward(grad)`; the maths is
written out in each method so you can check it against a textbook.

Speed conventions (why the code looks the way it does):
- Float32 everywhere; a layer's dtype is the dtype of its parameters (tests use float64).
- In training mode a layer writes into *reused buffers* it owns (no allocation per batch); the
  returned array stays valid until that layer's next forward/backward call. `Sequential` consumes
  it immediately. In inference mode layers allocate fresh arrays, so prediction is thread-safe.
- Image batches are (N, C, H, W) arrays. The convolution and pooling layers store theirs
  channel-last in memory (N, H, W, C) — a transposed view — because that makes im2col one matrix
  product; element-wise layers allocate their outputs with the layout of their input
  (`_out_like`), so no layer pays for a transposing copy. Layout never changes a result.
- Parameters (`trainable`) and their gradients (`d<name>`) may be re-bound by `Sequential` to
  views into one flat buffer, so an optimizer updates every parameter with a handful of ufuncs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class Layer:
    """Base class. Subclasses list their array attributes in the three class tuples."""

    #: Attribute names of trainable arrays; the gradient of `W` lives in `dW`.
    trainable: ClassVar[tuple[str, ...]] = ()
    #: Subset of `trainable` that L2 / weight decay applies to (weights, never biases or BN).
    decayed: ClassVar[tuple[str, ...]] = ()
    #: Non-trainable arrays that are part of the model (running statistics, fixed means).
    persistent: ClassVar[tuple[str, ...]] = ()
    #: Name used in the JSON spec.
    kind: ClassVar[str] = "layer"

    def __init__(self, dtype: Any = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        self._buffers: dict[str, np.ndarray] = {}

    # -- interface -----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Given dL/d(output), fill the parameter gradients and return dL/d(input).

        `need_input_grad=False` lets the first trainable layer skip its most expensive product.
        """
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (the layer's part of the model spec)."""
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample shape of the output for a per-sample input `shape` ((features,) or
        (channels, height, width)); raises ValueError saying what the layer expects instead."""
        return shape

    # -- helpers ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array saved in a model file: trainable parameters and persistent state."""
        return {name: getattr(self, name) for name in self.trainable + self.persistent}

    def astype(self, dtype: Any) -> None:
        """Cast parameters, gradients and state in place (used by float64 gradient checks)."""
        self.dtype = np.dtype(dtype)
        for name in self.trainable:
            setattr(self, name, getattr(self, name).astype(self.dtype))
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))
        for name in self.persistent:
            setattr(self, name, getattr(self, name).astype(self.dtype))
        self._buffers.clear()

    def _out(
        self,
        key: str,
        shape: tuple[int, ...],
        training: bool,
        dtype: Any = None,
        *,
        zeros: bool = False,
    ) -> np.ndarray:
        """An output array: a reused buffer in training mode, a fresh one otherwise.

        Buffers only grow, and a view of the first rows is returned, so the smaller last batch of
        an epoch does not trigger a reallocation. `zeros` zero-fills a *new* array only: for a
        caller that writes the same entries every time and relies on the others staying 0.
        """
        dtype = self.dtype if dtype is None else dtype
        alloc = np.zeros if zeros else np.empty
        if not training:
            return alloc(shape, dtype)
        buf = self._buffers.get(key)
        if (
            buf is None
            or buf.shape[0] < shape[0]
            or buf.shape[1:] != shape[1:]
            or buf.dtype != dtype
        ):
            buf = alloc(shape, dtype)
            self._buffers[key] = buf
        return buf[: shape[0]]

    def _out_like(self, key: str, x: np.ndarray, training: bool, dtype: Any = None) -> np.ndarray:
        """`_out` shaped like x and laid out like it: channel-last when x (N, C, H, W) is stored
        channel-last, so element-wise ufuncs over x and this array run in memory order."""
        if x.ndim == 4 and x.strides[1] < x.strides[3]:
            n, c, h, w = x.shape
            return self._out(key, (n, h, w, c), training, dtype).transpose(0, 3, 1, 2)
        return self._out(key, x.shape, training, dtype)

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer y = x @ W + b, with W of shape (in_features, out_features).

    Initialisation keeps activations at a steady scale through depth:
    - "he" (Kaiming normal, std = sqrt(2 / fan_in)) for the ReLU family, which zeroes half its input;
    - "xavier" (Glorot uniform, limit = sqrt(6 / (fan_in + fan_out))) for sigmoid/tanh and the
      output layer feeding the softmax.
    """

    trainable = ("W", "b")
    decayed = ("W",)
    kind = "dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(dtype)
        if in_features < 1 or out_features < 1:
            raise ValueError("Dense needs positive in_features and out_features")
        if init not in ("he", "xavier"):
            raise ValueError(f"unknown init {init!r}; expected 'he' or 'xavier'")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.use_bias, self.init = bool(bias), init
        rng = rng if rng is not None else np.random.default_rng(0)
        shape = (self.in_features, self.out_features)
        if init == "he":
            std = np.sqrt(2.0 / self.in_features)
            w = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        else:
            limit = np.sqrt(6.0 / (self.in_features + self.out_features))
            w = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        self.W = w.astype(self.dtype)
        self.dW = np.zeros_like(self.W)
        if self.use_bias:
            self.b = np.zeros(self.out_features, self.dtype)
            self.db = np.zeros_like(self.b)
        else:
            # No bias (e.g. before batch norm, whose beta makes it redundant).
            self.trainable = ("W",)
        self._x: np.ndarray | None = None
        self._ones = np.ones(0, self.dtype)

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.use_bias,
            "init": self.init,
        }

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _expect_vector(shape, self.in_features)
        return (self.out_features,)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        out = self._out("y", (x.shape[0], self.out_features), training)
        np.matmul(x, self.W, out=out)
        if self.use_bias:
            out += self.b
        if training:
            self._x = x  # needed for dW = x^T @ grad
        return out

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError("Dense.backward called before forward(training=True)")
        # dL/dW = x^T @ dL/dy: the transpose is a view; BLAS reads it without copying.
        np.matmul(x.T, grad, out=self.dW)
        if self.use_bias:
            # dL/db = sum over the batch; a matrix-vector product is faster than np.sum(axis=0).
            n = grad.shape[0]
            if self._ones.shape[0] < n or self._ones.dtype != self.dtype:
                self._ones = np.ones(n, self.dtype)
            np.matmul(self._ones[:n], grad, out=self.db)
        if not need_input_grad:
            return None
        dx = self._out("dx", (grad.shape[0], self.in_features), True)
        return np.matmul(grad, self.W.T, out=dx)

    def astype(self, dtype: Any) -> None:
        super().astype(dtype)
        self._ones = np.ones(0, self.dtype)


class Dropout(Layer):
    """Inverted dropout. `p` is the DROP probability (p=0.2 zeroes 20% of the units).

    In training each unit is kept with probability q = 1 - p and the kept ones are scaled by 1/q,
    so the expected output equals the input and inference is a plain identity (no rescaling).

    Works on any shape (one independent mask entry per element). The mask comes from raw 16-bit
    random integers (much cheaper than float uniforms): a unit is kept when its integer is
    >= round(p * 65536). q is therefore quantised to 1/65536 and the
    scale uses that exact q, keeping E[output] == input exactly.
    """

    kind = "dropout"

    def __init__(
        self, p: float, *, rng: np.random.Generator | None = None, dtype: Any = np.float32
    ):
        super().__init__(dtype)
        if not 0.0 <= p < 1.0:
            raise ValueError("dropout p is the drop probability and must be in [0, 1)")
        self.p = float(p)
        self.threshold = int(round(self.p * 65536))
        self.keep = (65536 - self.threshold) / 65536
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._mask: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        if not training or self.threshold == 0:
            self._mask = None
            return x
        size = x.size
        raw = self.rng.bit_generator.random_raw((size + 3) // 4)  # 4 x 16 bits per draw
        bits = raw.view(np.uint16)[:size].reshape(x.shape)
        keep = self._out_like("keep", x, True, dtype=np.bool_)
        np.greater_equal(bits, np.uint16(self.threshold), out=keep)
        # mask = keep / q: kept units carry the 1/q scale, so backward is one multiplication.
        mask = self._out_like("mask", x, True)
        np.copyto(mask, keep, casting="unsafe")
        mask *= self.dtype.type(1.0 / self.keep)
        self._mask = mask
        return np.multiply(x, mask, out=self._out_like("y", x, True))

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if self._mask is None:
            return grad
        return np.multiply(grad, self._mask, out=self._out_like("dx", grad, True))


class BatchNorm1d(Layer):
    """Batch normalisation over the batch axis (Ioffe & Szegedy 2015).

    Training: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the batch's own statistics,
    and running averages are updated as r = (1 - momentum) * r + momentum * stat (the running
    variance uses the unbiased batch variance, as PyTorch does). Inference uses the running averages.
    """

    trainable = ("gamma", "beta")
    persistent = ("running_mean", "running_var")
    kind = "batchnorm1d"

    def __init__(
        self, dim: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        super().__init__(dtype)
        self.dim, self.momentum, self.eps = int(dim), float(momentum), float(eps)
        self.gamma = np.ones(self.dim, self.dtype)
        self.beta = np.zeros(self.dim, self.dtype)
        self.dgamma = np.zeros_like(self.gamma)
        self.dbeta = np.zeros_like(self.beta)
        self.running_mean = np.zeros(self.dim, self.dtype)
        self.running_var = np.ones(self.dim, self.dtype)
        self._xhat: np.ndarray | None = None
        self._inv_std: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _expect_vector(shape, self.dim)
        return shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self._forward_rows(self._as_input(x), 1, training)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return self._backward_rows(grad, 1, need_input_grad)

    def inference_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift), float64, of the inference-mode map y = x * scale + shift:
        scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale.

        What the folded inference pass and the frozen (explanation) copy of a model build on."""
        scale = self.gamma.astype(np.float64) / np.sqrt(
            self.running_var.astype(np.float64) + self.eps
        )
        shift = self.beta.astype(np.float64) - self.running_mean.astype(np.float64) * scale
        return scale, shift

    # The maths, on a matrix x of `repeats` * C columns whose column j holds channel j % C: a
    # BatchNorm1d batch is (N, C) with repeats = 1; BatchNorm2d passes each image's channel-last
    # pixels as one row (repeats = H * W). Long rows keep every ufunc in its fast inner loop: on
    # (N*H*W, C) rows of 32 channels the same passes took 1.7x as long (BENCHMARKS.md §1).
    def _forward_rows(self, x: np.ndarray, repeats: int, training: bool) -> np.ndarray:
        out = self._out("y", x.shape, training)
        if not training:
            scale = self.gamma / np.sqrt(self.running_var + self.eps)
            shift = self.beta - self.running_mean * scale
            np.multiply(x, _tiled(scale, repeats), out=out)
            out += _tiled(shift, repeats)
            return out
        n = x.shape[0] * repeats  # values per channel
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 values per training batch")
        mean = self._per_channel(x.sum(axis=0), repeats) / n
        xhat = self._out("xhat", x.shape, True)
        np.subtract(x, _tiled(mean, repeats), out=xhat)
        # biased batch variance, from the centred values (two passes: no cancellation)
        var = self._per_channel(np.einsum("ij,ij->j", xhat, xhat), repeats) / n
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= _tiled(inv_std, repeats)
        m = self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += (m * n / (n - 1)) * var
        self._xhat, self._inv_std = xhat, inv_std
        np.multiply(xhat, _tiled(self.gamma, repeats), out=out)
        out += _tiled(self.beta, repeats)
        return out

    def _backward_rows(
        self, grad: np.ndarray, repeats: int, need_input_grad: bool
    ) -> np.ndarray | None:
        xhat, inv_std = self._xhat, self._inv_std
        if xhat is None or inv_std is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward(training=True)"
            )
        n = grad.shape[0] * repeats
        self.dbeta[...] = self._per_channel(grad.sum(axis=0), repeats)
        self.dgamma[...] = self._per_channel(np.einsum("ij,ij->j", grad, xhat), repeats)
        if not need_input_grad:
            return None
        # dx = gamma * inv_std / N * (N * g - sum(g) - xhat * sum(g * xhat))
        dx = self._out("dx", grad.shape, True)
        np.multiply(xhat, _tiled(self.dgamma / n, repeats), out=dx)
        dx += _tiled(self.dbeta / n, repeats)
        np.subtract(grad, dx, out=dx)
        dx *= _tiled(self.gamma * inv_std, repeats)
        return dx

    def _per_channel(self, column_sums: np.ndarray, repeats: int) -> np.ndarray:
        """Per-column sums of a rows matrix added up per channel."""
        return column_sums.reshape(repeats, self.dim).sum(axis=0)


class BatchNorm2d(BatchNorm1d):
    """Batch normalisation of (N, C, H, W) images per channel: statistics over N, H and W.

    A channel is one feature seen at N*H*W places, so this is BatchNorm1d's maths with each
    image's channel-last pixels as one row of H*W*C columns: a view, no copy, for the outputs of
    the conv layers, which are stored channel-last. `dim` is the number of channels; the running
    variance is the unbiased estimate over N*H*W values, as in PyTorch's BatchNorm2d. Being a
    subclass, it is also a BatchNorm1d to isinstance: code that treats the two apart tests this
    one first.
    """

    kind = "batchnorm2d"

    def __init__(
        self, channels: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        super().__init__(channels, momentum=momentum, eps=eps, dtype=dtype)

    def config(self) -> dict[str, Any]:
        return {"channels": self.dim, "momentum": self.momentum, "eps": self.eps}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[0] != self.dim:
            raise ValueError(
                f"expects images of {self.dim} channels (C, H, W) but receives shape {shape}"
            )
        return shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n, c, h, w = x.shape
        rows = self._forward_rows(_channel_rows(self._as_input(x)), h * w, training)
        return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        n, c, h, w = grad.shape
        dx = self._backward_rows(_channel_rows(grad), h * w, need_input_grad)
        if dx is None:
            return None
        return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _tiled(per_channel: np.ndarray, repeats: int) -> np.ndarray:
    """A per-channel vector repeated to a rows matrix's width (see BatchNorm1d._forward_rows)."""
    return per_channel if repeats == 1 else np.tile(per_channel, repeats)


def _channel_rows(x: np.ndarray) -> np.ndarray:
    """The (N, H*W*C) matrix of (N, C, H, W) x, each image channel-last: a view when x is
    stored so."""
    return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)


class Standardize(Layer):
    """Subtract a fixed per-pixel mean (computed on the training split, saved in the model).

    It lives inside the model so every consumer feeds raw pixels/255 and never has to know the
    training set's statistics. Nothing here is trained; the gradient passes straight through.
    """

    persistent = ("mean",)
    kind = "standardize"

    def __init__(self, mean: np.ndarray | int, *, dtype: Any = np.float32) -> None:
        super().__init__(dtype)
        if isinstance(mean, int | np.integer):
            mean = np.zeros(int(mean), self.dtype)
        mean = np.asarray(mean)
        if mean.ndim != 1:
            raise ValueError("Standardize mean must be a 1-D vector")
        self.mean = mean.astype(self.dtype)
        self.dim = self.mean.shape[0]

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _expect_vector(shape, self.dim)
        return shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        x = self._as_input(x)
        out = self._out("y", x.shape, training)
        return np.subtract(x, self.mean, out=out)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        return grad if need_input_grad else None


def _expect_vector(shape: tuple[int, ...], width: int) -> None:
    """What the layers over feature vectors (Dense, BatchNorm1d, Standardize) check."""
    if shape == (width,):
        return
    if len(shape) == 1:
        raise ValueError(f"expects {width} inputs but receives {shape[0]}")
    raise ValueError(f"expects {width} inputs but receives shape {shape}: add a Flatten before it")
