"""Learning-rate schedules: a schedule is a callable lr(epoch, step).

`epoch` counts from 0 and `step` is the batch index inside that epoch (0 .. steps_per_epoch-1),
so schedules can change the rate smoothly inside an epoch (cosine does, per step).
"""

from __future__ import annotations

import math


class Schedule:
    """Base: constant learning rate."""

    def __init__(self, base_lr: float, *, epochs: int, steps_per_epoch: int) -> None:
        self.base_lr = float(base_lr)
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)

    def __call__(self, epoch: int, step: int) -> float:
        return self.base_lr

    def progress(self, epoch: int, step: int) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return (epoch * self.steps_per_epoch + step) / (self.epochs * self.steps_per_epoch)


class Constant(Schedule):
    """lr = base_lr throughout."""


class StepDecay(Schedule):
    """lr = base_lr * gamma^k, k = number of milestones passed (default: at 50% and 75% of epochs),
    changed at epoch boundaries as in the classic step schedule."""

    def __init__(
        self,
        base_lr: float,
        *,
        epochs: int,
        steps_per_epoch: int,
        gamma: float = 0.1,
        milestones: tuple[float, ...] = (0.5, 0.75),
    ) -> None:
        super().__init__(base_lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
        self.gamma = float(gamma)
        self.milestone_epochs = sorted(max(1, round(f * self.epochs)) for f in milestones)

    def __call__(self, epoch: int, step: int) -> float:
        passed = sum(1 for m in self.milestone_epochs if epoch >= m)
        return self.base_lr * self.gamma**passed


class Cosine(Schedule):
    """lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2, updated every step: it
    starts at base_lr and reaches min_lr (default 0) just after the last step."""

    def __init__(
        self, base_lr: float, *, epochs: int, steps_per_epoch: int, min_lr: float = 0.0
    ) -> None:
        super().__init__(base_lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
        self.min_lr = float(min_lr)

    def __call__(self, epoch: int, step: int) -> float:
        t = self.progress(epoch, step)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class Warmup(Schedule):
    """Linear warm-up over the first `warmup_epochs`, then `inner` for the remaining epochs.

    During warm-up lr rises linearly, per step, from base_lr / W to base_lr (W = warm-up steps),
    which keeps Adam's first, noisy updates small. `inner` must be built for the epochs that
    remain after the warm-up; it is called with epochs counted from the end of the warm-up.
    """

    def __init__(self, inner: Schedule, warmup_epochs: int) -> None:
        super().__init__(
            inner.base_lr,
            epochs=inner.epochs + warmup_epochs,
            steps_per_epoch=inner.steps_per_epoch,
        )
        self.inner, self.warmup_epochs = inner, int(warmup_epochs)

    def __call__(self, epoch: int, step: int) -> float:
        if epoch < self.warmup_epochs:
            done = epoch * self.steps_per_epoch + step + 1
            return self.base_lr * done / (self.warmup_epochs * self.steps_per_epoch)
        return self.inner(epoch - self.warmup_epochs, step)


SCHEDULES: dict[str, type[Schedule]] = {"constant": Constant, "step": StepDecay, "cosine": Cosine}


def make_schedule(
    name: str, base_lr: float, *, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0
) -> Schedule:
    """The schedule named in the config, wrapped in a linear warm-up when warmup_epochs > 0 (one
    that would take every epoch is shortened so at least one epoch follows it)."""
    warmup = max(0, min(int(warmup_epochs), epochs - 1))
    inner = SCHEDULES[name](base_lr, epochs=epochs - warmup, steps_per_epoch=steps_per_epoch)
    return Warmup(inner, warmup) if warmup > 0 else inner
