"""download_dataset against a real local HTTP server (never the internet).

The server's folder holds several "mirrors" of MNIST: a good one (symlinks to the real files), one
that recompressed the training images (different bytes, same content — must be accepted), one
that serves raw IDX under the .gz name (what a Content-Encoding: gzip server looks like to requests), one
serving corrupt files, and one with nothing (404).
"""

from __future__ import annotations

import gzip
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from shared import datasets
from shared.datasets import DatasetError, download_dataset, load_dataset

BASES = list(datasets.SPLIT_FILES.values())


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests_seen: list[str]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests_seen.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory, mnist_dir) -> Path:
    root = tmp_path_factory.mktemp("mirrors")
    good, recompressed, raw, bad = (root / n for n in ("good", "recompressed", "raw", "bad"))
    for folder in (good, recompressed, raw, bad, root / "empty"):
        folder.mkdir()
    for base in BASES:
        (good / f"{base}.gz").symlink_to(mnist_dir / f"{base}.gz")
    # One recompressed file and one raw body are enough to show both paths (kept small: fast).
    content = gzip.decompress((mnist_dir / f"{BASES[2]}.gz").read_bytes())
    (recompressed / f"{BASES[2]}.gz").write_bytes(gzip.compress(content, compresslevel=1))
    content = gzip.decompress((mnist_dir / f"{BASES[3]}.gz").read_bytes())
    (raw / f"{BASES[3]}.gz").write_bytes(content)
    # Four different kinds of bad file, one per name.
    images = bytearray(gzip.decompress((mnist_dir / f"{BASES[0]}.gz").read_bytes()))
    images[5000] ^= 0xFF  # valid gzip, valid IDX, wrong content
    (bad / f"{BASES[0]}.gz").write_bytes(gzip.compress(bytes(images), compresslevel=1))
    labels = (mnist_dir / f"{BASES[1]}.gz").read_bytes()
    (bad / f"{BASES[1]}.gz").write_bytes(labels[: len(labels) // 2])  # truncated
    (bad / f"{BASES[2]}.gz").write_bytes(np.random.default_rng(0).bytes(5000))  # garbage
    (bad / f"{BASES[3]}.gz").write_text("<html>Service temporarily unavailable</html>")
    return root


@pytest.fixture(scope="module")
def server(mirror_root):
    seen: list[str] = []
    handler = type("H", (_Handler,), {"requests_seen": seen})

    def factory(*args, **kwargs):
        return handler(*args, directory=str(mirror_root), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def idx_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_verified(folder: Path) -> None:
    for base, digest in datasets.DATASETS["mnist"].sha256.items():
        path = next(p for p in datasets.idx_candidates(folder, base) if p.exists())
        assert datasets.content_sha256(path)[0] == digest


def test_bad_mirror_falls_through_to_good(server, tmp_path):
    url, seen = server
    seen.clear()
    dest = tmp_path / "mnist"
    out = download_dataset("mnist", dest, [f"{url}/bad/", f"{url}/good/"])
    assert out == dest
    assert idx_files(dest) == sorted(f"{b}.gz" for b in BASES)  # no temp files left behind
    assert_verified(dest)
    assert sum(p.startswith("/bad/") for p in seen) == 4  # every file was tried there first
    ds = load_dataset("mnist", dest)
    assert ds.x_train.shape == (60000, 784)


def seed(dest: Path, mnist_dir: Path, except_base: str) -> None:
    dest.mkdir(parents=True)
    for base in BASES:
        if base != except_base:
            (dest / f"{base}.gz").symlink_to(mnist_dir / f"{base}.gz")


def test_recompressed_and_raw_mirrors_are_accepted(server, tmp_path, mnist_dir):
    """Verification is on decompressed content, so a recompressed .gz or a raw body is fine."""
    url, _ = server
    seed(tmp_path / "a", mnist_dir, BASES[2])
    download_dataset("mnist", tmp_path / "a", [f"{url}/empty/", f"{url}/recompressed"])
    assert (tmp_path / "a" / f"{BASES[2]}.gz").read_bytes() != (
        mnist_dir / f"{BASES[2]}.gz"
    ).read_bytes()
    assert_verified(tmp_path / "a")
    seed(tmp_path / "b", mnist_dir, BASES[3])
    download_dataset("mnist", tmp_path / "b", [f"{url}/raw/"])
    assert (tmp_path / "b" / BASES[3]).is_file()  # stored raw, under the raw name
    assert_verified(tmp_path / "b")
    assert load_dataset("mnist", tmp_path / "b").y_test.shape == (10000,)


def test_all_mirrors_bad(server, tmp_path):
    url, _ = server
    dest = tmp_path / "mnist"
    with pytest.raises(DatasetError) as err:
        download_dataset("mnist", dest, [f"{url}/bad/", f"{url}/empty/"])
    message = str(err.value)
    assert "from any mirror" in message and BASES[0] in message
    assert "/bad/" in message and "sha256 mismatch" in message
    assert "/empty/" in message and "HTTP 404" in message
    assert not err.value.transient  # bad data and a 404 will not heal by retrying
    assert idx_files(dest) == []  # nothing half-downloaded, nothing unverified


def test_each_kind_of_corruption_is_rejected(server, tmp_path, mnist_dir):
    """Wrong content, truncated gzip, garbage and an HTML page are all refused, never put in place."""
    url, _ = server
    dest = tmp_path / "d"
    for base in BASES:  # pre-seed every other file, so the download reaches exactly this bad one
        seed(dest, mnist_dir, base)
        with pytest.raises(DatasetError, match=base):
            download_dataset("mnist", dest, [f"{url}/bad/"])
        assert not (dest / f"{base}.gz").exists()
        assert not list(dest.glob(".*.part"))
        for other in BASES:
            (dest / f"{other}.gz").unlink(missing_ok=True)
        dest.rmdir()


def test_existing_good_files_are_kept_and_bad_ones_replaced(server, tmp_path):
    url, seen = server
    dest = tmp_path / "mnist"
    download_dataset("mnist", dest, [f"{url}/good/"])
    seen.clear()
    download_dataset("mnist", dest, [f"{url}/good/"])
    assert seen == []  # everything verified locally, nothing fetched
    (dest / f"{BASES[3]}.gz").write_bytes(b"corrupt")
    download_dataset("mnist", dest, [f"{url}/good/"])
    assert seen == [f"/good/{BASES[3]}.gz"]
    assert_verified(dest)


def test_load_dataset_download_repairs_a_damaged_copy(server, tmp_path, mnist_dir):
    url, seen = server
    seed(tmp_path / "mnist", mnist_dir, BASES[1])
    (tmp_path / "mnist" / f"{BASES[1]}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01junk"))
    with pytest.raises(DatasetError, match=BASES[1]):
        load_dataset("mnist", tmp_path / "mnist")
    seen.clear()
    ds = load_dataset("mnist", tmp_path / "mnist", download=True, mirrors=[f"{url}/good/"])
    assert seen == [f"/good/{BASES[1]}.gz"] and ds.y_train.shape == (60000,)


def test_env_mirrors_with_name_placeholder_and_load_dataset_download(server, tmp_path, monkeypatch):
    from trainer_service.settings import TrainerSettings

    url, _ = server
    # "{name}" lets one DATASET_MIRRORS value serve several datasets; here only /good/ exists.
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("DATASET_MIRRORS", f"{url}/empty/{{name}}/, {url}/good")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    locations = TrainerSettings.load().data_locations()
    assert datasets.mirror_urls("mnist", locations.mirrors) == [
        f"{url}/empty/mnist/",
        f"{url}/good/",
    ]
    folder = locations.folder("mnist")
    assert folder == tmp_path / "mnist"
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("mnist", folder)
    ds = load_dataset("mnist", folder, download=True, mirrors=locations.mirrors)
    assert ds.x_test.shape == (10000, 784)
    assert_verified(tmp_path / "mnist")


def test_builtin_mirrors_are_real_https_or_http_urls():
    for info in datasets.DATASETS.values():
        assert info.mirrors
        for mirror in datasets.mirror_urls(info.name):
            assert mirror.startswith(("https://", "http://")) and mirror.endswith("/")


def test_unreachable_mirror(tmp_path):
    # Port 9 on localhost: connection refused immediately, no network involved.
    with pytest.raises(DatasetError, match="ConnectionError") as err:
        download_dataset("mnist", tmp_path, ["http://127.0.0.1:9/"])
    assert err.value.transient  # the network's fault: worth a retry later
    assert list(tmp_path.iterdir()) == []
