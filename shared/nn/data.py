"""Mini-batches: a `BatchIterator` turns (inputs, targets) into the batches of one epoch.

Batches are gathered with np.take(..., out=) from the caller's arrays into two reused buffers: no
per-epoch copy of the data set and no per-batch allocation. A yielded batch stays valid until the
next one is requested (the training loop consumes it at once).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class BatchIterator:
    """Shuffled mini-batches of `batch_size` rows (the last one takes the remainder; a remainder
    of a single row sits that epoch out — a batch of one has no batch statistics for batch norm,
    and the next shuffle picks another row).

    `batch_size` 0 (or at least the number of rows) means full batch: the arrays themselves, in
    their own order (a full-batch gradient does not depend on the order). `rng` reshuffles the
    rows every epoch; None keeps them in order.
    """

    def __init__(self, batch_size: int, rng: np.random.Generator | None = None) -> None:
        self.batch_size = int(batch_size)
        self.rng = rng
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None

    def size(self, n: int) -> int:
        """Rows per batch for n rows of data."""
        return n if self.batch_size == 0 or self.batch_size >= n else self.batch_size

    def rows(self, n: int) -> int:
        """Rows used per epoch out of n (all but a lone trailing row)."""
        size = self.size(n)
        return n - 1 if size > 1 and n % size == 1 else n

    def steps(self, n: int) -> int:
        """Batches per epoch over n rows."""
        return -(-self.rows(n) // self.size(n))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(y)
        size = self.size(n)
        if size == n:
            yield x, y
            return
        order = np.arange(n) if self.rng is None else self.rng.permutation(n)
        xb, yb = self._buffers(size, x, y)
        for start in range(0, self.rows(n), size):
            idx = order[start : start + size]
            rows = len(idx)
            yield (
                np.take(x, idx, axis=0, out=xb[:rows], mode="clip"),
                np.take(y, idx, out=yb[:rows], mode="clip"),
            )

    def _buffers(self, size: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xb, yb = self._x, self._y
        if xb is None or yb is None or xb.shape != (size, *x.shape[1:]) or xb.dtype != x.dtype:
            xb = self._x = np.empty((size, *x.shape[1:]), x.dtype)
            yb = self._y = np.empty(size, y.dtype)
        return xb, yb
