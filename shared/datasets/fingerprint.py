"""Content hashes: what a dataset's fingerprint and a download's verification are made of.

A fingerprint is derived from the sha256 of the *decompressed* content of a dataset's files, so
the same data gives the same fingerprint whether it came as .gz, raw IDX, or from a mirror that
recompressed the .gz (the compressed bytes differ between distributors). The same decompressed
hash is what a download is checked against (`shared.datasets.named.DATASETS[...].sha256`).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable
from pathlib import Path

from shared.datasets.dataset import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
#: Refuse to decompress more than this (the largest real file is ~47 MB).
MAX_DECOMPRESSED_BYTES = 128 * 1024 * 1024
_CHUNK = 1 << 20


def combine_fingerprint(kind: str, parts: Iterable[str]) -> str:
    """One stable id from per-file content hashes (kind tags the format, so CSV != IDX)."""
    h = hashlib.sha256(kind.encode())
    for part in parts:
        h.update(b"\n" + part.encode())
    return h.hexdigest()


def content_sha256(path: Path) -> tuple[str, bool]:
    """(sha256 of the decompressed content, whether the file is gzip), streaming; gzip is
    detected by its magic bytes, not by the file name."""
    with open(path, "rb") as fh:
        if fh.read(2) != GZIP_MAGIC:
            fh.seek(0)
            return hashlib.file_digest(fh, "sha256").hexdigest(), False
        fh.seek(0)
        h, total = hashlib.sha256(), 0
        try:
            with gzip.GzipFile(fileobj=fh) as gz:
                while chunk := gz.read(_CHUNK):
                    total += len(chunk)
                    if total > MAX_DECOMPRESSED_BYTES:
                        raise DatasetError(f"{path}: decompresses to too many bytes")
                    h.update(chunk)
        except EOFError:
            raise DatasetError("truncated gzip data") from None
        except (OSError, zlib.error) as exc:
            raise DatasetError(f"corrupt gzip data ({exc})") from None
    return h.hexdigest(), True
