"""Filesystem helpers of the registry: stamps for the stat-based caches, copy-and-hash, reads
that refuse symlinks, the `flock` of writers, and the strict JSON every registry file is written
in."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from shared.manifest import json_default

_COPY_CHUNK = 1024 * 1024


def now_iso() -> str:
    """The current UTC time as ISO 8601, as manifests and history entries record it."""
    return datetime.now(UTC).isoformat()


def lstat_or_none(path: str | os.PathLike[str]) -> os.stat_result | None:
    """`os.lstat`, or None when nothing is there."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int, int, int] | None:
    """Identity of a file's content for caching: a replaced or rewritten file changes it."""
    st = lstat_or_none(path)
    if st is None:
        return None
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def dir_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """Identity of a folder's entries: moves when an entry appears or disappears."""
    st = lstat_or_none(path)
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_nlink)


def hash_stream(fin: BinaryIO, fout: BinaryIO | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of everything read from `fin`, copied to `fout` too when given."""
    digest, size = hashlib.sha256(), 0
    while chunk := fin.read(_COPY_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if fout is not None:
            fout.write(chunk)
    return digest.hexdigest(), size


def copy_and_hash(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to a new file dst (fsynced); return (sha256 hex, size) of the bytes written."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        result = hash_stream(fin, fout)
        fout.flush()
        os.fsync(fout.fileno())
    return result


def read_nofollow(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a regular file without following a symlink; refuse files larger than `limit`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read without following a symlink."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
        return hash_stream(fh)


def newest_mtime(path: Path) -> float:
    """The newest mtime of `path` and, for a folder, of its entries (a write in progress)."""
    st = os.lstat(path)
    newest = st.st_mtime
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as it:
            for e in it:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    return newest


@contextlib.contextmanager
def flocked(path: str | os.PathLike[str], mode: int) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created with `mode` if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def json_bytes(obj: Any) -> bytes:
    """Strict JSON (no NaN/Infinity) so every HTTP client can parse what we serve. NumPy values
    and Paths are converted (`shared.manifest.json_default`), so callers need not first."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=json_default)
    return (text + "\n").encode("utf-8")
