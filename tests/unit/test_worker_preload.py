"""The worker's warm-up (trainer_service.worker.preload): a preloaded dataset is used only while its
files are exactly the ones read, and WORKER_PRELOAD_DATASETS is parsed strictly."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from shared.datasets import DataLocations, load_dataset
from shared.web.settings import SettingsError
from trainer_service.settings import TrainerSettings
from trainer_service.worker import jobs, preload


@pytest.fixture(autouse=True)
def nothing_preloaded(monkeypatch):
    """Each test starts from a worker that has preloaded nothing."""
    monkeypatch.setattr(preload, "_datasets", {})


@pytest.fixture
def mnist_copy(tmp_path, mnist_dir, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for path in mnist_dir.glob("*-ubyte*"):
        shutil.copy2(path, folder / path.name)
    monkeypatch.setenv("MNIST_DATA_DIR", str(folder))
    return folder


def test_preload_names(monkeypatch):
    monkeypatch.delenv("WORKER_PRELOAD_DATASETS", raising=False)

    def names(value):
        return TrainerSettings.load({"WORKER_PRELOAD_DATASETS": value}).worker_preload_datasets

    assert names(None) == names("") == ("mnist", "fashion-mnist")
    assert names("none") == ()
    assert names(" Mnist ") == ("mnist",)
    with pytest.raises(SettingsError, match="WORKER_PRELOAD_DATASETS"):
        names("mnist,cifar")


def test_preloaded_dataset_is_used_until_its_files_change(mnist_copy):
    assert preload.preload_datasets(["mnist"], _here(mnist_copy)) == ["mnist"]
    ds = preload.preloaded_dataset("mnist", mnist_copy)
    assert ds is not None
    fresh = load_dataset("mnist", mnist_copy)
    assert ds.fingerprint == fresh.fingerprint
    np.testing.assert_array_equal(ds.x_train[:100], fresh.x_train[:100])
    # The job takes the preloaded copy (same object), not a new load.
    settings = TrainerSettings.load({"MNIST_DATA_DIR": str(mnist_copy)})
    assert jobs._load_dataset(jobs.TrainConfig(), settings) is ds

    # Replaced in place (a new inode, same content): no longer trusted, loaded again.
    labels = next(mnist_copy.glob("t10k-labels*"))
    data = labels.read_bytes()
    labels.unlink()
    labels.write_bytes(data)
    assert preload.preloaded_dataset("mnist", mnist_copy) is None
    again = jobs._load_dataset(jobs.TrainConfig(), settings)
    assert again is not ds and again.fingerprint == ds.fingerprint


def test_touched_file_invalidates(mnist_copy):
    preload.preload_datasets(["mnist"], _here(mnist_copy))
    images = next(mnist_copy.glob("train-images*"))
    st = os.stat(images)
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert preload.preloaded_dataset("mnist", mnist_copy) is None


def test_absent_dataset_is_skipped(tmp_path):
    folder = tmp_path / "nothing-here"
    locations = DataLocations(tmp_path, folders={"fashion-mnist": folder})
    assert preload.preload_datasets(["fashion-mnist"], locations) == []
    assert preload.preloaded_dataset("fashion-mnist", folder) is None


def _here(folder):
    """Locations with MNIST in `folder`, as the worker builds them from MNIST_DATA_DIR."""
    return DataLocations(folder.parent, folders={"mnist": folder})
