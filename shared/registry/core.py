"""The `Registry` class: publishing, listing, verifying and resolving versions, pins and aliases
(see the package docstring for the layout and why it is built this way)."""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shared import __version__ as PACKAGE_VERSION
from shared.registry.errors import (
    AliasNotFoundError,
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    ReadOnlyRegistryError,
    RegistryError,
    VersionNotFoundError,
)
from shared.registry.files import (
    _DEFAULT_STALE_TEMP_SECONDS,
    _MAX_ACTOR_LEN,
    _MAX_HISTORY,
    _MAX_MANIFEST_BYTES,
    _MAX_STATE_BYTES,
    _copy_and_hash,
    _dir_stamp,
    _dumps,
    _empty_state,
    _file_stamp,
    _fsync_dir,
    _hash_file,
    _lstat,
    _newest_mtime,
    _now_iso,
    _parse_state,
    _publisher_is_dead,
    _read_nofollow,
    _temp_name,
    _wait_for_test_gate,
)
from shared.registry.names import (
    _NAME_RE,
    _RESERVED_REFS,
    _SHA256_RE,
    _VERSION_RE,
    LOCK_FILE,
    MANIFEST_FILE,
    MAX_VERSION,
    REQUIRED_MANIFEST_KEYS,
    STATE_FILE,
    STATE_TMP_PREFIX,
    TMP_PREFIX,
    WEIGHTS_FILE,
    _validate_extra_name,
    validate_alias,
    validate_model_name,
    validate_version,
)

logger = logging.getLogger("shared.registry")


# --------------------------------------------------------------------------------------------
# The registry


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
        stale_temp_seconds: float = _DEFAULT_STALE_TEMP_SECONDS,
    ) -> None:
        self.root = Path(os.path.realpath(os.fspath(root)))
        self._root_str = str(self.root)
        self._root_prefix = self._root_str.rstrip(os.sep) + os.sep
        self.read_only = read_only
        self.stale_temp_seconds = float(stale_temp_seconds)
        self._lock = threading.RLock()
        # version dir -> (stamps, manifest | None, error | None)
        self._verify_cache: dict[str, tuple[tuple, dict | None, str | None]] = {}
        self._logged_broken: set[tuple[str, str]] = set()
        # name -> (stamp, state) of the last state.json read; name -> last good state
        self._state_cache: dict[str, tuple[tuple | None, dict[str, Any]]] = {}
        self._last_good_state: dict[str, dict[str, Any]] = {}
        self._logged_corrupt_state: set[tuple[str, tuple | None]] = set()
        self._logged_bad_pin: set[tuple[str, int, str]] = set()

    @classmethod
    def from_env(cls, *, read_only: bool = False) -> Registry:
        """Registry at $MODEL_REGISTRY_DIR (default ./var/models), as every service configures it."""
        return cls(os.environ.get("MODEL_REGISTRY_DIR", "./var/models"), read_only=read_only)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r}, read_only={self.read_only})"

    # ---- paths -------------------------------------------------------------------------------

    # Hot-path helpers work on plain strings: pathlib costs more than the lstat calls here.

    def _inside_root(self, path: str | os.PathLike[str]) -> str:
        """Second line of defence (after the name patterns): the normalised path must be a
        strict descendant of the root (which was resolved once, in __init__)."""
        norm = os.path.normpath(os.fspath(path))
        if not norm.startswith(self._root_prefix) or norm == self._root_str:
            raise InvalidNameError(f"{path} resolves outside the registry root")
        return norm

    def _checked_dir(self, path: str, missing: type[RegistryError], what: str) -> str:
        """lstat (never follows symlinks): a symlinked model or version folder could point
        anywhere, so it is refused instead of resolved; this is cheaper than realpath()."""
        self._inside_root(path)
        st = _lstat(path)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise InvalidNameError(
                f"{path} is a symlink, which could lead outside the registry root"
            )
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise missing(what)
        return path

    def _model_path(self, name: str) -> str:
        return self._inside_root(self._root_prefix + validate_model_name(name))

    def _model_dir(self, name: str) -> Path:
        return Path(self._model_path(name))

    def _existing_model_path(self, name: str) -> str:
        return self._checked_dir(
            self._model_path(name), ModelNotFoundError, f"model {name!r} not found in the registry"
        )

    def _existing_model_dir(self, name: str) -> Path:
        return Path(self._existing_model_path(name))

    def _version_path(self, name: str, version: Any) -> str:
        v = validate_version(version)
        path = f"{self._existing_model_path(name)}{os.sep}{v}"
        try:
            return self._checked_dir(
                path, VersionNotFoundError, f"model {name!r} has no version {v}"
            )
        except InvalidNameError:
            # a symlink named like a version is not a version (versions() does not list it)
            raise VersionNotFoundError(f"model {name!r} has no version {v}") from None

    def _version_dir(self, name: str, version: Any) -> Path:
        return Path(self._version_path(name, version))

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyRegistryError(f"{self!r} is read-only")

    # ---- listing -----------------------------------------------------------------------------

    @staticmethod
    def _version_entries(model_dir: Path) -> list[os.DirEntry[str]]:
        with os.scandir(model_dir) as it:
            return [e for e in it if _VERSION_RE.fullmatch(e.name)]

    def model_names(self) -> list[str]:
        """Names (sorted) of models that have at least one published version folder."""
        names = []
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for entry in entries:
            if _NAME_RE.fullmatch(entry.name) is None or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                if any(e.is_dir(follow_symlinks=False) for e in self._version_entries(Path(entry))):
                    names.append(entry.name)
            except OSError:
                continue
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        """Every published version folder of `name`, ascending, including broken ones.

        A folder only appears through publish()'s atomic rename, so it is complete unless it was
        damaged later; use describe_versions() / verify() to tell good from broken.
        Raises ModelNotFoundError if the model folder does not exist.
        """
        model_dir = self._existing_model_dir(name)
        try:
            return sorted(
                int(e.name)
                for e in self._version_entries(model_dir)
                if e.is_dir(follow_symlinks=False)
            )
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model {name!r} not found in the registry") from exc

    def _all_version_numbers(self, model_dir: Path) -> list[int]:
        """Every version-shaped entry, whatever its type: allocation must never reuse one."""
        try:
            return [int(e.name) for e in self._version_entries(model_dir)]
        except FileNotFoundError:
            return []

    # ---- verification ------------------------------------------------------------------------

    def weights_path(self, name: str, version: int | str) -> Path:
        """Path of the version's weights.npz (not verified: call verify() for the sha256)."""
        return self._version_dir(name, version) / WEIGHTS_FILE

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
        vdir = self._version_path(name, v)
        key = vdir
        with self._lock:
            cached = self._verify_cache.get(key)
        if cached is None or cached[0] != self._stamps(vdir, cached[1]):
            before = self._stamps(vdir, None)
            manifest, error = self._verify_uncached(Path(vdir))
            after = self._stamps(vdir, manifest)
            cached = (after, manifest, error)
            # Only cache a result if the files did not change while we were reading them.
            with self._lock:
                if after[:2] == before:
                    self._verify_cache[key] = cached
                else:
                    self._verify_cache.pop(key, None)
        _, manifest, error = cached
        if error is not None:
            self._log_broken(name, v, key, error)
            exc = BrokenVersionError(f"model {name!r} version {v} is broken: {error}")
            exc.reason = error
            raise exc
        return manifest

    @staticmethod
    def _stamps(vdir: str, manifest: dict | None) -> tuple:
        prefix = vdir + os.sep
        stamps = [_file_stamp(prefix + MANIFEST_FILE), _file_stamp(prefix + WEIGHTS_FILE)]
        if manifest is not None:
            for fname in sorted(manifest.get("files", {})):
                stamps.append((fname, _file_stamp(prefix + fname)))
        return tuple(stamps)

    def _verify_uncached(self, vdir: Path) -> tuple[dict | None, str | None]:
        """Full verification. Returns (manifest, None) or (None, reason)."""
        try:
            raw = _read_nofollow(vdir / MANIFEST_FILE, _MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return None, f"{MANIFEST_FILE} is missing"
        except OSError as exc:
            return None, f"{MANIFEST_FILE} unreadable: {exc.strerror or exc}"
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"{MANIFEST_FILE} is not valid JSON: {exc}"
        if not isinstance(manifest, dict):
            return None, f"{MANIFEST_FILE} is not a JSON object"
        missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
        if missing:
            return None, f"{MANIFEST_FILE} lacks required keys {missing}"
        files = manifest.get("files", {})
        if not isinstance(files, dict):
            return None, f"{MANIFEST_FILE} 'files' is not an object"
        checks = [(WEIGHTS_FILE, manifest.get("sha256"), manifest.get("size_bytes"))]
        for fname, entry in files.items():
            try:
                _validate_extra_name(fname)
            except InvalidNameError as exc:
                return None, f"{MANIFEST_FILE} 'files': {exc}"
            if not isinstance(entry, dict):
                return None, f"{MANIFEST_FILE} 'files' entry {fname!r} is not an object"
            checks.append((fname, entry.get("sha256"), entry.get("size_bytes")))
        for fname, want_sha, want_size in checks:
            if not isinstance(want_sha, str) or _SHA256_RE.fullmatch(want_sha) is None:
                return None, f"{MANIFEST_FILE} has an invalid sha256 for {fname}"
            if isinstance(want_size, bool) or not isinstance(want_size, int) or want_size < 0:
                return None, f"{MANIFEST_FILE} has an invalid size_bytes for {fname}"
            st = _lstat(vdir / fname)
            if st is None:
                return None, f"{fname} is missing"
            if not stat.S_ISREG(st.st_mode):
                return None, f"{fname} is not a regular file"
            if st.st_size != want_size:
                return None, f"{fname} has {st.st_size} bytes, manifest says {want_size}"
            try:
                got_sha, got_size = _hash_file(vdir / fname)
            except OSError as exc:
                return None, f"{fname} unreadable: {exc.strerror or exc}"
            if got_size != want_size or got_sha != want_sha:
                return (
                    None,
                    f"{fname} sha256 mismatch (expected {want_sha[:12]}…, got {got_sha[:12]}…)",
                )
        manifest.pop("version", None)
        return manifest, None

    def _log_broken(self, name: str, v: int, key: str, error: str) -> None:
        with self._lock:
            if (key, error) in self._logged_broken:
                return
            self._logged_broken.add((key, error))
        logger.warning("registry: model %r version %d is broken, skipping it: %s", name, v, error)

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
        self._existing_model_dir(name)
        if isinstance(ref, str) and ref in _RESERVED_REFS:
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
        extras = {}
        for fname, src in (extra_files or {}).items():
            extras[_validate_extra_name(fname)] = Path(src)
        weights_src = Path(weights_path)
        for src in [weights_src, *extras.values()]:
            if not src.is_file():
                raise FileNotFoundError(f"cannot publish {src}: not a regular file")
        body = {k: v for k, v in manifest.items() if k != "version"}
        try:
            _dumps(body)  # fail on bad caller data before touching the disk
        except (TypeError, ValueError) as exc:
            raise ValueError(f"manifest is not strict JSON: {exc}") from exc

        model_dir = self._ensure_model_dir(name)
        try:
            self.cleanup_temp(self.stale_temp_seconds, name=name)
        except OSError as exc:  # cleanup is housekeeping; never fail a publish for it
            logger.warning("registry: temp cleanup in %s failed: %s", model_dir, exc)

        tmp = model_dir / _temp_name()
        os.mkdir(tmp)
        try:
            sha, size = _copy_and_hash(weights_src, tmp / WEIGHTS_FILE)
            files = {}
            for fname, src in sorted(extras.items()):
                f_sha, f_size = _copy_and_hash(src, tmp / fname)
                files[fname] = {"sha256": f_sha, "size_bytes": f_size}
            body.update(
                sha256=sha,
                size_bytes=size,
                created_at=_now_iso(),
                package_version=PACKAGE_VERSION,
                files=files,
            )
            with open(tmp / MANIFEST_FILE, "xb") as fh:
                fh.write(_dumps(body))
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(tmp)
            _wait_for_test_gate()
            version = self._allocate(model_dir, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(model_dir)
        logger.info("registry: published model %r version %d (sha256 %s)", name, version, sha)
        return version

    def _ensure_model_dir(self, name: str) -> Path:
        model_dir = self._model_dir(name)
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(model_dir)
        except FileExistsError:
            pass
        else:
            _fsync_dir(self.root)
        st = _lstat(model_dir)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise RegistryError(f"{model_dir} exists but is not a directory")
        return model_dir

    def _allocate(self, model_dir: Path, tmp: Path) -> int:
        """Rename tmp to the next free version number; the filesystem arbitrates collisions."""
        existing = self._all_version_numbers(model_dir)
        v = max(existing, default=0) + 1
        for _ in range(10_000):
            if v > MAX_VERSION:
                raise RegistryError(f"{model_dir}: version numbers exhausted")
            try:
                os.rename(tmp, model_dir / str(v))
                return v
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise
            # Someone else took v: jump past everything that exists now.
            v = max(v, *self._all_version_numbers(model_dir), 0) + 1
        raise RegistryError(f"{model_dir}: could not allocate a version number")

    def cleanup_temp(
        self, max_age_seconds: float = _DEFAULT_STALE_TEMP_SECONDS, *, name: str | None = None
    ) -> int:
        """Delete temp folders/files (crashed publishes and state writes) older than max_age,
        and, whatever their age, temp folders whose publisher on this host has died.

        Age is measured from the newest mtime of the folder and its entries, so a slow publish
        still writing is not removed under its feet. Returns how many were removed.
        """
        self._writable()
        names = [validate_model_name(name)] if name is not None else self._model_dir_names()
        cutoff = time.time() - max_age_seconds
        removed = 0
        for model in names:
            model_dir = self._model_dir(model)
            try:
                entries = list(os.scandir(model_dir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if not entry.name.startswith((TMP_PREFIX, STATE_TMP_PREFIX)):
                    continue
                try:
                    orphan = _publisher_is_dead(entry.name)
                    if not orphan and _newest_mtime(Path(entry.path)) > cutoff:
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

    def _model_dir_names(self) -> list[str]:
        try:
            with os.scandir(self.root) as it:
                return sorted(
                    e.name
                    for e in it
                    if _NAME_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                )
        except (FileNotFoundError, NotADirectoryError):
            return []

    # ---- state (pin, aliases, history) -------------------------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        """{"pinned": int|None, "aliases": {alias: v}, "history": [...]} (a copy).

        Never writes and never raises on a corrupt file: it is logged once and the last good
        state this object saw (or the empty state) is returned. Cached by the file's identity.
        """
        return copy.deepcopy(self._state_view(name))

    def _state_view(self, name: str) -> dict[str, Any]:
        """state() without the defensive copy (internal callers never mutate the result)."""
        path = self._existing_model_path(name) + os.sep + STATE_FILE
        stamp = _file_stamp(path)
        with self._lock:
            cached = self._state_cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        state = self._read_state(name, path, stamp)
        with self._lock:
            self._state_cache[name] = (stamp, state)
        return state

    def _read_state(
        self, name: str, path: str | os.PathLike[str], stamp: tuple | None
    ) -> dict[str, Any]:
        if stamp is None:
            state = _empty_state()
            with self._lock:
                self._last_good_state[name] = state
            return state
        try:
            state = _parse_state(_read_nofollow(path, _MAX_STATE_BYTES))
        except FileNotFoundError:
            return self._read_state(name, path, None)
        except (OSError, ValueError) as exc:
            with self._lock:
                fallback = copy.deepcopy(self._last_good_state.get(name) or _empty_state())
                first = (name, stamp) not in self._logged_corrupt_state
                self._logged_corrupt_state.add((name, stamp))
            if first:
                logger.error(
                    "registry: %s is corrupt (%s); using the last good state seen "
                    "(pinned=%s, %d aliases) until the next state change rewrites it",
                    path,
                    exc,
                    fallback["pinned"],
                    len(fallback["aliases"]),
                )
            return fallback
        with self._lock:
            self._last_good_state[name] = copy.deepcopy(state)
        return state

    @contextlib.contextmanager
    def _state_lock(self, model_dir: Path) -> Iterator[None]:
        fd = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _mutate_state(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Read-modify-write state.json under the lock. `change` edits the state in place and
        returns the history entry to append, or None for a no-op (nothing is written)."""
        self._writable()
        model_dir = self._existing_model_dir(name)
        path = model_dir / STATE_FILE
        with self._state_lock(model_dir):
            stamp = _file_stamp(path)
            state = copy.deepcopy(self._read_state(name, path, stamp))
            corrupt = stamp is not None and (name, stamp) in self._logged_corrupt_state
            entry = change(state)
            if entry is None and not corrupt:
                return copy.deepcopy(state)
            if entry is not None:
                state["history"].append(entry)
                del state["history"][:-_MAX_HISTORY]
            if corrupt:
                self._keep_corrupt_copy(path)
            self._write_state(model_dir, state)
            new_stamp = _file_stamp(path)
        with self._lock:
            self._state_cache[name] = (new_stamp, copy.deepcopy(state))
            self._last_good_state[name] = copy.deepcopy(state)
        return copy.deepcopy(state)

    @staticmethod
    def _keep_corrupt_copy(path: Path) -> None:
        """Keep the bad bytes for a post-mortem before the repair overwrites them."""
        backup = path.with_name(f".state.json.corrupt-{int(time.time())}")
        try:
            shutil.copyfile(path, backup)
            logger.error("registry: repairing %s; the corrupt copy is kept at %s", path, backup)
        except OSError as exc:
            logger.error("registry: repairing %s (could not keep a copy: %s)", path, exc)

    @staticmethod
    def _write_state(model_dir: Path, state: dict[str, Any]) -> None:
        tmp = model_dir / f"{STATE_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as fh:
                fh.write(_dumps(state))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, model_dir / STATE_FILE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(model_dir)

    def _require_good(self, name: str, version: Any) -> int:
        v = validate_version(version)
        self._verified(name, v)  # VersionNotFoundError / BrokenVersionError
        return v

    @staticmethod
    def _entry(action: str, alias: str | None, old: int | None, new: int | None, actor: Any):
        if actor is not None:
            actor = str(actor)[:_MAX_ACTOR_LEN]
        return {
            "action": action,
            "alias": alias,
            "from": old,
            "to": new,
            "at": _now_iso(),
            "actor": actor,
        }

    def pin(self, name: str, version: int | str, actor: str | None = None) -> dict[str, Any]:
        """Make `version` the default. Raises VersionNotFoundError / BrokenVersionError."""
        v = self._require_good(name, version)

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            old = state["pinned"]
            if old == v:
                return None
            state["pinned"] = v
            return self._entry("pin", None, old, v, actor)

        return self._mutate_state(name, change)

    def unpin(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Clear the pin: the default follows the latest good version again."""

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            old = state["pinned"]
            if old is None:
                return None
            state["pinned"] = None
            return self._entry("unpin", None, old, None, actor)

        return self._mutate_state(name, change)

    def set_alias(
        self, name: str, alias: str, version: int | str, actor: str | None = None
    ) -> dict[str, Any]:
        """Point `alias` at `version` (creating or moving it)."""
        alias = validate_alias(alias)
        v = self._require_good(name, version)

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            old = state["aliases"].get(alias)
            if old == v:
                return None
            state["aliases"][alias] = v
            return self._entry("alias_set", alias, old, v, actor)

        return self._mutate_state(name, change)

    def delete_alias(self, name: str, alias: str, actor: str | None = None) -> dict[str, Any]:
        """Remove `alias`. Raises AliasNotFoundError (a VersionNotFoundError) if it is not set."""
        alias = validate_alias(alias)

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            if alias not in state["aliases"]:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
            old = state["aliases"].pop(alias)
            return self._entry("alias_delete", alias, old, None, actor)

        return self._mutate_state(name, change)

    # ---- change detection --------------------------------------------------------------------

    def change_token(self, name: str | None = None) -> tuple:
        """A cheap, comparable token that changes when versions or state change.

        With `name`: 2 lstat calls (the model folder: inode/mtime/nlink, which move when a version
        folder appears or disappears; state.json: inode/size/mtime/ctime, a new inode on every
        atomic replace). Without: the root's stamp plus that pair for every model folder.
        """
        state_suffix = os.sep + STATE_FILE
        if name is not None:
            model_dir = self._root_prefix + validate_model_name(name)
            return (name, _dir_stamp(model_dir), _file_stamp(model_dir + state_suffix))
        items = []
        try:
            with os.scandir(self._root_str) as it:
                for e in it:
                    if _NAME_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
                        items.append(
                            (e.name, _dir_stamp(e.path), _file_stamp(e.path + state_suffix))
                        )
        except (FileNotFoundError, NotADirectoryError):
            pass
        return (_dir_stamp(self._root_str), tuple(sorted(items)))
