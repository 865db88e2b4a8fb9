"""NumPy .npz datasets holding x_train / y_train / x_test / y_test (e.g. Keras' mnist.npz)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from shared.datasets.dataset import N_CLASSES, Dataset, DatasetError, to_model_input
from shared.datasets.fingerprint import combine_fingerprint
from shared.datasets.named import class_names
from shared.images import IMAGE_SIDE, N_PIXELS

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        arr = arr.reshape(arr.shape[0], N_PIXELS)
    if arr.ndim != 2 or arr.shape[1] != N_PIXELS:
        raise DatasetError(
            f"{path}: {key} has wrong dims {arr.shape} "
            f"(expected [N, {IMAGE_SIDE}, {IMAGE_SIDE}] or [N, {N_PIXELS}])"
        )
    if arr.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: {key} has non-numeric dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise DatasetError(f"{path}: {key} has non-integer pixel values (expected 0-255)")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DatasetError(f"{path}: {key} has pixel values outside 0-255")
    return arr.astype(np.uint8)


def _npz_labels(arr: np.ndarray, key: str, path: Path, n: int) -> np.ndarray:
    if arr.ndim != 1:
        raise DatasetError(f"{path}: {key} has wrong dims {arr.shape} (expected [N])")
    if arr.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} must hold integers, not {arr.dtype}")
    if arr.shape[0] != n:
        raise DatasetError(
            f"{path}: image/label count mismatch: {key} has {arr.shape[0]}, images {n}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= N_CLASSES):
        raise DatasetError(f"{path}: {key} has labels outside 0-{N_CLASSES - 1}")
    return arr.astype(np.int64)


def load_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read an .npz with x_train/y_train/x_test/y_test (e.g. Keras' mnist.npz) as (x_train uint8
    [N, 784], y_train int64, x_test uint8 [M, 784], y_test int64)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if missing := [k for k in _NPZ_KEYS if k not in npz.files]:
                raise DatasetError(
                    f"{path}: missing arrays {', '.join(missing)} (has {', '.join(npz.files)})"
                )
            raw = {k: npz[k] for k in _NPZ_KEYS}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        # ValueError also covers object arrays refused by allow_pickle=False.
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    x_train = _npz_images(raw["x_train"], "x_train", path)
    x_test = _npz_images(raw["x_test"], "x_test", path)
    y_train = _npz_labels(raw["y_train"], "y_train", path, x_train.shape[0])
    y_test = _npz_labels(raw["y_test"], "y_test", path, x_test.shape[0])
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise DatasetError(f"{path}: empty train or test split")
    return x_train, y_train, x_test, y_test


def load_npz_dataset(path: Path, name: str = "mnist") -> Dataset:
    """A `Dataset` from an .npz file (see `load_npz`)."""
    x_train, y_train, x_test, y_test = load_npz(path)
    h = hashlib.sha256()
    for arr in (x_train, y_train, x_test, y_test):
        h.update(np.ascontiguousarray(arr).tobytes())
    return Dataset(
        name=name,
        x_train=to_model_input(x_train),
        y_train=y_train,
        x_test=to_model_input(x_test),
        y_test=y_test,
        fingerprint=combine_fingerprint("npz", [h.hexdigest()]),
        class_names=class_names(name),
        source=str(path),
    )
