"""The training data: IDX (MNIST, Fashion-MNIST), Kaggle CSV and .npz, loaded, verified and
downloaded.

Every loader validates what it reads and raises `DatasetError` naming the file and the problem,
and converts once to the model input contract: float32 [N, 784] in [0, 1] (raw 0-255 divided by
255) with int64 labels. Nothing here reads the environment: callers pass the folder and the
mirrors (`DataLocations`), which the trainer's settings build from the environment.

Modules, by concern: ``dataset`` (`Dataset`, `DatasetError`), ``named`` (MNIST, Fashion-MNIST:
labels, mirrors, checksums), ``idx`` / ``kaggle_csv`` / ``npz`` (one per format), ``fingerprint``
(content hashes), ``split`` (the stratified split), ``download`` (mirrors, verified download),
``load`` (`load_dataset`: a path of any format), ``locations`` (folders and mirrors: `DataLocations`). Import from the package.
"""

from shared.datasets.dataset import N_CLASSES, Dataset, DatasetError, to_model_input
from shared.datasets.download import MAX_DOWNLOAD_BYTES, download_dataset, mirror_urls
from shared.datasets.fingerprint import combine_fingerprint, content_sha256
from shared.datasets.idx import SPLIT_FILES, find_idx_files, idx_candidates, load_idx
from shared.datasets.kaggle_csv import CSV_SPLIT_SEED, CSV_TEST_SIZE, load_kaggle_csv
from shared.datasets.load import load_dataset
from shared.datasets.locations import DataLocations
from shared.datasets.named import DATASET_NAMES, DATASETS, DatasetInfo, class_names, dataset_info
from shared.datasets.npz import load_npz
from shared.datasets.split import stratified_split

__all__ = [
    "CSV_SPLIT_SEED",
    "CSV_TEST_SIZE",
    "DATASETS",
    "DATASET_NAMES",
    "MAX_DOWNLOAD_BYTES",
    "N_CLASSES",
    "SPLIT_FILES",
    "DataLocations",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "class_names",
    "combine_fingerprint",
    "content_sha256",
    "dataset_info",
    "download_dataset",
    "find_idx_files",
    "idx_candidates",
    "load_dataset",
    "load_idx",
    "load_kaggle_csv",
    "load_npz",
    "mirror_urls",
    "stratified_split",
    "to_model_input",
]
