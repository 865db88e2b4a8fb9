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

Pre-scaled gradients: an optimizer may ask for the gradient multiplied by a known per-step factor
`grad_scale()` (Adam does: it saves one pass over the parameters, see Adam). Back-propagation is
linear in the loss gradient, so the training loop multiplies dL/dlogits (batch x classes, nearly
free) and every parameter gradient arrives scaled. Built with `prescaled=True` the optimizer
trusts that; otherwise (the default) it scales the gradient itself. Clipping and L2 are applied
to the scaled gradient with the same factor, so both stay exact.

`step()` consumes the gradient: afterwards `grads` holds scratch values (the next backward pass
overwrites it). Reusing it as scratch saves a memory stream in the memory-bound update.

All updates are in place and allocation-free. (Splitting the element-wise work across Python
threads was measured and dropped: OpenBLAS's worker threads spin on the other core between
matrix products, so a second NumPy thread made training epochs slower, not faster. So was
splitting whole steps: two Python threads, each with single-threaded BLAS running half the batch
and updating half the parameters, lost to GIL hand-offs and thread wake-ups on 2 cores; and
updating the flat vector in cache-sized blocks lost to per-call overhead, since the float32
square root makes the update partly compute-bound.)
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
        prescaled: bool = False,
    ) -> None:
        if params.shape != grads.shape or params.dtype != grads.dtype:
            raise ValueError("params and grads must have the same shape and dtype")
        if params.ndim != 1 or not params.flags.c_contiguous:
            raise ValueError("optimizers work on one flat, contiguous parameter vector")
        self.params, self.grads = params, grads
        self.l2, self.weight_decay, self.grad_clip = float(l2), float(weight_decay), grad_clip
        self.decay_size = params.size if decay_size is None else int(decay_size)
        self.prescaled = bool(prescaled)  # grads arrive multiplied by grad_scale()
        self.t = 0  # number of steps taken
        self._tmp = np.empty_like(params)
        self._scalars: dict[str, float] = {}

    def state_arrays(self) -> list[np.ndarray]:
        """Per-parameter state vectors (same length as params) the update uses."""
        return []

    def grad_scale(self) -> float:
        """The factor the next step wants the gradient multiplied by (1: plain gradient)."""
        return 1.0

    def step(self, lr: float) -> None:
        """Apply one update with learning rate `lr` (from the schedule)."""
        scale = self.grad_scale()
        self.t += 1
        p, g, tmp = self.params, self.grads, self._tmp
        if scale != 1.0 and not self.prescaled:
            g *= scale
        if self.grad_clip is not None:
            clip_grad_norm(g, self.grad_clip * scale)
        self._scalars = self._prepare(float(lr))
        d = self.decay_size  # leading entries that are weights
        if d > 0:
            if self.l2:
                np.multiply(p[:d], self.l2 * scale, out=tmp[:d])
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

    Implementation: stored are M = s m / (1 - b1) and V = s^2 v / (1 - b2), where s = s_t is a
    per-step factor the gradient carries (`grad_scale()`: the training loop pre-multiplies the
    loss gradient by it). With s_t = b2^(-k/2), k = 1, 2, ... counting steps, the recurrences become

        M = [b1 s_t / s_(t-1)] M + s g            (one multiply, one add)
        V = [b2 s_t^2 / s_(t-1)^2] V + (s g)^2 = V + (s g)^2   (the factor is exactly 1)

    so V needs no decay pass, and since M / (sqrt(V) + s e) = m' / (sqrt(v') + e) for the
    unscaled m' = M / s, v' = V / s^2, every constant folds into two per-step scalars:
        w -= [lr (1 - b1) / ((1 - b1^t) c)] * M / (sqrt(V) + s eps / c),  c = sqrt((1 - b2) / (1 - b2^t))
    which is exactly the update above in 9 in-place ufuncs (10 without the pre-scaled gradient).

    s grows (by b2^(-1/2) per step); to keep V = s^2 v far from float32 overflow, k restarts at 1
    every `renorm_every` steps (s^2 <= 1024) and that step's V factor, b2^(1 - renorm_every),
    is applied as an ordinary multiply pass (once every ~7000 steps for b2 = 0.999).
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
        if not 0.0 < beta2 < 1.0 or not 0.0 <= beta1 < 1.0:
            raise ValueError("Adam needs 0 <= beta1 < 1 and 0 < beta2 < 1")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        # Steps per scale cycle: s^2 = b2^-k stays <= 2^10.
        self.renorm_every = max(1, int(10 * math.log(2) / -math.log(self.beta2)))
        self.m = np.zeros_like(params)  # holds M = s m / (1 - b1)
        self.v = np.zeros_like(params)  # holds V = s^2 v / (1 - b2)

    def state_arrays(self):
        return [self.m, self.v]

    def _k(self, t: int) -> int:
        """Exponent of step t's scale: s_t = b2^(-k/2), k in 1..renorm_every (0 before step 1)."""
        return 0 if t == 0 else (t - 1) % self.renorm_every + 1

    def grad_scale(self) -> float:
        return self.beta2 ** (-self._k(self.t + 1) / 2)

    def _prepare(self, lr):
        b1, b2, t = self.beta1, self.beta2, self.t
        k, k_prev = self._k(t), self._k(t - 1)
        s = b2 ** (-k / 2)
        c = math.sqrt((1.0 - b2) / (1.0 - b2**t))
        return {
            "m_decay": b1 * b2 ** ((k_prev - k) / 2),
            # b2 * s_t^2 / s_(t-1)^2 = b2^(1 - k + k_prev): exactly 1 except when k restarts.
            "v_decay_exponent": 1 - k + k_prev,
            "step": lr * (1.0 - b1) / ((1.0 - b1**t) * c),
            "eps": s * self.eps / c,
        }

    def _update(self, p, g, tmp, state, lr):
        # g arrives multiplied by s. The gradient buffer doubles as scratch space once M has
        # consumed it: one array fewer streams through the cache.
        m, v = state
        k = self._scalars
        m *= k["m_decay"]
        m += g
        np.multiply(g, g, out=g)
        if k["v_decay_exponent"] != 0:
            v *= self.beta2 ** k["v_decay_exponent"]
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
    prescaled: bool = False,
) -> Optimizer:
    """Build an optimizer by its config name. `momentum` only matters for momentum/nesterov;
    `prescaled=True` promises gradients multiplied by `grad_scale()` (see the module doc)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    kw: dict = {
        "l2": l2,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "decay_size": decay_size,
        "prescaled": prescaled,
    }
    if name in ("momentum", "nesterov"):
        kw["momentum"] = momentum
    return OPTIMIZERS[name](params, grads, **kw)
