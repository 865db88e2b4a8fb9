"""Optimizers over ONE flat parameter vector and its flat gradient.

`Sequential` keeps every parameter as a view into one contiguous float32 vector (weights first,
then biases/BN parameters), so an optimizer step is a fixed handful of in-place ufuncs over the
whole model instead of a Python loop over arrays. `decay_size` is the length of the leading
weight region that L2 / weight decay applies to (biases and batch-norm parameters are exempt).

Per step, in this order:
1. global-norm clipping of the loss gradient (`grad_clip`): g *= min(1, clip / ||g||);
2. coupled L2 (`l2`): g += l2 * w  (the gradient of l2/2 * ||w||^2; the same for every optimizer);
3. decoupled weight decay (`weight_decay`, Loshchilov & Hutter): w *= 1 - lr * weight_decay;
4. the optimizer's own update.

`step()` consumes the gradient: afterwards `grads` holds scratch values (the next backward pass
overwrites it). Reusing it as scratch saves a memory stream in the memory-bound update.

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
        self._scalars: dict[str, float] = {}

    def state_arrays(self) -> list[np.ndarray]:
        """Per-parameter state vectors (same length as params) the update uses."""
        return []

    def step(self, lr: float) -> None:
        """Apply one update with learning rate `lr` (from the schedule)."""
        self.t += 1
        if self.grad_clip is not None:
            clip_grad_norm(self.grads, self.grad_clip)
        self._scalars = self._prepare(float(lr))
        p, g, tmp = self.params, self.grads, self._tmp
        d = self.decay_size  # leading entries that are weights
        if d > 0:
            if self.l2:
                np.multiply(p[:d], self.l2, out=tmp[:d])
                g[:d] += tmp[:d]
            if self.weight_decay:
                p[:d] *= 1.0 - lr * self.weight_decay
        self._update(p, g, tmp, self.state_arrays(), float(lr))

    def _prepare(self, lr: float) -> dict[str, float]:
        """Per-step scalars (bias corrections etc.)."""
        return {}

    def _update(
        self, p: np.ndarray, g: np.ndarray, tmp: np.ndarray, state: list[np.ndarray], lr: float
    ) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr * g"""

    def _update(self, p, g, tmp, state, lr):
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

    def state_arrays(self):
        return [self.v]

    def _update(self, p, g, tmp, state, lr):
        (v,) = state
        v *= self.momentum
        v += g
        np.multiply(v, lr, out=tmp)
        p -= tmp


class Nesterov(Momentum):
    """Nesterov momentum, PyTorch form: v = mu * v + g;  w -= lr * (g + mu * v)."""

    def _update(self, p, g, tmp, state, lr):
        (v,) = state
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

    def state_arrays(self):
        return [self.s]

    def _prepare(self, lr):
        c = math.sqrt(1.0 - self.rho)
        return {"step": lr / c, "eps": self.eps / c}

    def _update(self, p, g, tmp, state, lr):
        (s,) = state
        k = self._scalars
        np.multiply(g, g, out=tmp)
        s *= self.rho
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += k["eps"]
        np.divide(g, tmp, out=g)  # g is scratch from here on
        g *= k["step"]
        p -= g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)

    Implementation: M = m / (1 - b1) and V = v / (1 - b2) are stored, so the averages become
    M = b1 M + g and V = b2 V + g^2, and every constant folds into two per-step scalars:
        w -= [lr (1 - b1) / ((1 - b1^t) c)] * M / (sqrt(V) + eps / c),  c = sqrt((1 - b2) / (1 - b2^t))
    which is exactly the update above in 10 in-place ufuncs.
    """

    def __init__(
        self,
        params,
        grads,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        **kw,
    ) -> None:
        super().__init__(params, grads, **kw)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = np.zeros_like(params)  # holds M = m / (1 - b1)
        self.v = np.zeros_like(params)  # holds V = v / (1 - b2)

    def state_arrays(self):
        return [self.m, self.v]

    def _prepare(self, lr):
        b1, b2, t = self.beta1, self.beta2, self.t
        c = math.sqrt((1.0 - b2) / (1.0 - b2**t))
        return {"step": lr * (1.0 - b1) / ((1.0 - b1**t) * c), "eps": self.eps / c}

    def _update(self, p, g, tmp, state, lr):
        # The gradient buffer doubles as scratch space once m has consumed it: one array fewer
        # streams through the cache (the next backward pass overwrites it anyway).
        m, v = state
        k = self._scalars
        m *= self.beta1
        m += g
        np.multiply(g, g, out=g)
        v *= self.beta2
        v += g
        np.sqrt(v, out=g)
        g += k["eps"]
        np.divide(m, g, out=g)
        g *= k["step"]
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
    """Build an optimizer by its config name. `momentum` only matters for momentum/nesterov."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    kw: dict = {
        "l2": l2,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "decay_size": decay_size,
    }
    if name in ("momentum", "nesterov"):
        kw["momentum"] = momentum
    return OPTIMIZERS[name](params, grads, **kw)
