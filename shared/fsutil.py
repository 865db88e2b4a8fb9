"""Durable file writes: a reader sees the old file or the new one, never half of one, and a crash
right after the call does not lose the rename.

Used by the model files (`shared.modelfile`) and the registry's state file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a folder's entries (a rename, a new file) durable. Best effort where the platform or
    filesystem cannot fsync a folder (EINVAL/ENOTSUP/EBADF): the data itself was already fsynced;
    only the rename's durability is then up to the OS."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - filesystem dependent
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, tmp_prefix: str) -> None:
    """Write `data` to `path` through a fsynced temp file beside it and one `os.replace`. The temp
    file is named `<tmp_prefix><random hex>` in the same folder (a rename never crosses
    filesystems), so the owner of that folder can recognise and clean up the leftovers of a writer
    that was killed; it is removed here on any error. It is created like any new file (mode 0o666
    less the umask), so readers running as another user can read the result."""
    path = Path(path)
    tmp = path.parent / f"{tmp_prefix}{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
