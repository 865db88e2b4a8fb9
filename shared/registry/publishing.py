"""Making a version visible in one step on a folder: the files go into a temp folder, then one
`os.rename(tmp, <model>/<v>)` publishes them (why: the package docstring); and the cleanup of
what crashed publishes leave."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from shared import __version__ as PACKAGE_VERSION
from shared.fsutil import fsync_dir
from shared.registry.errors import RegistryError
from shared.registry.files import copy_and_hash, json_bytes, newest_mtime, now_iso
from shared.registry.names import (
    MANIFEST_FILE,
    MAX_VERSION,
    STATE_TMP_PREFIX,
    TMP_PREFIX,
    WEIGHTS_FILE,
)
from shared.registry.paths import version_entries

logger = logging.getLogger("shared.registry")

#: A temp folder of a publisher that may still be alive is removed after this long untouched.
DEFAULT_STALE_TEMP_SECONDS = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def temp_name() -> str:
    """`.tmp-<uuid>.<pid>.<host>`: unique, and names the process that may still be writing it."""
    return f"{TMP_PREFIX}{publisher_tag()}"


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


def publisher_is_dead(name: str) -> bool:
    """True only if a temp folder (``.tmp-<tag>``) or an S3 upload (a bare `publisher_tag`) was
    made by a process on this host that no longer runs.

    Other hosts', unnamed and live (or unknowable) publishers are False: those wait for the age
    rule. A reused pid only delays the cleanup, it never deletes live work.
    """
    parts = name.removeprefix(TMP_PREFIX).split(".", 2)
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] != _host():
        return False
    pid = int(parts[1])
    return pid != os.getpid() and not process_running(pid)


def version_numbers(model_dir: Path) -> list[int]:
    """Every version-shaped entry, whatever its type: allocation must never reuse one."""
    try:
        return [int(e.name) for e in version_entries(model_dir)]
    except FileNotFoundError:
        return []


def final_manifest(manifest: dict[str, Any], hashes: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """The manifest a version is published with, on every storage: the caller's keys, then the
    computed ones over them (sha256, size_bytes, created_at, package_version, files), from the
    (sha256, size) of every file."""
    sha, size = hashes[WEIGHTS_FILE]
    return {
        **manifest,
        "sha256": sha,
        "size_bytes": size,
        "created_at": now_iso(),
        "package_version": PACKAGE_VERSION,
        "files": {
            f: {"sha256": f_sha, "size_bytes": f_size}
            for f, (f_sha, f_size) in hashes.items()
            if f != WEIGHTS_FILE
        },
    }


def publisher_tag() -> str:
    """`<uuid>.<pid>.<host>`: a unique name for one publish that says who made it."""
    return f"{uuid.uuid4().hex}.{os.getpid()}.{_host()}"


def write_version_folder(
    tmp: Path, weights: Path, extras: dict[str, Path], manifest: dict[str, Any]
) -> None:
    """Fill the new folder `tmp`: copies of the files and the final manifest, all fsynced."""
    sources = [(WEIGHTS_FILE, weights), *sorted(extras.items())]
    hashes = {f: copy_and_hash(src, tmp / f) for f, src in sources}
    with open(tmp / MANIFEST_FILE, "xb") as fh:
        fh.write(json_bytes(final_manifest(manifest, hashes)))
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(tmp)


def allocate_version(model_dir: Path, tmp: Path) -> int:
    """Rename `tmp` to the next free version number and return it: the publishing step.

    The filesystem arbitrates collisions: a rename onto an existing version fails, and we try
    past everything that exists now. Every version-shaped entry counts, the files that deleted
    versions leave included (`LocalStorage.delete_version`), so numbers only grow.
    """
    v = max(version_numbers(model_dir), default=0) + 1
    for _ in range(10_000):
        if v > MAX_VERSION:
            raise RegistryError(f"{model_dir}: version numbers exhausted")
        try:
            os.rename(tmp, model_dir / str(v))
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
            v = max(v, *version_numbers(model_dir), 0) + 1  # someone else took v
            continue
        fsync_dir(model_dir)
        return v
    raise RegistryError(f"{model_dir}: could not allocate a version number")


def remove_stale_temps(model_dir: Path, cutoff: float) -> int:
    """Delete the temp folders/files (crashed publishes and state writes) in `model_dir` last
    touched before `cutoff` (a Unix time), and those of a dead publisher on this host whatever
    their age. Age is the newest mtime of the folder and its entries, so a slow publish still
    writing is not removed under its feet. Returns how many were removed."""
    try:
        entries = list(os.scandir(model_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.startswith((TMP_PREFIX, STATE_TMP_PREFIX)):
            continue
        try:
            orphan = publisher_is_dead(entry.name)
            if not orphan and newest_mtime(Path(entry.path)) > cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
            logger.info("registry: removed stale temp %s", entry.path)
        except FileNotFoundError:
            continue
    return removed
