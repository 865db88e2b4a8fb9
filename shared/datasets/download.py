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
    """Mirror base URLs for `name`, each ending with "/": the given list, else the dataset's
    built-in mirrors. A `{name}` placeholder is replaced by the dataset name, so one list (the
    DATASET_MIRRORS setting) serves both datasets (their file names are identical)."""
    urls = [m.replace("{name}", name) for m in (mirrors or dataset_info(name).mirrors)]
    return [url if url.endswith("/") else url + "/" for url in urls]


def _verifies(path: Path, expected: str) -> bool:
    """Whether `path` is a file whose decompressed content has the sha256 `expected`."""
    try:
        return path.is_file() and content_sha256(path)[0] == expected
    except (DatasetError, OSError):
        return False


def _fetch_one(session, url: str, tmp: Path, show_progress: bool) -> None:
    """Stream `url` into `tmp`; raise DatasetError on any HTTP or size problem."""
    # requests, tqdm: only on this network path (a disabled bar prints nothing)
    import requests
    from tqdm import tqdm

    try:
        with session.get(url, stream=True, timeout=(10, 60)) as resp:
            if resp.status_code != 200:
                busy = resp.status_code >= 500 or resp.status_code == 429
                raise DatasetError(f"HTTP {resp.status_code}", transient=busy)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise DatasetError(f"refusing {total} bytes (limit {MAX_DOWNLOAD_BYTES})")
            name, written = url.rsplit("/", 1)[-1], 0
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False,
                       disable=not show_progress)  # fmt: skip
            with bar, open(tmp, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    written += len(chunk)
                    if written > MAX_DOWNLOAD_BYTES:
                        raise DatasetError(f"more than {MAX_DOWNLOAD_BYTES} bytes")
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except requests.RequestException as exc:
        raise DatasetError(f"{type(exc).__name__}: {exc}", transient=True) from None


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str] | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Fetch the four IDX files of `name` into `dest_dir` (see the module's docstring), each
    from the mirrors in turn (`mirror_urls`); return dest_dir. Raises DatasetError listing every
    mirror's failure when no mirror delivers a good copy."""
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
            if any(_verifies(path, expected) for path in idx_candidates(dest, base)):
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
                    for other in idx_candidates(dest, base):  # never picked by a loader again
                        if other != final and other.is_file() and not _verifies(other, expected):
                            with contextlib.suppress(OSError):
                                other.unlink()
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
