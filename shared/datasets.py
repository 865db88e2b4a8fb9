"""Loading and downloading the training data: IDX (MNIST, Fashion-MNIST), Kaggle CSV and .npz.

Every loader validates what it reads and raises `DatasetError` naming the file and the problem,
because a truncated download or a wrong file otherwise surfaces much later as a shape error deep in
the engine. Every dataset is converted once to the model input contract: float32 [N, 784] in
[0, 1] (raw 0-255 divided by 255) with int64 labels.

The fingerprint of a dataset is derived from the sha256 of the *decompressed* content of its
files, so the same data gives the same fingerprint whether it came as .gz, raw IDX, or from a
mirror that recompressed the .gz (the compressed bytes differ between distributors).

Downloads (`download_dataset`) verify the decompressed sha256 against constants embedded here,
fall through to the next mirror on any failure, and only ever `os.replace` a verified file into
place, so a bad mirror can never leave a bad file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import sys
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10

#: IDX magic numbers: two zero bytes, data type 0x08 (unsigned byte), number of dimensions.
IDX_MAGIC_IMAGES = 0x00000803
IDX_MAGIC_LABELS = 0x00000801

#: Kaggle's digit-recognizer has no labelled test set: a CSV dataset holds this many rows out.
CSV_TEST_SIZE = 10_000
#: Fixed seed for that hold-out so the split (and thus the fingerprint) never changes.
CSV_SPLIT_SEED = 20240601

#: Refuse to download or decompress more than this (the largest real file is ~47 MB).
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 128 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

# The four files of an IDX dataset, in fingerprint order.
SPLIT_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What we know about a named dataset: labels, where to fetch it, and what its files hash to."""

    name: str
    class_names: tuple[str, ...]
    env_var: str
    mirrors: tuple[str, ...]
    #: sha256 of each file's DECOMPRESSED content (from the canonical release; see SHA256SUMS).
    sha256: dict[str, str]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        env_var="MNIST_DATA_DIR",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        env_var="FASHION_MNIST_DATA_DIR",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
    ),
}

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


class DatasetError(ValueError):
    """A dataset file is missing, malformed or failed verification; the message names the file.

    `transient` is True only when the failure was the network's (a refused connection, a timeout,
    HTTP 5xx/429 from every mirror): retrying later may succeed. The RQ job retries on that alone.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class Dataset:
    """A dataset in model-input form: float32 [N, 784] in [0, 1], int64 labels.

    `fingerprint` identifies the exact data (see module docstring), so a model's manifest can say
    what it was trained on.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str
    class_names: list[str] = field(default_factory=lambda: list(DATASETS["mnist"].class_names))
    #: Where it came from: the folder or file path, for messages and manifests.
    source: str = ""


# --------------------------------------------------------------------------------------------
# Small helpers


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` for a named dataset; DatasetError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASET_NAMES)
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None


def class_names(name: str) -> list[str]:
    """Human-readable class names of a named dataset, index = label."""
    return list(dataset_info(name).class_names)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, 28, 28] or [N, 784] → float32 [N, 784] in [0, 1] (the model contract)."""
    flat = images.reshape(images.shape[0], -1)
    out = flat.astype(np.float32)
    out /= np.float32(255.0)
    return out


def _sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_maybe_gzip(path: Path) -> bytes:
    """File content, gunzipped if it is gzip (detected by magic bytes, not by the suffix)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head != _GZIP_MAGIC:
                return fh.read()
            try:
                with gzip.GzipFile(fileobj=fh) as gz:
                    data = gz.read(MAX_DECOMPRESSED_BYTES + 1)
            except EOFError:
                raise DatasetError(
                    f"{path}: truncated gzip file (the download was probably interrupted)"
                ) from None
            except (OSError, zlib.error) as exc:
                raise DatasetError(f"{path}: corrupt gzip data ({exc})") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise DatasetError(f"{path}: permission denied") from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise DatasetError(f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
    return data


# --------------------------------------------------------------------------------------------
# IDX


def _parse_idx(data: bytes, path: Path | str, expect_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes (big-endian header) into a uint8 array, checking every length."""
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    magic = int.from_bytes(data[:4], "big")
    zero, dtype_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08x} (expected 0x{IDX_MAGIC_IMAGES:08x} for "
            f"images or 0x{IDX_MAGIC_LABELS:08x} for labels); not an unsigned-byte IDX file"
        )
    if expect_ndim is not None and ndim != expect_ndim:
        kind = "images" if expect_ndim == 3 else "labels"
        expected = IDX_MAGIC_IMAGES if expect_ndim == 3 else IDX_MAGIC_LABELS
        raise DatasetError(
            f"{path}: wrong magic number 0x{magic:08x} for {kind} (expected 0x{expected:08x})"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} of {header_len} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected_len:
        raise DatasetError(
            f"{path}: truncated file: header says {'x'.join(map(str, dims))} "
            f"({expected_len} bytes) but the file has {len(data)}"
        )
    if len(data) > expected_len:
        raise DatasetError(
            f"{path}: {len(data) - expected_len} unexpected trailing bytes after "
            f"{'x'.join(map(str, dims))} data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def load_idx(path: str | os.PathLike[str], expect_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (.gz or raw) into a uint8 array of the shape its header declares.

    `expect_ndim` 3 (images) or 1 (labels) turns a swapped file into a clear error.
    """
    path = Path(path)
    return _parse_idx(_read_maybe_gzip(path), path, expect_ndim)


def _load_idx_hashed(path: Path, expect_ndim: int) -> tuple[np.ndarray, str]:
    data = _read_maybe_gzip(path)
    return _parse_idx(data, path, expect_ndim), _sha256_hex(data)


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DatasetError(
            f"{path}: wrong image dimensions {images.shape[1]}x{images.shape[2]} "
            f"(expected {IMAGE_SIDE}x{IMAGE_SIDE})"
        )
    if images.shape[0] == 0:
        raise DatasetError(f"{path}: contains no images")


def _check_labels(labels: np.ndarray, path: Path, n_images: int, images_path: Path) -> None:
    if labels.shape[0] != n_images:
        raise DatasetError(
            f"{path}: image/label count mismatch: {labels.shape[0]} labels but "
            f"{n_images} images in {images_path.name}"
        )
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise DatasetError(f"{path}: label {int(labels.max())} outside 0-{N_CLASSES - 1}")


def _idx_candidates(folder: Path, base: str) -> list[Path]:
    """Accepted spellings of one IDX file: .gz, raw, and the common `train-images.idx3-ubyte`."""
    dotted = base.replace("-idx", ".idx")
    return [folder / f"{base}.gz", folder / base, folder / f"{dotted}.gz", folder / dotted]


def find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Map each split file key to the path present in `folder` (None when missing)."""
    found: dict[str, Path | None] = {}
    for key, base in SPLIT_FILES.items():
        found[key] = next((p for p in _idx_candidates(folder, base) if p.is_file()), None)
    return found


def _combine_fingerprint(kind: str, parts: Iterable[str]) -> str:
    """One stable id from per-file content hashes (kind tags the format, so CSV != IDX)."""
    h = hashlib.sha256(kind.encode())
    for part in parts:
        h.update(b"\n" + part.encode())
    return h.hexdigest()


def load_idx_dataset(folder: Path, name: str = "mnist") -> Dataset:
    """Load the four IDX files of `folder` into a `Dataset`, validating each against the others."""
    files = find_idx_files(folder)
    missing = [SPLIT_FILES[k] + ".gz" for k, p in files.items() if p is None]
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)}")
    arrays: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for key, path in files.items():
        assert path is not None
        arrays[key], hashes[key] = _load_idx_hashed(path, 3 if key.endswith("images") else 1)
    for split in ("train", "test"):
        img_path, lbl_path = files[f"{split}_images"], files[f"{split}_labels"]
        assert img_path is not None and lbl_path is not None
        _check_images(arrays[f"{split}_images"], img_path)
        _check_labels(
            arrays[f"{split}_labels"], lbl_path, arrays[f"{split}_images"].shape[0], img_path
        )
    info = DATASETS.get(name)
    if info is not None:
        for key, digest in hashes.items():
            if info.sha256[SPLIT_FILES[key]] != digest:
                log.warning(
                    "%s: content differs from the canonical %s release (sha256 %s)",
                    files[key],
                    name,
                    digest,
                )
    return Dataset(
        name=name,
        x_train=to_model_input(arrays["train_images"]),
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=to_model_input(arrays["test_images"]),
        y_test=arrays["test_labels"].astype(np.int64),
        fingerprint=_combine_fingerprint("idx", (hashes[k] for k in SPLIT_FILES)),
        class_names=list(info.class_names) if info else [str(i) for i in range(N_CLASSES)],
        source=str(folder),
    )


# --------------------------------------------------------------------------------------------
# Kaggle CSV

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
    """Read a Kaggle digit-recognizer CSV: `label,pixel0..pixel783` or unlabelled `pixel0..783`.

    Returns (x uint8 [N, 784], y int64 [N] or None for the unlabelled test.csv).
    """
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
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            detail.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        if not detail:
            detail.append("columns out of order")
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
    kinds = {dt.kind for dt in pixels.dtypes}
    if kinds <= {"i", "u"}:
        x = pixels.to_numpy(dtype=np.int64)
    else:
        for col in _PIXEL_COLUMNS:
            if pixels[col].dtype.kind not in "iu":
                _integer_column_values(pixels[col].to_numpy(), col, path)
        x = pixels.to_numpy(dtype=np.float64).astype(np.int64)
    bad = (x < 0) | (x > 255)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DatasetError(
            f"{path}: pixel value {int(x[row, col])} outside 0-255 in column "
            f"'pixel{col}' (data row {row + 1})"
        )
    return x.astype(np.uint8), y


def stratified_split(
    y: np.ndarray, n_test: int, seed: int = CSV_SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with `n_test` test rows drawn per class in proportion to its size.

    Deterministic for a given seed; both index arrays are sorted so the original order survives.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be between 1 and {n - 1}, got {n_test}")
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * n_test / n
    take = np.floor(quotas).astype(np.int64)
    # Hand out the remaining rows to the classes with the largest fractional parts.
    remainder = n_test - int(take.sum())
    if remainder:
        order = np.argsort(-(quotas - take), kind="stable")
        take[order[:remainder]] += 1
    test_parts = []
    for cls, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(y == cls)
        test_parts.append(rng.choice(idx, size=int(k), replace=False))
    test_idx = np.sort(np.concatenate(test_parts))
    mask = np.ones(n, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def load_kaggle_dataset(path: Path, name: str = "mnist") -> Dataset:
    """A `Dataset` from a Kaggle `train.csv` (or a folder holding one).

    Kaggle's digit-recognizer ships no labelled test set (its test.csv is unlabelled), so the test
    split here is a stratified, fixed-seed hold-out of `CSV_TEST_SIZE` (10,000) rows of train.csv
    — at most a sixth of the rows for small files. Test accuracy on such a dataset is therefore
    NOT comparable to the official MNIST 10k test set.
    """
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
    train_idx, test_idx = stratified_split(y, n_test)
    with open(csv_path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    info = DATASETS.get(name)
    return Dataset(
        name=name,
        x_train=to_model_input(x[train_idx]),
        y_train=y[train_idx],
        x_test=to_model_input(x[test_idx]),
        y_test=y[test_idx],
        fingerprint=_combine_fingerprint("kaggle-csv", [digest, str(n_test), str(CSV_SPLIT_SEED)]),
        class_names=list(info.class_names) if info else [str(i) for i in range(N_CLASSES)],
        source=str(csv_path),
    )


# --------------------------------------------------------------------------------------------
# .npz

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        arr = arr.reshape(arr.shape[0], N_PIXELS)
    if arr.ndim != 2 or arr.shape[1] != N_PIXELS:
        raise DatasetError(
            f"{path}: {key} has wrong dims {arr.shape} (expected [N, 28, 28] or [N, 784])"
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


def load_npz(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read an .npz with x_train/y_train/x_test/y_test (e.g. Keras' mnist.npz).

    Returns (x_train uint8 [N, 784], y_train int64, x_test uint8 [M, 784], y_test int64).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _NPZ_KEYS if k not in npz.files]
            if missing:
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
    info = DATASETS.get(name)
    return Dataset(
        name=name,
        x_train=to_model_input(x_train),
        y_train=y_train,
        x_test=to_model_input(x_test),
        y_test=y_test,
        fingerprint=_combine_fingerprint("npz", [h.hexdigest()]),
        class_names=list(info.class_names) if info else [str(i) for i in range(N_CLASSES)],
        source=str(path),
    )


# --------------------------------------------------------------------------------------------
# Resolution + load_dataset


def default_data_dir(name: str) -> Path:
    """Folder of a named dataset: $MNIST_DATA_DIR / $FASHION_MNIST_DATA_DIR, else $DATA_DIR/<name>."""
    info = dataset_info(name)
    override = os.environ.get(info.env_var)
    if override:
        return Path(override)
    return Path(os.environ.get("DATA_DIR") or "./var/data") / name


def load_dataset(
    name: str = "mnist", data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> Dataset:
    """Load a dataset in model-input form.

    `data_dir` may be a folder holding the four IDX files (.gz or raw), a folder holding a Kaggle
    `train.csv` (test = stratified 10k hold-out, see `load_kaggle_dataset`), a `.csv` file or an
    `.npz` file. None → `default_data_dir(name)`. With `download=True`, missing IDX files are
    fetched into that folder first (verified, atomic), and damaged ones are replaced.
    """
    info = dataset_info(name)
    path = Path(data_dir) if data_dir is not None else default_data_dir(name)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz_dataset(path, name)
        if path.suffix.lower() == ".csv":
            return load_kaggle_dataset(path, name)
        raise DatasetError(f"{path}: unsupported dataset file (expected a folder, .npz or .csv)")
    if path.is_dir():
        files = find_idx_files(path)
        if all(p is not None for p in files.values()):
            try:
                return load_idx_dataset(path, name)
            except DatasetError:
                if not download:
                    raise
                # A damaged copy in a folder we may download into: fetch verified files over
                # the bad ones (download_dataset keeps every file that verifies), then retry.
                log.warning("dataset in %s is damaged; downloading verified copies", path)
                download_dataset(info.name, path)
                return load_idx_dataset(path, name)
        if not any(p is not None for p in files.values()):
            if (path / "train.csv").is_file():
                return load_kaggle_dataset(path, name)
            npz = sorted(path.glob("*.npz"))
            if len(npz) == 1:
                return load_npz_dataset(npz[0], name)
    elif path.exists():
        raise DatasetError(f"{path}: not a file or folder")
    if download:
        download_dataset(info.name, path)
        return load_idx_dataset(path, name)
    if not path.exists():
        raise DatasetError(
            f"{path}: dataset folder not found (pass --data-dir, set {info.env_var}, "
            f"or allow downloading)"
        )
    missing = [SPLIT_FILES[k] + ".gz" for k, p in find_idx_files(path).items() if p is None]
    raise DatasetError(f"{path}: missing {', '.join(missing)} (no IDX files, train.csv or .npz)")


# --------------------------------------------------------------------------------------------
# Download


def configured_mirrors(name: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """Mirror base URLs for `name`: explicit list, else $DATASET_MIRRORS, else the built-in list.

    A `{name}` placeholder in a URL is replaced by the dataset name, so one DATASET_MIRRORS value
    can serve both datasets (their file names are identical).
    """
    if mirrors is None:
        env = os.environ.get("DATASET_MIRRORS", "").strip()
        mirrors = [m.strip() for m in env.split(",") if m.strip()] if env else None
    if not mirrors:
        mirrors = list(dataset_info(name).mirrors)
    out = []
    for m in mirrors:
        url = m.replace("{name}", name)
        out.append(url if url.endswith("/") else url + "/")
    return out


def _verify_file(path: Path) -> tuple[str, bool]:
    """(sha256 of the decompressed content, whether the file is gzip), streaming."""
    h = hashlib.sha256()
    total = 0
    with open(path, "rb") as fh:
        is_gzip = fh.read(2) == _GZIP_MAGIC
        fh.seek(0)
        if is_gzip:
            try:
                with gzip.GzipFile(fileobj=fh) as gz:
                    while chunk := gz.read(_CHUNK):
                        total += len(chunk)
                        if total > MAX_DECOMPRESSED_BYTES:
                            raise DatasetError(f"{path}: decompresses to too many bytes")
                        h.update(chunk)
            except EOFError:
                raise DatasetError("truncated gzip data") from None
            except (OSError, zlib.error) as exc:
                raise DatasetError(f"corrupt gzip data ({exc})") from None
        else:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest(), is_gzip


def _existing_ok(dest_dir: Path, base: str, expected: str) -> Path | None:
    """An already-present copy of `base` whose decompressed content verifies, if any."""
    for candidate in _idx_candidates(dest_dir, base):
        if candidate.is_file():
            try:
                digest, _ = _verify_file(candidate)
            except (DatasetError, OSError):
                continue
            if digest == expected:
                return candidate
    return None


def _remove_bad_copies(dest_dir: Path, base: str, expected: str, keep: Path) -> None:
    """Delete other spellings of `base` that fail verification, so loaders never pick them."""
    for candidate in _idx_candidates(dest_dir, base):
        if candidate == keep or not candidate.is_file():
            continue
        try:
            digest, _ = _verify_file(candidate)
        except (DatasetError, OSError):
            digest = ""
        if digest != expected:
            with contextlib.suppress(OSError):
                candidate.unlink()


def _fetch_one(session, url: str, tmp: Path, show_progress: bool) -> None:
    """Stream `url` into `tmp`; raise DatasetError on any HTTP or size problem."""
    import requests

    try:
        with session.get(url, stream=True, timeout=(10, 60)) as resp:
            if resp.status_code != 200:
                busy = resp.status_code >= 500 or resp.status_code == 429
                raise DatasetError(f"HTTP {resp.status_code}", transient=busy)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise DatasetError(f"refusing {total} bytes (limit {MAX_DOWNLOAD_BYTES})")
            bar = None
            if show_progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=url.rsplit("/", 1)[-1],
                    leave=False,
                )
            written = 0
            try:
                with open(tmp, "wb") as out:
                    for chunk in resp.iter_content(_CHUNK):
                        written += len(chunk)
                        if written > MAX_DOWNLOAD_BYTES:
                            raise DatasetError(f"more than {MAX_DOWNLOAD_BYTES} bytes")
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if bar is not None:
                    bar.close()
    except requests.RequestException as exc:
        raise DatasetError(f"{type(exc).__name__}: {exc}", transient=True) from None


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str] | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Fetch the four IDX files of `name` into `dest_dir`, verified and atomically; return dest_dir.

    Files already present whose decompressed content verifies are kept. Each missing file is tried
    on every mirror in turn (see `configured_mirrors`); a download is streamed into a temp file in
    `dest_dir`, its DECOMPRESSED sha256 checked against the embedded constant, and only then
    `os.replace`d into place — so a failing or corrupt mirror never leaves a bad file behind.
    Raises DatasetError listing every mirror's failure when no mirror delivers a good copy.
    """
    import requests

    info = dataset_info(name)
    dest = Path(dest_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{dest}: cannot create the dataset folder ({exc})") from None
    urls = configured_mirrors(name, mirrors)
    show_progress = sys.stderr.isatty() if progress is None else progress
    with requests.Session() as session:
        for base, expected in info.sha256.items():
            if _existing_ok(dest, base, expected) is not None:
                continue
            failures: list[str] = []
            all_transient = True
            for mirror in urls:
                url = mirror + base + ".gz"
                fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{base}.", suffix=".part")
                os.close(fd)
                tmp = Path(tmp_name)
                try:
                    _fetch_one(session, url, tmp, show_progress)
                    digest, is_gzip = _verify_file(tmp)
                    if digest != expected:
                        raise DatasetError(f"sha256 mismatch (got {digest[:12]}…)")
                    # A server that applied Content-Encoding hands us the raw IDX: store it raw.
                    final = dest / (base + ".gz" if is_gzip else base)
                    os.replace(tmp, final)
                    log.info("downloaded %s from %s", final, url)
                    _remove_bad_copies(dest, base, expected, keep=final)
                    break
                except (DatasetError, OSError) as exc:
                    failures.append(f"{url}: {exc}")
                    all_transient &= getattr(exc, "transient", False)
                    # INFO, not WARNING: the next mirror may well work, and if none does the
                    # DatasetError below lists every failure anyway.
                    log.info("download failed, trying the next mirror: %s: %s", url, exc)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
            else:
                raise DatasetError(
                    f"could not download {base}.gz for {name} into {dest} from any mirror: "
                    + "; ".join(failures),
                    transient=all_transient,
                )
    return dest
