"""The `Registry` class: the one object callers use, tying together the paths, verification,
state and publishing modules (see the package docstring for the layout and why)."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

from shared.fsutil import fsync_dir
from shared.registry.errors import (
    AliasNotFoundError,
    BrokenVersionError,
    ModelNotFoundError,
    ReadOnlyRegistryError,
    RegistryError,
    VersionNotFoundError,
)
from shared.registry.files import dir_stamp, file_stamp, json_bytes, lstat_or_none
from shared.registry.names import (
    RESERVED_REFS,
    STATE_FILE,
    WEIGHTS_FILE,
    is_model_name,
    validate_alias,
    validate_extra_file_name,
    validate_model_name,
    validate_version,
)
from shared.registry.paths import RegistryPaths, version_entries
from shared.registry.publishing import (
    DEFAULT_STALE_TEMP_SECONDS,
    allocate_version,
    remove_stale_temps,
    temp_name,
    write_version_folder,
)
from shared.registry.state import (
    StateFiles,
    delete_alias_change,
    delete_version_change,
    field_change,
    promotion_change,
    set_alias_change,
    validate_ref,
    validate_routes,
)
from shared.registry.verification import VerifiedVersions

logger = logging.getLogger("shared.registry")


class Registry:
    """A model registry rooted at a folder shared by trainers (writers) and inference (readers).

    Thread-safe; safe across processes and machines sharing the folder. Read methods never write
    to disk. `read_only=True` additionally makes every write method raise ReadOnlyRegistryError,
    which is what inference should use.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        stale_temp_seconds: float = DEFAULT_STALE_TEMP_SECONDS,
    ) -> None:
        self._paths = RegistryPaths(root)
        self.root = Path(self._paths.root)
        self.read_only = read_only
        self.stale_temp_seconds = float(stale_temp_seconds)
        self._verified_versions = VerifiedVersions()
        self._states = StateFiles()
        self._lock = threading.Lock()
        self._logged_bad_pin: set[tuple[str, int, str]] = set()

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r}, read_only={self.read_only})"

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyRegistryError(f"{self!r} is read-only")

    # ---- listing -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Names (sorted) of models that have at least one published version folder."""
        names = []
        for name in self._paths.model_names_on_disk():
            try:
                entries = version_entries(self._paths.prefix + name)
            except OSError:
                continue
            if any(e.is_dir(follow_symlinks=False) for e in entries):
                names.append(name)
        return names

    def versions(self, name: str) -> list[int]:
        """Every published version folder of `name`, ascending, including broken ones.

        A folder only appears through publish()'s atomic rename, so it is complete unless it was
        damaged later; use describe_versions() / verify() to tell good from broken.
        Raises ModelNotFoundError if the model folder does not exist.
        """
        model_dir = self._paths.existing_model(name)
        try:
            entries = version_entries(model_dir)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model {name!r} not found in the registry") from exc
        return sorted(int(e.name) for e in entries if e.is_dir(follow_symlinks=False))

    # ---- verification ------------------------------------------------------------------------

    def weights_path(self, name: str, version: int | str) -> Path:
        """Path of the version's weights.npz (not verified: call verify() for the sha256)."""
        return Path(self._paths.version(name, version)) / WEIGHTS_FILE

    def manifest(self, name: str, version: int | str) -> dict[str, Any]:
        """The version's manifest plus "version"; raises BrokenVersionError if it fails verify()."""
        return self.verify(name, version)

    def verify(self, name: str, version: int | str) -> dict[str, Any]:
        """Check manifest, weights and extra files (sizes + sha256); return the manifest.

        The result (good or broken) is cached by the identity of every file involved, so a second
        call costs a few lstat() calls. Raises VersionNotFoundError if the folder does not exist
        and BrokenVersionError (logged once per version and reason) if anything is wrong.
        """
        v = validate_version(version)
        out = copy.deepcopy(self._verified(name, v))
        out["version"] = v
        return out

    def _verified(self, name: str, v: int) -> dict[str, Any]:
        """verify() without the defensive copy (internal callers never mutate the result)."""
        return self._verified_versions.manifest(name, v, self._paths.version(name, v))

    def version_status(self, name: str, version: int | str) -> str:
        """ "ok" or "broken: <reason>". Raises VersionNotFoundError if there is no such folder."""
        try:
            self._verified(name, validate_version(version))
        except BrokenVersionError as exc:
            return f"broken: {exc.reason}"
        return "ok"

    def describe_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version, ascending: {"version", "status": "ok"|"broken", "error", "manifest"}.

        For listings: broken versions are shown (manifest None, error = reason), not hidden.
        """
        out = []
        for v in self.versions(name):
            try:
                manifest = self.verify(name, v)
            except VersionNotFoundError:
                continue  # removed while we were listing
            except BrokenVersionError as exc:
                out.append(
                    {"version": v, "status": "broken", "error": exc.reason, "manifest": None}
                )
            else:
                out.append({"version": v, "status": "ok", "error": None, "manifest": manifest})
        return out

    # ---- resolution --------------------------------------------------------------------------

    def latest_version(self, name: str) -> int | None:
        """Highest version that verifies, or None. Broken versions are skipped (logged once)."""
        for v in reversed(self.versions(name)):
            try:
                self._verified(name, v)
            except (BrokenVersionError, VersionNotFoundError):
                continue
            return v
        return None

    def default_version(self, name: str) -> int | None:
        """The pinned version if set and it verifies, else latest_version() (None if none)."""
        pinned = self._state_view(name)["pinned"]
        if pinned is not None:
            try:
                self._verified(name, pinned)
                return pinned
            except (BrokenVersionError, VersionNotFoundError) as exc:
                key = (name, pinned, type(exc).__name__)
                with self._lock:
                    first = key not in self._logged_bad_pin
                    self._logged_bad_pin.add(key)
                if first:
                    logger.warning(
                        "registry: model %r is pinned to version %d which is unusable (%s); "
                        "serving the latest good version instead",
                        name,
                        pinned,
                        exc,
                    )
        return self.latest_version(name)

    def resolve(self, name: str, ref: str | int) -> int:
        """Turn a reference into a verified version number.

        `ref` is an int / digit string, "latest", "default", or an alias. Raises InvalidNameError
        for a malformed ref, ModelNotFoundError, VersionNotFoundError (incl. AliasNotFoundError)
        or BrokenVersionError.
        """
        self._paths.existing_model(name)
        if isinstance(ref, str) and ref in RESERVED_REFS:
            v = self.latest_version(name) if ref == "latest" else self.default_version(name)
            if v is None:
                raise VersionNotFoundError(f"model {name!r} has no usable version")
            return v
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
            v = validate_version(ref)
        else:
            alias = validate_alias(ref)
            aliases = self._state_view(name)["aliases"]
            if alias not in aliases:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
            v = aliases[alias]
        self._verified(name, v)
        return v

    # ---- publish -----------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        weights_path: str | os.PathLike[str],
        manifest: dict[str, Any],
        extra_files: dict[str, str | os.PathLike[str]] | None = None,
    ) -> int:
        """Copy a model (and extra files) into the registry as the next version; return it.

        The caller's manifest (config, metrics, history, dataset fingerprint, job_id ...) is kept;
        sha256 / size_bytes / created_at / package_version / files are computed here and win over
        caller values, and "version" is dropped (the folder name is the truth). The manifest must
        be strict JSON (NumPy scalars and arrays are converted; NaN/Infinity raise ValueError).
        """
        self._writable()
        validate_model_name(name)
        if not isinstance(manifest, dict):
            raise TypeError("manifest must be a dict")
        extras = {validate_extra_file_name(f): Path(src) for f, src in (extra_files or {}).items()}
        weights_src = Path(weights_path)
        for src in [weights_src, *extras.values()]:
            if not src.is_file():
                raise FileNotFoundError(f"cannot publish {src}: not a regular file")
        body = {k: v for k, v in manifest.items() if k != "version"}
        try:
            json_bytes(body)  # fail on bad caller data before touching the disk
        except (TypeError, ValueError) as exc:
            raise ValueError(f"manifest is not strict JSON: {exc}") from exc

        model_dir = self._ensure_model_dir(name)
        try:
            self.cleanup_temp(self.stale_temp_seconds, name=name)
        except OSError as exc:  # cleanup is housekeeping; never fail a publish for it
            logger.warning("registry: temp cleanup in %s failed: %s", model_dir, exc)

        tmp = model_dir / temp_name()
        os.mkdir(tmp)
        try:
            sha = write_version_folder(tmp, weights_src, extras, body)
            version = allocate_version(model_dir, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("registry: published model %r version %d (sha256 %s)", name, version, sha)
        return version

    def _ensure_model_dir(self, name: str) -> Path:
        model_dir = Path(self._paths.model(name))
        if not self.root.is_dir():
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

    def cleanup_temp(
        self, max_age_seconds: float = DEFAULT_STALE_TEMP_SECONDS, *, name: str | None = None
    ) -> int:
        """Delete temp folders/files (crashed publishes and state writes) older than max_age,
        and, whatever their age, temp folders whose publisher on this host has died.
        Returns how many were removed."""
        self._writable()
        names = [validate_model_name(name)] if name is not None else None
        cutoff = time.time() - max_age_seconds
        return sum(
            remove_stale_temps(Path(self._paths.model(model)), cutoff)
            for model in names or self._paths.model_names_on_disk()
        )

    # ---- state (pin, aliases, traffic, shadow, history) -------------------------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        """{"pinned": int|None, "aliases": {alias: v}, "traffic": [{"version", "weight"}]|None,
        "shadow": int|alias|None, "history": [...]} (a copy).

        Never writes and never raises on a corrupt file: it is logged once and the last good
        state this object saw (or the empty state) is returned. Cached by the file's identity.
        """
        return copy.deepcopy(self._state_view(name))

    def _state_view(self, name: str) -> dict[str, Any]:
        return self._states.view(name, self._paths.existing_model(name))

    def _change_state(self, name: str, change: Any) -> dict[str, Any]:
        self._writable()
        return self._states.change(name, Path(self._paths.existing_model(name)), change)

    def _require_good(self, name: str, version: Any) -> int:
        v = validate_version(version)
        self._verified(name, v)  # VersionNotFoundError / BrokenVersionError
        return v

    def pin(self, name: str, version: int | str, actor: str | None = None) -> dict[str, Any]:
        """Make `version` the default. Raises VersionNotFoundError / BrokenVersionError."""
        return self._change_state(
            name, field_change("pinned", self._require_good(name, version), "pin", actor)
        )

    def unpin(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Clear the pin: the default follows the latest good version again."""
        return self._change_state(name, field_change("pinned", None, "unpin", actor))

    def set_alias(
        self, name: str, alias: str, version: int | str, actor: str | None = None
    ) -> dict[str, Any]:
        """Point `alias` at `version` (creating or moving it)."""
        alias = validate_alias(alias)
        v = self._require_good(name, version)
        return self._change_state(name, set_alias_change(alias, v, actor))

    def delete_alias(self, name: str, alias: str, actor: str | None = None) -> dict[str, Any]:
        """Remove `alias`. Raises AliasNotFoundError (a VersionNotFoundError) if it is not set."""
        return self._change_state(name, delete_alias_change(name, validate_alias(alias), actor))

    def record_promotion(
        self,
        name: str,
        alias: str,
        version: int | None,
        reason: str,
        sweep: str,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """A sweep's verdict on `alias`: point it at `version`, or (None) keep it, recording the
        sweep and the reason in the history either way."""
        alias = validate_alias(alias)
        v = None if version is None else self._require_good(name, version)
        return self._change_state(name, promotion_change(alias, v, reason, sweep, actor))

    def delete_version(self, name: str, version: int | str, actor: str | None = None) -> None:
        """Remove a version, unless it is pinned, aliased, shadowed or in the traffic split
        (VersionInUseError). The folder is first renamed to a temp name (one atomic step: readers
        see the version or nothing), then deleted; a crash in between leaves a temp folder that
        the next publish cleans up."""
        v = validate_version(version)
        path = Path(self._paths.version(name, v))
        doomed = path.parent / temp_name()

        def remove() -> None:
            os.rename(path, doomed)
            fsync_dir(path.parent)

        self._change_state(name, delete_version_change(name, v, remove, actor))
        shutil.rmtree(doomed, ignore_errors=True)
        logger.info("registry: removed model %r version %d", name, v)

    def set_traffic(
        self, name: str, routes: list[dict[str, Any]], actor: str | None = None
    ) -> dict[str, Any]:
        """Split the default route's traffic: ``[{"version": int|alias, "weight": 0-100}, …]``,
        weights summing to 100. Every version must verify and every alias be set *now*
        (VersionNotFoundError / AliasNotFoundError / BrokenVersionError); later, a route whose
        version breaks just gets no traffic (inference decides, per worker)."""
        clean = validate_routes(routes)
        for route in clean:
            self.resolve(name, route["version"])
        return self._change_state(name, field_change("traffic", clean, "traffic_set", actor))

    def clear_traffic(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Drop the split: the default route serves the default version (pinned else latest)."""
        return self._change_state(name, field_change("traffic", None, "traffic_clear", actor))

    def set_shadow(self, name: str, ref: int | str, actor: str | None = None) -> dict[str, Any]:
        """Name the shadow version (a number or an alias, which must resolve now)."""
        clean = validate_ref(ref)
        self.resolve(name, clean)
        return self._change_state(name, field_change("shadow", clean, "shadow_set", actor))

    def clear_shadow(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Stop shadowing."""
        return self._change_state(name, field_change("shadow", None, "shadow_clear", actor))

    # ---- change detection --------------------------------------------------------------------

    def change_token(self, name: str | None = None) -> tuple:
        """A cheap, comparable token that changes when versions or state change.

        With `name`: 2 lstat calls (the model folder: inode/mtime/nlink, which move when a version
        folder appears or disappears; state.json: inode/size/mtime/ctime, a new inode on every
        atomic replace). Without: the root's stamp plus that pair for every model folder.
        """
        state_suffix = os.sep + STATE_FILE
        if name is not None:
            model_dir = self._paths.prefix + validate_model_name(name)
            return (name, dir_stamp(model_dir), file_stamp(model_dir + state_suffix))
        items = []
        try:
            with os.scandir(self._paths.root) as it:
                for e in it:
                    if is_model_name(e.name) and e.is_dir(follow_symlinks=False):
                        items.append((e.name, dir_stamp(e.path), file_stamp(e.path + state_suffix)))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return (dir_stamp(self._paths.root), tuple(sorted(items)))
