"""IDX files (MNIST, Fashion-MNIST): the format, and a folder of the four files as a `Dataset`.

IDX is a big-endian header (magic number, then one 4-byte length per dimension) followed by the
raw unsigned bytes. Every length is checked against the data, because a truncated download
otherwise surfaces much later as a shape error deep in the engine.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from shared.datasets.dataset import N_CLASSES, Dataset, DatasetError, to_model_input
from shared.datasets.fingerprint import GZIP_MAGIC, MAX_DECOMPRESSED_BYTES, combine_fingerprint
from shared.datasets.named import DATASETS, SPLIT_FILES, class_names
from shared.images import IMAGE_SIDE

log = logging.getLogger(__name__)

#: IDX magic numbers: two zero bytes, data type 0x08 (unsigned byte), number of dimensions.
IDX_MAGIC_IMAGES = 0x00000803
IDX_MAGIC_LABELS = 0x00000801


def _read_maybe_gzip(path: Path) -> bytes:
    """File content, gunzipped if it is gzip (detected by magic bytes, not by the suffix)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head != GZIP_MAGIC:
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
    """Read one IDX file (.gz or raw) into a uint8 array of the shape its header declares;
    `expect_ndim` 3 (images) or 1 (labels) turns a swapped file into a clear error."""
    path = Path(path)
    return _parse_idx(_read_maybe_gzip(path), path, expect_ndim)


def idx_candidates(folder: Path, base: str) -> list[Path]:
    """Accepted spellings of one IDX file: .gz, raw, and the common `train-images.idx3-ubyte`."""
    dotted = base.replace("-idx", ".idx")
    return [folder / f"{base}.gz", folder / base, folder / f"{dotted}.gz", folder / dotted]


def find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Map each split file key to the path present in `folder` (None when missing)."""
    found: dict[str, Path | None] = {}
    for key, base in SPLIT_FILES.items():
        found[key] = next((p for p in idx_candidates(folder, base) if p.is_file()), None)
    return found


def missing_idx_files(found: dict[str, Path | None]) -> list[str]:
    """The canonical names (`*.gz`) of the files `find_idx_files` did not find, for messages."""
    return [SPLIT_FILES[k] + ".gz" for k, p in found.items() if p is None]


def load_idx_dataset(folder: Path, name: str = "mnist") -> Dataset:
    """Load the four IDX files of `folder` into a `Dataset`, validating each against the others. A
    file whose content differs from the canonical release of the named dataset is logged, not
    refused: a re-labelled or subsampled copy is a legitimate dataset with its own fingerprint."""
    files = find_idx_files(folder)
    if missing := missing_idx_files(files):
        raise DatasetError(f"{folder}: missing {', '.join(missing)}")
    arrays: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for key, path in files.items():
        assert path is not None
        data = _read_maybe_gzip(path)
        arrays[key] = _parse_idx(data, path, 3 if key.endswith("images") else 1)
        hashes[key] = hashlib.sha256(data).hexdigest()
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img_path, lbl_path = files[f"{split}_images"], files[f"{split}_labels"]
        assert img_path is not None and lbl_path is not None
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DatasetError(
                f"{img_path}: wrong image dimensions {images.shape[1]}x{images.shape[2]} "
                f"(expected {IMAGE_SIDE}x{IMAGE_SIDE})"
            )
        if images.shape[0] == 0:
            raise DatasetError(f"{img_path}: contains no images")
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(
                f"{lbl_path}: image/label count mismatch: {labels.shape[0]} labels but "
                f"{images.shape[0]} images in {img_path.name}"
            )
        if labels.size and int(labels.max()) >= N_CLASSES:
            raise DatasetError(f"{lbl_path}: label {int(labels.max())} outside 0-{N_CLASSES - 1}")
    if (info := DATASETS.get(name)) is not None:
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
        fingerprint=combine_fingerprint("idx", (hashes[k] for k in SPLIT_FILES)),
        class_names=class_names(name),
        source=str(folder),
    )
