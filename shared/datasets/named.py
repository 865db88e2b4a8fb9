"""The named datasets (MNIST, Fashion-MNIST): their labels, mirrors and file checksums.

Both are published as the same four IDX files (`SPLIT_FILES`); the sha256 values are of each
file's DECOMPRESSED content, from the canonical release (see SHA256SUMS), so a mirror that
recompressed the .gz still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.datasets.dataset import DatasetError, digit_class_names

#: The four files of an IDX dataset, in fingerprint order.
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
    #: Environment variable that may name a folder holding a local copy (a trainer setting;
    #: named in error messages).
    env_var: str
    mirrors: tuple[str, ...]
    #: sha256 of each file's DECOMPRESSED content, by IDX file base name.
    sha256: dict[str, str]


def _by_file(*sha256: str) -> dict[str, str]:
    """The four files' sha256 values, given in `SPLIT_FILES` order, by IDX file base name."""
    return dict(zip(SPLIT_FILES.values(), sha256, strict=True))


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(digit_class_names()),
        env_var="MNIST_DATA_DIR",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256=_by_file(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
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
        sha256=_by_file(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` for a named dataset; DatasetError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASET_NAMES)
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None


def class_names(name: str) -> list[str]:
    """Human-readable class names of a dataset, index = label ("0".."9" for unnamed ones)."""
    info = DATASETS.get(name)
    return list(info.class_names) if info is not None else digit_class_names()
