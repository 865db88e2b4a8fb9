"""Kaggle's digit-recognizer CSV (`label,pixel0..pixel783`), and a labelled train.csv as a
`Dataset` with a fixed, stratified test hold-out."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from shared.datasets.dataset import N_CLASSES, Dataset, DatasetError, to_model_input
from shared.datasets.fingerprint import combine_fingerprint
from shared.datasets.named import class_names
from shared.datasets.split import stratified_split
from shared.images import N_PIXELS

#: Kaggle's digit-recognizer has no labelled test set: a CSV dataset holds this many rows out.
CSV_TEST_SIZE = 10_000
#: Fixed seed for that hold-out so the split (and thus the fingerprint) never changes.
CSV_SPLIT_SEED = 20240601

_PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]


def _integer_column_values(values: np.ndarray, column: str, path: Path) -> np.ndarray:
    """A CSV column as int64, rejecting missing cells, text and fractional numbers."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise DatasetError(f"{path}: missing value in column {column!r} (data row {row + 1})")
        frac = values != np.round(values)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise DatasetError(
                f"{path}: non-integer value {float(values[row])!r} in column {column!r} "
                f"(data row {row + 1})"
            )
        return values.astype(np.int64)
    raise DatasetError(f"{path}: non-numeric values in column {column!r}")


def load_kaggle_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV, `label,pixel0..pixel783` or unlabelled `pixel0..783`,
    as (x uint8 [N, 784], y int64 [N] or None for the unlabelled test.csv)."""
    import pandas as pd  # pandas is heavy; only CSV users pay for the import

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty CSV file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"{path}: not a valid CSV file ({msg})") from None
    columns = [str(c).strip() for c in frame.columns]
    labelled = bool(columns) and columns[0] == "label"
    expected = (["label"] if labelled else []) + _PIXEL_COLUMNS
    if columns != expected:
        missing = [c for c in expected if c not in set(columns)]
        extra = [c for c in columns if c not in set(expected)]
        detail = [
            f"{what} {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            for what, names in (("missing", missing), ("unexpected", extra))
            if names
        ] or ["columns out of order"]
        raise DatasetError(
            f"{path}: wrong columns ({'; '.join(detail)}); expected "
            f"'label,pixel0..pixel783' or 'pixel0..pixel783'"
        )
    if len(frame) == 0:
        raise DatasetError(f"{path}: no data rows")
    y = None
    if labelled:
        y = _integer_column_values(frame["label"].to_numpy(), "label", path)
        bad = (y < 0) | (y >= N_CLASSES)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{path}: label {int(y[row])} outside 0-{N_CLASSES - 1} (data row {row + 1})"
            )
    pixels = frame[_PIXEL_COLUMNS]
    for col, dtype in pixels.dtypes.items():
        if dtype.kind not in "iu":  # every cell a whole number, or an error naming the first
            _integer_column_values(pixels[col].to_numpy(), col, path)
    x = pixels.to_numpy(dtype=np.int64)
    bad = (x < 0) | (x > 255)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DatasetError(
            f"{path}: pixel value {int(x[row, col])} outside 0-255 in column "
            f"'pixel{col}' (data row {row + 1})"
        )
    return x.astype(np.uint8), y


def load_kaggle_dataset(path: Path, name: str = "mnist") -> Dataset:
    """A `Dataset` from a Kaggle `train.csv` (or a folder holding one). Kaggle's digit-recognizer
    ships no labelled test set (its test.csv is unlabelled), so the test split here is a stratified,
    fixed-seed hold-out of `CSV_TEST_SIZE` (10,000) rows of train.csv — at most a sixth of the rows
    for small files. Test accuracy on such a dataset is therefore NOT comparable to the official
    MNIST 10k test set."""
    csv_path = path / "train.csv" if path.is_dir() else path
    x, y = load_kaggle_csv(csv_path)
    if y is None:
        raise DatasetError(
            f"{csv_path}: has no 'label' column; training needs the labelled train.csv"
        )
    n_test = min(CSV_TEST_SIZE, len(y) // 6)
    if n_test < 1:
        raise DatasetError(
            f"{csv_path}: only {len(y)} rows; need at least 6 to hold out a test set"
        )
    train_idx, test_idx = stratified_split(y, n_test, CSV_SPLIT_SEED)
    with open(csv_path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return Dataset(
        name=name,
        x_train=to_model_input(x[train_idx]),
        y_train=y[train_idx],
        x_test=to_model_input(x[test_idx]),
        y_test=y[test_idx],
        fingerprint=combine_fingerprint("kaggle-csv", [digest, str(n_test), str(CSV_SPLIT_SEED)]),
        class_names=class_names(name),
        source=str(csv_path),
    )
