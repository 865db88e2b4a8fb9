"""Filesystem helpers of the registry: stamps for the stat-based caches, copy-and-hash, reads
that refuse symlinks, fsync of folders, temp-folder names that carry their publisher, and the
state file's JSON form."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.registry.errors import InvalidNameError
from shared.registry.names import TMP_PREFIX, validate_alias, validate_version

logger = logging.getLogger("shared.registry")

_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_STATE_BYTES = 16 * 1024 * 1024
_MAX_HISTORY = 1000
_MAX_ACTOR_LEN = 200
_COPY_CHUNK = 1024 * 1024
_DEFAULT_STALE_TEMP_SECONDS = 3600.0
#: Test-only fault injection (never set in production): when this environment variable names a
#: file, publish() writes the complete temp folder and then waits, before the version-allocating
#: rename, until that file exists. The reliability tests use it to SIGKILL a worker mid-publish and
#: to make several workers rename at the same instant. Unset, it costs one dict lookup.
TEST_PUBLISH_GATE_ENV = "DIGITFLOW_TEST_PUBLISH_GATE"


# --------------------------------------------------------------------------------------------
# Small filesystem helpers


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _lstat(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int, int, int] | None:
    """Identity of a file's content for caching: a replaced or rewritten file changes it."""
    st = _lstat(path)
    if st is None:
        return None
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable. Not all filesystems allow it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - filesystem dependent
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _copy_and_hash(src: Path, dst: Path) -> tuple[str, int]:
    """Copy src to a new file dst (fsynced); return (sha256 hex, size) of the bytes written."""
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


def _read_nofollow(path: Path, limit: int) -> bytes:
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


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _json_default(obj: Any) -> Any:
    """Let callers put NumPy scalars/arrays and Paths in a manifest without converting first."""
    item = getattr(obj, "item", None)
    tolist = getattr(obj, "tolist", None)
    if tolist is not None and getattr(obj, "ndim", 0):
        return tolist()
    if item is not None:
        return item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> bytes:
    """Strict JSON (no NaN/Infinity) so every HTTP client can parse what we serve."""
    return (
        json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n"
    ).encode("utf-8")


def _empty_state() -> dict[str, Any]:
    return {"pinned": None, "aliases": {}, "history": []}


def _parse_state(data: bytes) -> dict[str, Any]:
    """Parse and validate state.json; raise ValueError describing the first problem."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    pinned = raw.get("pinned")
    if pinned is not None:
        try:
            pinned = validate_version(pinned)
        except InvalidNameError as exc:
            raise ValueError(f"bad 'pinned': {exc}") from exc
    aliases = raw.get("aliases", {})
    if not isinstance(aliases, dict):
        raise ValueError("'aliases' is not an object")
    clean_aliases: dict[str, int] = {}
    for alias, target in aliases.items():
        try:
            clean_aliases[validate_alias(alias)] = validate_version(target)
        except InvalidNameError as exc:
            raise ValueError(f"bad alias entry {alias!r}: {exc}") from exc
    history = raw.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError("'history' is not a list of objects")
    return {"pinned": pinned, "aliases": clean_aliases, "history": history}


def _dir_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    st = _lstat(path)
    if st is None:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_nlink)


def _temp_name() -> str:
    """`.tmp-<uuid>.<pid>.<host>`: unique, and names the process that may still be writing it."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
    return f"{TMP_PREFIX}{uuid.uuid4().hex}.{os.getpid()}.{host}"


def _publisher_is_dead(entry_name: str) -> bool:
    """True only if the temp folder was made by a process on this host that no longer runs.

    Other hosts' folders, old-style names and live (or unknowable) publishers are False: those
    wait for the age rule. A reused pid only delays the cleanup, it never deletes live work.
    """
    if not entry_name.startswith(TMP_PREFIX):
        return False
    parts = entry_name[len(TMP_PREFIX) :].split(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"
    if parts[2] != host:
        return False
    pid = int(parts[1])
    return pid != os.getpid() and not process_running(pid)


def process_running(pid: int) -> bool:
    """Whether process `pid` on this host still runs (a zombie does not: it writes nothing).

    When in doubt (no permission to ask) the answer is True, so callers never delete live work.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive under another user
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _wait_for_test_gate() -> None:
    """See TEST_PUBLISH_GATE_ENV: a test-only pause just before the version becomes visible."""
    gate = os.environ.get(TEST_PUBLISH_GATE_ENV)
    if not gate:
        return
    logger.warning(
        "registry: %s is set; waiting for %s before renaming", TEST_PUBLISH_GATE_ENV, gate
    )
    deadline = time.monotonic() + 600
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


def _newest_mtime(path: Path) -> float:
    st = os.lstat(path)
    newest = st.st_mtime
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as it:
            for e in it:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    return newest
