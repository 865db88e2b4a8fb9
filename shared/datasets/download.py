"""Checksum-verified download of a named dataset's four IDX files from its mirrors.

Each file is streamed into a temp file beside its destination, its DECOMPRESSED sha256 checked
against the constant in `shared.datasets.named`, and only then `os.replace`d into place; any
failure falls through to the next mirror. So a failing or corrupt mirror never leaves a bad file
behind, and files already present that verify are never fetched again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.datasets.dataset import DatasetError
from shared.datasets.fingerprint import content_sha256
from shared.datasets.idx import idx_candidates
from shared.datasets.named import dataset_info

log = logging.getLogger(__name__)

#: Refuse to download more than this (the largest real file is ~47 MB compressed).
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
_CHUNK = 1 << 20


def mirror_urls(name: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """Mirror base URLs for `name`: the given list, else the dataset's built-in mirrors.

    A `{name}` placeholder in a URL is replaced by the dataset name, so one list (e.g. the
    DATASET_MIRRORS setting) can serve both datasets (their file names are identical). Each URL
    ends with "/" so a file name can be appended.
    """
    if not mirrors:
        mirrors = list(dataset_info(name).mirrors)
    out = []
    for m in mirrors:
        url = m.replace("{name}", name)
        out.append(url if url.endswith("/") else url + "/")
    return out


def _existing_ok(dest_dir: Path, base: str, expected: str) -> Path | None:
    """An already-present copy of `base` whose decompressed content verifies, if any."""
    for candidate in idx_candidates(dest_dir, base):
        if candidate.is_file():
            try:
                digest, _ = content_sha256(candidate)
            except (DatasetError, OSError):
                continue
            if digest == expected:
                return candidate
    return None


def _remove_bad_copies(dest_dir: Path, base: str, expected: str, keep: Path) -> None:
    """Delete other spellings of `base` that fail verification, so loaders never pick them."""
    for candidate in idx_candidates(dest_dir, base):
        if candidate == keep or not candidate.is_file():
            continue
        try:
            digest, _ = content_sha256(candidate)
        except (DatasetError, OSError):
            digest = ""
        if digest != expected:
            with contextlib.suppress(OSError):
                candidate.unlink()


def _fetch_one(session, url: str, tmp: Path, show_progress: bool) -> None:
    """Stream `url` into `tmp`; raise DatasetError on any HTTP or size problem."""
    # requests: only on this network path
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
                # tqdm: only when a progress bar is shown
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
    on every mirror in turn (see `mirror_urls`); a download is streamed into a temp file in
    `dest_dir`, its DECOMPRESSED sha256 checked against the embedded constant, and only then
    `os.replace`d into place — so a failing or corrupt mirror never leaves a bad file behind.
    Raises DatasetError listing every mirror's failure when no mirror delivers a good copy.
    """
    # requests: only on this network path
    import requests

    info = dataset_info(name)
    dest = Path(dest_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{dest}: cannot create the dataset folder ({exc})") from None
    urls = mirror_urls(name, mirrors)
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
                    digest, is_gzip = content_sha256(tmp)
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
