"""The training data: IDX (MNIST, Fashion-MNIST), Kaggle CSV and .npz, loaded, verified and
downloaded.

Every loader validates what it reads, raises `DatasetError` naming the file and the problem, and
converts once to the model input contract: float32 [N, 784] in [0, 1] with int64 labels. Nothing
here reads the environment: callers pass the folder and the mirrors (`DataLocations`).
"""

from shared.datasets.dataset import Dataset, DatasetError
from shared.datasets.download import download_dataset, mirror_urls
from shared.datasets.fingerprint import combine_fingerprint, content_sha256
from shared.datasets.idx import find_idx_files, idx_candidates, load_idx
from shared.datasets.kaggle_csv import load_kaggle_csv
from shared.datasets.load import load_dataset
from shared.datasets.locations import DataLocations
from shared.datasets.named import DATASET_NAMES, DATASETS, SPLIT_FILES, class_names
from shared.datasets.npz import load_npz
from shared.datasets.split import stratified_split

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "SPLIT_FILES",
    "DataLocations",
    "Dataset",
    "DatasetError",
    "class_names",
    "combine_fingerprint",
    "content_sha256",
    "download_dataset",
    "find_idx_files",
    "idx_candidates",
    "load_dataset",
    "load_idx",
    "load_kaggle_csv",
    "load_npz",
    "mirror_urls",
    "stratified_split",
]
