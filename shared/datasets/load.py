"""`load_dataset`: whatever a dataset path holds (IDX folder, Kaggle CSV, .npz) as a `Dataset`,
downloading a named dataset's IDX files first when asked."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from shared.datasets.dataset import Dataset, DatasetError
from shared.datasets.download import download_dataset
from shared.datasets.idx import find_idx_files, load_idx_dataset, missing_idx_files
from shared.datasets.kaggle_csv import load_kaggle_dataset
from shared.datasets.named import dataset_info
from shared.datasets.npz import load_npz_dataset

log = logging.getLogger(__name__)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str],
    *,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
) -> Dataset:
    """Load named dataset `name` from `data_dir` in model-input form: a folder holding the four
    IDX files (.gz or raw) or a Kaggle `train.csv` (test = stratified 10k hold-out, see
    `load_kaggle_dataset`), a `.csv` or an `.npz` file. With `download=True`, missing IDX files are
    fetched into that folder first from `mirrors` (None: the built-in ones; verified, atomic), and
    damaged ones are replaced."""
    info = dataset_info(name)
    path = Path(data_dir)
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
                # the bad ones below (download_dataset keeps every file that verifies).
                log.warning("dataset in %s is damaged; downloading verified copies", path)
        elif not any(p is not None for p in files.values()):
            if (path / "train.csv").is_file():
                return load_kaggle_dataset(path, name)
            npz = sorted(path.glob("*.npz"))
            if len(npz) == 1:
                return load_npz_dataset(npz[0], name)
    elif path.exists():
        raise DatasetError(f"{path}: not a file or folder")
    if download:
        download_dataset(info.name, path, mirrors)
        return load_idx_dataset(path, name)
    if not path.exists():
        raise DatasetError(
            f"{path}: dataset folder not found (pass --data-dir, set {info.env_var}, "
            f"or allow downloading)"
        )
    missing = missing_idx_files(find_idx_files(path))
    raise DatasetError(f"{path}: missing {', '.join(missing)} (no IDX files, train.csv or .npz)")
