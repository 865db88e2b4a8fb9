"""The local copies an object-store registry hands out (``REGISTRY_CACHE_DIR``), kept within a
size limit (``REGISTRY_CACHE_MAX_MB``).

One folder per version, named by its upload (whose bytes never change). Every process using the
cache folder (each gunicorn worker, the trainer) shares it, so what protects a folder works across
processes and dies with them: `flock` locks on the version folders themselves.

* **A held folder is never removed.** A process holds a version's folder (a shared lock) from the
  moment it fetches a file into it until it releases it: a reader until the bytes are read,
  inference for as long as the version is loaded (`Registry.release`). The pruner removes a folder
  only under an exclusive, non-blocking lock: never one any process holds or is downloading into.
* **A removal is a rename first**, under that lock, to ``.trash-<uuid>``, then the delete: a
  process waiting to hold the folder then finds its path gone or a new folder (another inode) and
  starts again, so no one ever takes a half-deleted folder for a version.
* **Least recently used first.** Handing a file out touches its folder; the pruner (one at a time
  per cache: an exclusive lock on ``.prune.lock``) removes the unheld folders touched longest ago
  until the total size is within the limit. It runs after every download, and when a process
  releases its last hold on a folder while its last prune could not get within the limit (held
  folders alone exceeded it): a read of a cached file does not walk the cache. With a limit of 0
  only held folders stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Hashable
from pathlib import Path

from shared.registry.files import flocked

logger = logging.getLogger("shared.registry")

#: ``REGISTRY_CACHE_MAX_MB``'s default.
DEFAULT_CACHE_MAX_MB = 1024
_TRASH = ".trash-"


class DownloadCache:
    """Version folders under `root` (``<root>/<model>/<upload>/``), held by this process or not;
    pruned to `max_bytes` (see the module docstring). Thread-safe."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: key → [folder, fd holding the shared lock, number of holds]
        self._held: dict[Hashable, list] = {}
        #: Whether the last prune left the cache over its limit (what is held exceeded it).
        self._over = False

    def hold(self, key: Hashable, folder: Path) -> None:
        """Hold `folder` (made when missing) under `key` until as many `release(key)`."""
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held[2] += 1
                return
            while True:  # until what is locked is what the path names (a pruner may race)
                try:
                    # A pruner renaming the folder away between mkdir's "exists" and its own
                    # is-a-directory check makes mkdir raise FileExistsError: try again.
                    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:
                    continue
                except FileExistsError:
                    if folder.exists() and not folder.is_dir():
                        raise  # a file where a version folder belongs: not a race
                    continue
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a pruner removes it
                if _same_file(folder, fd):
                    break
                os.close(fd)
            self._held[key] = [folder, fd, 1]

    def release(self, key: Hashable) -> None:
        """One hold of `key` less; at the last one the folder may be pruned."""
        with self._lock:
            held = self._held.get(key)
            if held is None:
                return
            held[2] -= 1
            if held[2] > 0:
                return
            del self._held[key]
            os.close(held[1])
        if self._over:
            self.prune()

    def prune(self) -> None:
        """Remove the unheld folders used longest ago until the cache is within its limit.
        Housekeeping: a failure is logged, never raised."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            with flocked(self.root / ".prune.lock", 0o600):
                folders, total = [], 0
                for model in _subdirs(self.root):
                    for folder in _subdirs(model):
                        if folder.name.startswith(_TRASH):  # a pruner died mid-delete
                            shutil.rmtree(folder, ignore_errors=True)
                            continue
                        used, size = _usage(folder)
                        folders.append((used, size, folder))
                        total += size
                for _used, size, folder in sorted(folders):
                    if total <= self.max_bytes:
                        break
                    if _remove(folder):
                        total -= size
                        logger.info("registry: pruned %s from the download cache", folder)
                self._over = total > self.max_bytes
        except OSError as exc:
            logger.warning("registry: could not prune the download cache %s: %s", self.root, exc)


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _usage(folder: Path) -> tuple[int, int]:
    """(last used: the folder's mtime in ns, bytes of its files)."""
    used = os.lstat(folder).st_mtime_ns
    size = 0
    with os.scandir(folder) as it:
        for entry in it:
            with contextlib.suppress(FileNotFoundError):  # a download's temp file, renamed
                size += entry.stat(follow_symlinks=False).st_size
    return used, size


def _remove(folder: Path) -> bool:
    """Remove `folder` unless a process holds it; whether it is gone."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        trash = folder.with_name(f"{_TRASH}{uuid.uuid4().hex}")
        os.rename(folder, trash)
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True
