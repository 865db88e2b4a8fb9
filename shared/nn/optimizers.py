"""Optimizers over ONE flat parameter vector and its flat gradient.

`Sequential` keeps every parameter as a view into one contiguous float32 vector (weights first,
then biases/BN parameters), so an optimizer step is a fixed handful of in-place ufuncs over the
whole model instead of a Python loop over arrays. `decay_size` is the length of the leading
weight region that L2 / weight decay applies to (biases and batch-norm parameters are exempt).

Per step t = 1, 2, ..., with g the gradient of the loss and lr the schedule's rate, in this order:
1. global-norm clipping (`grad_clip`):  g <- g * min(1, clip / ||g||);
2. coupled L2 (`l2`):  g <- g + l2 * w  (the gradient of l2/2 * ||w||^2; the same for every
   optimizer);
3. decoupled weight decay (`weight_decay`, Loshchilov & Hutter):  w <- w * (1 - lr * weight_decay);
4. the optimizer's own update (each class's docstring writes it out).

The optimizer knows nothing of the model or the training loop: the loop fills `grads` (a
backward pass) and calls `step(lr)`. `step()` consumes the gradient: afterwards `grads` holds
scratch values (the next backward pass overwrites it). Reusing it as scratch saves a memory
stream in the memory-bound update.

All updates are in place and allocation-free. (Splitting the element-wise work across Python
threads was measured and dropped: OpenBLAS's worker threads spin on the other core between
matrix products, so a second NumPy thread made training epochs slower, not faster.)
"""

from __future__ import annotations

import math

import numpy as np


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> float:
    """Scale `grads` in place so its L2 norm is at most `max_norm`; return the norm before."""
    flat = grads.reshape(-1)
    norm = math.sqrt(float(np.dot(flat, flat)))
    if norm > max_norm:
        grads *= grads.dtype.type(max_norm / (norm + 1e-12))
    return norm


class Optimizer:
    """Shared machinery: clipping, L2, decoupled decay. Subclasses write `_update`."""

    def __init__(
        self,
        params: np.ndarray,
        grads: np.ndarray,
        *,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        decay_size: int | None = None,
    ) -> None:
        if params.shape != grads.shape or params.dtype != grads.dtype:
            raise ValueError("params and grads must have the same shape and dtype")
        if params.ndim != 1 or not params.flags.c_contiguous:
            raise ValueError("optimizers work on one flat, contiguous parameter vector")
        self.params, self.grads = params, grads
        self.l2, self.weight_decay, self.grad_clip = float(l2), float(weight_decay), grad_clip
        self.decay_size = params.size if decay_size is None else int(decay_size)
        self.t = 0  # number of steps taken
        self._tmp = np.empty_like(params)

    def step(self, lr: float) -> None:
        """Apply one update with learning rate `lr` (from the schedule)."""
        self.t += 1
        p, g, tmp = self.params, self.grads, self._tmp
        if self.grad_clip is not None:
            clip_grad_norm(g, self.grad_clip)
        d = self.decay_size  # leading entries that are weights
        if d > 0:
            if self.l2:
                np.multiply(p[:d], self.l2, out=tmp[:d])
                g[:d] += tmp[:d]
            if self.weight_decay:
                p[:d] *= 1.0 - lr * self.weight_decay
        self._update(p, g, tmp, float(lr))

    def _update(self, p: np.ndarray, g: np.ndarray, tmp: np.ndarray, lr: float) -> None:
        """The optimizer's own update of `p` from `g` (which it may use as scratch, like `tmp`),
        reading and writing its state attributes; scalars are computed here in float64."""
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr * g"""

    def _update(self, p, g, tmp, lr):
        np.multiply(g, lr, out=tmp)
        p -= tmp


class Momentum(Optimizer):
    """Heavy ball, PyTorch form: v = mu * v + g;  w -= lr * v.

    (This form keeps v independent of lr, so a schedule can change lr without a velocity jump.)
    """

    def __init__(self, params, grads, *, momentum: float = 0.9, **kw) -> None:
        super().__init__(params, grads, **kw)
        self.momentum = float(momentum)
        self.v = np.zeros_like(params)

    def _update(self, p, g, tmp, lr):
        v = self.v
        v *= self.momentum
        v += g
        np.multiply(v, lr, out=tmp)
        p -= tmp


class Nesterov(Momentum):
    """Nesterov momentum, PyTorch form: v = mu * v + g;  w -= lr * (g + mu * v)."""

    def _update(self, p, g, tmp, lr):
        v = self.v
        v *= self.momentum
        v += g
        np.multiply(v, self.momentum, out=tmp)
        tmp += g
        tmp *= lr
        p -= tmp


class RMSprop(Optimizer):
    """s = rho * s + (1 - rho) * g^2;  w -= lr * g / (sqrt(s) + eps).

    Stored as S = s / (1 - rho), which turns the average into S = rho * S + g^2 (one ufunc fewer);
    the constant is folded back into the scalars: sqrt(s) = c * sqrt(S), c = sqrt(1 - rho).
    """

    def __init__(self, params, grads, *, rho: float = 0.9, eps: float = 1e-8, **kw) -> None:
        super().__init__(params, grads, **kw)
        self.rho, self.eps = float(rho), float(eps)
        self.s = np.zeros_like(params)

    def _update(self, p, g, tmp, lr):
        s = self.s
        c = math.sqrt(1.0 - self.rho)
        np.multiply(g, g, out=tmp)
        s *= self.rho
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps / c
        np.divide(g, tmp, out=g)  # g is scratch from here on
        g *= lr / c
        p -= g


class Adam(Optimizer):
    """Adam, as in Kingma & Ba (2015), Algorithm 1. With g_t the gradient at step t:

        m_t = b1 m_(t-1) + (1 - b1) g_t            (first-moment estimate)
        v_t = b2 v_(t-1) + (1 - b2) g_t^2          (second raw-moment estimate)
        m_hat = m_t / (1 - b1^t)                   (bias corrections: m_0 = v_0 = 0)
        v_hat = v_t / (1 - b2^t)
        w_t = w_(t-1) - lr * m_hat / (sqrt(v_hat) + eps)

    `m` and `v` hold exactly the paper's m_t and v_t. The last line is computed in the form the
    paper gives at the end of its Section 2, which folds both corrections into two scalars:

        w_t = w_(t-1) - a_t * m_t / (sqrt(v_t) + eps_t),
        a_t = lr * sqrt(1 - b2^t) / (1 - b1^t),   eps_t = eps * sqrt(1 - b2^t)

    (multiply numerator and denominator of the first form by sqrt(1 - b2^t): the same number,
    two passes over the parameters fewer than dividing m and v by their corrections).
    """

    def __init__(
        self, params, grads, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw
    ) -> None:
        super().__init__(params, grads, **kw)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)

    def _update(self, p, g, tmp, lr):
        m, v = self.m, self.v
        b1, b2, t = self.beta1, self.beta2, self.t
        root = math.sqrt(1.0 - b2**t)
        a_t, eps_t = lr * root / (1.0 - b1**t), self.eps * root
        # m = b1 m + (1 - b1) g
        m *= b1
        np.multiply(g, 1.0 - b1, out=tmp)
        m += tmp
        # v = b2 v + (1 - b2) g^2   (g is scratch from here on)
        np.multiply(g, g, out=g)
        g *= 1.0 - b2
        v *= b2
        v += g
        # w -= a_t m / (sqrt(v) + eps_t)
        np.sqrt(v, out=g)
        g += eps_t
        np.divide(m, g, out=g)
        g *= a_t
        p -= g


class AdamW(Adam):
    """Adam with decoupled weight decay: w *= 1 - lr * weight_decay before the Adam step.

    Unlike L2, the decay is not rescaled by Adam's per-parameter step sizes (Loshchilov & Hutter
    2019). Same default (0.01) as PyTorch when constructed directly; `make_optimizer` passes the
    config's value through unchanged.
    """

    def __init__(self, params, grads, *, weight_decay: float = 0.01, **kw) -> None:
        super().__init__(params, grads, weight_decay=weight_decay, **kw)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(
    name: str,
    params: np.ndarray,
    grads: np.ndarray,
    *,
    momentum: float = 0.9,
    l2: float = 0.0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    decay_size: int | None = None,
) -> Optimizer:
    """Build an optimizer by its name in `OPTIMIZERS`. `momentum` only matters for
    momentum/nesterov."""
    kw = dict(l2=l2, weight_decay=weight_decay, grad_clip=grad_clip, decay_size=decay_size)
    if name in ("momentum", "nesterov"):
        kw["momentum"] = momentum
    return OPTIMIZERS[name](params, grads, **kw)
