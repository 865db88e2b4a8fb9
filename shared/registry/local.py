"""The registry on a plain folder (the default storage): the layout and guarantees of the package
docstring, built from `publishing`, `verification` and `state`."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from shared.fsutil import fsync_dir
from shared.registry.errors import ModelNotFoundError, RegistryError
from shared.registry.files import dir_stamp, file_stamp, lstat_or_none, read_nofollow
from shared.registry.names import STATE_FILE, WEIGHTS_FILE
from shared.registry.paths import RegistryPaths, version_entries
from shared.registry.publishing import (
    allocate_version,
    remove_stale_temps,
    temp_name,
    write_version_folder,
)
from shared.registry.state import Change, StateFiles, delete_version_change
from shared.registry.storage import Storage
from shared.registry.verification import VerifiedVersions, broken, version_stamps

logger = logging.getLogger(__name__)

#: Refuse to read an extra file this large into memory (reports are tens of kilobytes).
MAX_EXTRA_FILE_BYTES = 32 * 1024 * 1024


class LocalStorage(Storage):
    """A registry rooted at a folder shared by trainers (writers) and inference (readers).

    Safe across processes and machines sharing the folder; read methods never write to disk.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._paths = RegistryPaths(root)
        self.root = Path(self._paths.root)
        self.location = str(self.root)
        self._verified_versions = VerifiedVersions()
        self._states = StateFiles()

    # ---- listing ---------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        names = []
        for name in self._paths.model_names_on_disk():
            try:
                entries = version_entries(self._paths.prefix + name)
            except OSError:
                continue
            if any(e.is_dir(follow_symlinks=False) for e in entries):
                names.append(name)
        return names

    def require_model(self, name: str) -> None:
        self._paths.existing_model(name)

    def versions(self, name: str) -> list[int]:
        model_dir = self._paths.existing_model(name)
        try:
            entries = version_entries(model_dir)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model {name!r} not found in the registry") from exc
        folders = [e for e in entries if e.is_dir(follow_symlinks=False)]
        self._verified_versions.retain(model_dir, {e.path for e in folders})
        return sorted(int(e.name) for e in folders)

    # ---- versions --------------------------------------------------------------------------

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        return self._verified_versions.manifest(name, version, self._paths.version(name, version))

    def weights_path(self, name: str, version: int) -> Path:
        """The file itself, once the version verifies (cached by file identity: a few stats)."""
        self.manifest(name, version)
        return Path(self._paths.version(name, version)) / WEIGHTS_FILE

    def release(self, name: str, version: int) -> None:
        """Nothing to do: `weights_path` handed out the registry's own file."""

    def read_file(self, name: str, version: int, file_name: str, entry: dict[str, Any]) -> bytes:
        path = os.path.join(self._paths.version(name, version), file_name)
        size = int(entry["size_bytes"])
        data = read_nofollow(path, min(size, MAX_EXTRA_FILE_BYTES))
        if len(data) != size:
            raise OSError(errno.EIO, f"{path}: not the file the manifest describes")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise broken(name, version, f"{file_name} sha256 mismatch")
        return data

    def version_identity(self, name: str, version: int) -> Hashable:
        """The stamps of the manifest and the weights: they move when either is replaced or
        rewritten."""
        try:
            return version_stamps(self._paths.version(name, version), None)
        except RegistryError:
            return None

    # ---- state -----------------------------------------------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        return self._states.view(name, self._paths.existing_model(name))

    def change_state(self, name: str, change: Change) -> dict[str, Any]:
        return self._states.change(name, Path(self._paths.existing_model(name)), change)

    # ---- writing ---------------------------------------------------------------------------

    def publish(
        self, name: str, weights: Path, extras: dict[str, Path], manifest: dict[str, Any]
    ) -> int:
        """Fill a temp folder, then rename it to the next free number (`allocate_version`)."""
        model_dir = self._ensure_model_dir(name)
        tmp = model_dir / temp_name()
        os.mkdir(tmp)
        try:
            write_version_folder(tmp, weights, extras, manifest)
            return allocate_version(model_dir, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _ensure_model_dir(self, name: str) -> Path:
        model_dir = Path(self._paths.model(name))
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(model_dir)
        except FileExistsError:
            pass
        else:
            fsync_dir(self.root)
        st = lstat_or_none(model_dir)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise RegistryError(f"{model_dir} exists but is not a directory")
        return model_dir

    def delete_version(self, name: str, version: int, actor: str | None) -> None:
        """The folder is first renamed to a temp name under the state lock (one atomic step:
        readers see the version or nothing), then deleted; a crash in between leaves a temp
        folder that the next publish cleans up. An empty file takes the folder's place so the
        number is never reused (as on S3): readers list folders only, and numbering skips
        every version-shaped name. A reused number would hand new weights to whatever cached
        the old ones by (model, version): inference workers, browsers."""
        path = Path(self._paths.version(name, version))
        doomed = path.parent / temp_name()

        def remove() -> None:
            os.rename(path, doomed)
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                # A publisher that chose this number before it was even published renamed its
                # folder here in the instant since: its version is complete and keeps it.
                logger.warning("registry: %s was published again while being deleted", path)
            fsync_dir(path.parent)

        self.change_state(name, delete_version_change(name, version, remove, actor))
        shutil.rmtree(doomed, ignore_errors=True)

    def cleanup(self, max_age_seconds: float, name: str | None) -> int:
        """Temp folders/files older than max_age, and those of a dead publisher on this host."""
        cutoff = time.time() - max_age_seconds
        names = [name] if name is not None else self._paths.model_names_on_disk()
        return sum(remove_stale_temps(Path(self._paths.model(model)), cutoff) for model in names)

    # ---- change detection ------------------------------------------------------------------

    def change_token(self, name: str | None) -> Hashable:
        """With `name`: 2 lstat calls (the model folder: inode/mtime/nlink, which move when a
        version folder appears or disappears; state.json: inode/size/mtime/ctime, a new inode on
        every atomic replace). Without: the root's stamp plus that pair for every model folder."""

        def stamps(n: str) -> Hashable:
            model_dir = self._paths.prefix + n
            return (n, dir_stamp(model_dir), file_stamp(model_dir + os.sep + STATE_FILE))

        if name is not None:
            return stamps(name)
        return (dir_stamp(self._paths.root), tuple(map(stamps, self._paths.model_names_on_disk())))
