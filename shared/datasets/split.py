"""A stratified, seeded train/test split: the one the Kaggle CSV hold-out and the engine's
validation split both use."""

from __future__ import annotations

import numpy as np


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), both sorted so the original order survives, with `n_test` test rows
    drawn per class in proportion to its size, deterministic for a given seed: class c of n_c rows
    gets floor(n_test * n_c / n), the rows still missing go to the largest fractional parts."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be between 1 and {n - 1}, got {n_test}")
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * n_test / n
    take = np.floor(quotas).astype(np.int64)
    remainder = n_test - int(take.sum())
    if remainder:
        order = np.argsort(-(quotas - take), kind="stable")
        take[order[:remainder]] += 1
    test_parts = []
    for cls, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(y == cls)
        test_parts.append(rng.choice(idx, size=int(k), replace=False))
    test_idx = np.sort(np.concatenate(test_parts))
    return np.setdiff1d(np.arange(n), test_idx, assume_unique=True), test_idx
