"""Dataset loaders: small generated IDX/CSV/npz files, every kind of broken file, and real MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared import datasets
from shared.datasets import (
    DatasetError,
    class_names,
    load_dataset,
    load_idx,
    load_kaggle_csv,
    load_npz,
    stratified_split,
)

RNG = np.random.default_rng(0)


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | arr.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.tobytes()


def write(path: Path, data: bytes, gz: bool = True) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for key, base in datasets.SPLIT_FILES.items():
        write(folder / (base + (".gz" if gz else "")), idx_bytes(arrays[key]), gz=gz)
    return arrays


# ---------------------------------------------------------------------------------------------
# IDX


def test_idx_round_trip_gz_and_raw(tmp_path):
    images = RNG.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    gz = write(tmp_path / "a.gz", idx_bytes(images))
    raw = write(tmp_path / "a", idx_bytes(images), gz=False)
    np.testing.assert_array_equal(load_idx(gz), images)
    np.testing.assert_array_equal(load_idx(raw), images)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    np.testing.assert_array_equal(load_idx(write(tmp_path / "l", idx_bytes(labels))), labels)


def test_load_dataset_from_generated_idx(tmp_path):
    arrays = make_idx_dataset(tmp_path / "d")
    ds = load_dataset("mnist", tmp_path / "d")
    assert ds.x_train.shape == (60, 784) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (20, 784)
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
    np.testing.assert_allclose(ds.x_train[3] * 255, arrays["train_images"][3].ravel(), atol=1e-3)
    assert ds.class_names == [str(i) for i in range(10)]
    assert len(ds.fingerprint) == 64


def test_fingerprint_is_content_based(tmp_path):
    """Same content → same fingerprint whether stored .gz or raw; any change → different."""
    arrays = make_idx_dataset(tmp_path / "gz")
    raw = tmp_path / "raw"
    raw.mkdir()
    for key, base in datasets.SPLIT_FILES.items():
        write(raw / base, idx_bytes(arrays[key]), gz=False)
    fp = load_dataset("mnist", tmp_path / "gz").fingerprint
    assert load_dataset("mnist", raw).fingerprint == fp
    labels = arrays["test_labels"].copy()
    labels[0] = (labels[0] + 1) % 10
    write(raw / "t10k-labels-idx1-ubyte", idx_bytes(labels), gz=False)
    assert load_dataset("mnist", raw).fingerprint != fp


def test_wrong_magic_number(tmp_path):
    bad = write(tmp_path / "x.gz", idx_bytes(np.zeros((2, 28, 28)), magic=0x12345678))
    with pytest.raises(DatasetError, match=r"x\.gz.*wrong magic number 0x12345678"):
        load_idx(bad)


def test_labels_file_in_images_slot_is_wrong_magic(tmp_path):
    make_idx_dataset(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*wrong magic.*images"):
        load_dataset("mnist", tmp_path)


def test_truncated_idx(tmp_path):
    data = idx_bytes(RNG.integers(0, 256, (5, 28, 28)))
    bad = write(tmp_path / "t.gz", data[:-100])
    with pytest.raises(DatasetError, match=r"t\.gz: truncated file"):
        load_idx(bad)
    with pytest.raises(DatasetError, match="truncated IDX"):
        load_idx(write(tmp_path / "h", b"\x00\x00", gz=False))
    with pytest.raises(DatasetError, match="truncated IDX header"):
        load_idx(write(tmp_path / "h2", data[:10], gz=False))


def test_truncated_and_corrupt_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(RNG.integers(0, 256, (50, 28, 28))))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz: truncated gzip"):
        load_idx(cut)
    garbled = tmp_path / "garbled.gz"
    garbled.write_bytes(blob[:20] + bytes(200) + blob[220:])
    with pytest.raises(DatasetError, match=r"garbled\.gz"):
        load_idx(garbled)


def test_trailing_bytes(tmp_path):
    bad = write(tmp_path / "t", idx_bytes(np.zeros(4)) + b"junk", gz=False)
    with pytest.raises(DatasetError, match="trailing bytes"):
        load_idx(bad)


def test_count_mismatch(tmp_path):
    make_idx_dataset(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19)))
    with pytest.raises(DatasetError, match=r"t10k-labels.*count mismatch: 19 labels but 20 images"):
        load_dataset("mnist", tmp_path)


def test_wrong_dims(tmp_path):
    make_idx_dataset(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((60, 32, 32))))
    with pytest.raises(DatasetError, match=r"train-images.*wrong image dimensions 32x32"):
        load_dataset("mnist", tmp_path)


def test_label_out_of_range(tmp_path):
    make_idx_dataset(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(60, 12)))
    with pytest.raises(DatasetError, match="label 12 outside 0-9"):
        load_dataset("mnist", tmp_path)


def test_missing_files_and_folder(tmp_path):
    make_idx_dataset(tmp_path / "d")
    (tmp_path / "d" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-images-idx3-ubyte\.gz"):
        load_dataset("mnist", tmp_path / "d")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="file not found"):
        load_idx(tmp_path / "nope.gz")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        load_dataset("cifar", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        datasets.DataLocations(tmp_path).folder("cifar")


def test_locations_from_the_trainer_settings(tmp_path, monkeypatch):
    """The documented fallbacks: <NAME>_DATA_DIR, else DATA_DIR/<name>, else ./var/data/<name>."""
    from trainer_service.settings import TrainerSettings

    for var in ("DATA_DIR", "MNIST_DATA_DIR", "FASHION_MNIST_DATA_DIR", "DATASET_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    assert TrainerSettings.load().data_locations().folder("mnist") == Path("./var/data/mnist")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FASHION_MNIST_DATA_DIR", "/some/where")
    monkeypatch.setenv("MNIST_DATA_DIR", "")
    locations = TrainerSettings.load().data_locations()
    assert locations.folder("mnist") == tmp_path / "mnist"
    assert locations.folder("fashion-mnist") == Path("/some/where")
    assert locations.mirrors == ()
    make_idx_dataset(tmp_path / "mnist")
    assert load_dataset("mnist", locations.folder("mnist")).x_test.shape == (20, 784)


def test_class_names():
    assert class_names("mnist")[7] == "7"
    assert class_names("fashion-mnist")[9] == "Ankle boot"
    assert len(class_names("fashion-mnist")) == 10


# ---------------------------------------------------------------------------------------------
# Kaggle CSV


def kaggle_frame(n: int = 60, labelled: bool = True) -> pd.DataFrame:
    pixels = RNG.integers(0, 256, (n, 784))
    frame = pd.DataFrame(pixels, columns=[f"pixel{i}" for i in range(784)])
    if labelled:
        frame.insert(0, "label", np.arange(n) % 10)
    return frame


def test_kaggle_csv_labelled_and_unlabelled(tmp_path):
    frame = kaggle_frame()
    frame.to_csv(tmp_path / "train.csv", index=False)
    x, y = load_kaggle_csv(tmp_path / "train.csv")
    assert x.dtype == np.uint8 and x.shape == (60, 784)
    np.testing.assert_array_equal(y, frame["label"].to_numpy())
    np.testing.assert_array_equal(x, frame.iloc[:, 1:].to_numpy())
    kaggle_frame(5, labelled=False).to_csv(tmp_path / "test.csv", index=False)
    x, y = load_kaggle_csv(tmp_path / "test.csv")
    assert x.shape == (5, 784) and y is None


def test_kaggle_folder_holds_out_a_stratified_test_split(tmp_path):
    kaggle_frame(600).to_csv(tmp_path / "train.csv", index=False)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x_test.shape == (100, 784) and ds.x_train.shape == (500, 784)
    assert np.bincount(ds.y_test, minlength=10).tolist() == [10] * 10
    assert load_dataset("mnist", tmp_path / "train.csv").fingerprint == ds.fingerprint


def test_stratified_split_is_proportional_and_deterministic():
    y = np.repeat(np.arange(10), [100, 200, 50, 50, 100, 100, 100, 100, 100, 100])
    train, test = stratified_split(y, 100, seed=1)
    assert len(test) == 100 and len(train) == 900
    assert not set(train) & set(test)
    assert np.bincount(y[test]).tolist() == [10, 20, 5, 5, 10, 10, 10, 10, 10, 10]
    np.testing.assert_array_equal(stratified_split(y, 100, seed=1)[1], test)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["pixel5"]), r"wrong columns \(missing pixel5"),
        (lambda f: f.rename(columns={"label": "digit"}), "wrong columns"),
        (lambda f: f.assign(extra=1), "unexpected extra"),
        (lambda f: f.assign(label=np.arange(len(f)) % 11), r"label 10 outside 0-9 \(data row 11\)"),
        (lambda f: f.assign(pixel3=256), "pixel value 256 outside 0-255 in column 'pixel3'"),
        (lambda f: f.assign(pixel7=-1), "pixel value -1 outside 0-255"),
        (lambda f: f.assign(pixel9=12.5), r"non-integer value 12\.5 in column 'pixel9'"),
        (lambda f: f.assign(pixel2="dark"), "non-numeric values in column 'pixel2'"),
        (lambda f: f.assign(label=np.where(np.arange(len(f)) == 4, np.nan, 1)), "missing value"),
    ],
    ids=[
        "missing-col",
        "renamed-label",
        "extra-col",
        "label-range",
        "pixel-high",
        "pixel-neg",
        "fraction",
        "text",
        "nan",
    ],
)
def test_kaggle_csv_broken(tmp_path, mutate, message):
    path = tmp_path / "train.csv"
    mutate(kaggle_frame(20)).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=message) as err:
        load_kaggle_csv(path)
    assert str(path) in str(err.value)


def test_kaggle_csv_empty_and_unlabelled_training(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty CSV"):
        load_kaggle_csv(tmp_path / "empty.csv")
    kaggle_frame(20, labelled=False).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DatasetError, match="no 'label' column"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------
# .npz


def test_npz_round_trip(tmp_path):
    xtr = RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    xte = RNG.integers(0, 256, (10, 784), dtype=np.uint8)
    ytr, yte = np.arange(30) % 10, np.arange(10)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    a, b, c, d = load_npz(tmp_path / "mnist.npz")
    assert a.shape == (30, 784) and c.shape == (10, 784) and b.dtype == np.int64
    ds = load_dataset("mnist", tmp_path / "mnist.npz")
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0
    assert load_dataset("mnist", tmp_path).fingerprint == ds.fingerprint  # folder with one .npz


def test_npz_broken(tmp_path):
    good = {
        "x_train": np.zeros((3, 28, 28), np.uint8),
        "y_train": np.zeros(3, np.int64),
        "x_test": np.zeros((2, 28, 28), np.uint8),
        "y_test": np.zeros(2, np.int64),
    }
    np.savez(tmp_path / "a.npz", **{k: v for k, v in good.items() if k != "y_test"})
    with pytest.raises(DatasetError, match=r"a\.npz: missing arrays y_test"):
        load_npz(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", **{**good, "y_test": np.array([1, None], dtype=object)})
    with pytest.raises(DatasetError, match=r"b\.npz: not a readable \.npz"):
        load_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", **{**good, "x_train": np.zeros((3, 32, 32), np.uint8)})
    with pytest.raises(DatasetError, match="wrong dims"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", **{**good, "y_train": np.zeros(4, np.int64)})
    with pytest.raises(DatasetError, match="count mismatch"):
        load_npz(tmp_path / "d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"e\.npz"):
        load_npz(tmp_path / "e.npz")


# ---------------------------------------------------------------------------------------------
# The real files


def test_embedded_checksums_match_sha256sums(mnist_dir, fashion_mnist_dir):
    for name, folder in (("mnist", mnist_dir), ("fashion-mnist", fashion_mnist_dir)):
        sums = folder / "SHA256SUMS"
        if not sums.exists():
            continue
        listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line)
        for base, digest in datasets.DATASETS[name].sha256.items():
            assert listed[base] == digest, (name, base)


def test_real_mnist(mnist_dir):
    ds = load_dataset("mnist", mnist_dir)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(ds.y_test).tolist()[:3] == [980, 1135, 1032]
    expected = datasets.combine_fingerprint(
        "idx", (datasets.DATASETS["mnist"].sha256[b] for b in datasets.SPLIT_FILES.values())
    )
    assert ds.fingerprint == expected
