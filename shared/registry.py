"""A versioned model registry on a plain shared folder (think MLflow registry + TF Serving dirs).

Layout::

    <root>/<name>/<version>/weights.npz       the model file, copied verbatim
    <root>/<name>/<version>/manifest.json     sha256, size, created_at, package_version, caller's data
    <root>/<name>/<version>/<extra files>     optional, hashed into manifest["files"]
    <root>/<name>/state.json                  {"pinned", "aliases", "history"}
    <root>/<name>/.state.lock                 flock target for state changes (writers only)
    <root>/<name>/.tmp-<uuid>/                a publish in progress (or a crashed one); never listed

Why it is built this way:

* A version only becomes visible through one atomic ``os.rename(tmp_dir, <name>/<v>)``. The rename
  fails if ``<v>`` already holds a version, so the number is allocated by the filesystem itself:
  publishers in different processes or on different machines sharing the volume cannot collide,
  and a publisher killed at any point leaves at most an invisible ``.tmp-*`` folder.
* The folder name is the version number; the manifest never stores it (readers add ``"version"``).
* A temp folder's name carries its publisher (``.tmp-<uuid>.<pid>.<host>``): the next publish
  removes the temp folder of a publisher on this host that is no longer running (SIGKILLed
  mid-publish) at once, and anything else once it is older than ``stale_temp_seconds``.
* Readers never write anything (no lock files, no cleanup), so inference can mount the volume
  read-only. Verification (manifest + sha256 of every file) is cached by file identity
  (inode, size, mtime_ns, ctime_ns) so the 0.5 s poll in every gunicorn worker costs a few stats.
* A broken version (bad manifest, missing or tampered files) is skipped by ``latest_version`` /
  ``default_version``, reported by ``describe_versions`` / ``version_status`` and logged once.
* ``state.json`` is replaced atomically under an exclusive ``flock`` so concurrent pin/alias changes
  never lose updates; a corrupt file is logged and the last good state is served until the next
  write repairs it.
* Every client-supplied name, alias and version is validated against a strict ASCII pattern, and
  paths are resolved and checked to stay inside the root as a second line of defence.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared import __version__ as PACKAGE_VERSION
from shared.config import MODEL_NAME_PATTERN

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "state.json"
LOCK_FILE = ".state.lock"
TMP_PREFIX = ".tmp-"
STATE_TMP_PREFIX = ".state.json.tmp-"

#: Versions are positive integers without leading zeros, at most 9 digits.
MAX_VERSION = 999_999_999
_VERSION_RE = re.compile(r"[1-9][0-9]{0,8}")
_NAME_RE = re.compile(MODEL_NAME_PATTERN)
#: Extra files live next to weights.npz: plain file names only.
_EXTRA_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_RESERVED_REFS = frozenset({"latest", "default"})
_RESERVED_FILES = frozenset({WEIGHTS_FILE, MANIFEST_FILE})
#: Keys publish() computes; whatever the caller passed under these names is replaced.
REQUIRED_MANIFEST_KEYS = ("sha256", "size_bytes", "created_at", "package_version")

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
# Errors


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class InvalidNameError(RegistryError, ValueError):
    """A model name, alias, version or file name that could escape the root or is malformed."""


class ModelNotFoundError(RegistryError, LookupError):
    """No folder for this model name under the root."""


class VersionNotFoundError(RegistryError, LookupError):
    """The version (or "latest"/"default") does not exist."""


class AliasNotFoundError(VersionNotFoundError):
    """The alias is not set for this model (a VersionNotFoundError, so callers map it to 404)."""


class BrokenVersionError(RegistryError):
    """The version folder exists but fails verification (manifest, files, sha256).

    `reason` holds the short explanation (e.g. "weights.npz is missing") for listings.
    """

    reason: str = ""


class ReadOnlyRegistryError(RegistryError, PermissionError):
    """A write was attempted through a Registry opened with read_only=True."""


# --------------------------------------------------------------------------------------------
# Validation


def validate_model_name(name: Any) -> str:
    """Return `name` if it is a safe registry name (shared.config.MODEL_NAME_PATTERN), else raise.

    The pattern is ASCII-only with no dots or slashes, so a valid name can never be "..", an
    absolute path, contain NUL or a unicode look-alike, or be longer than 64 characters.
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(
            f"invalid model name {_short(name)}: must match {MODEL_NAME_PATTERN} "
            "(lowercase ASCII letters, digits, '_' and '-', 1-64 characters)"
        )
    return name


def validate_alias(alias: Any) -> str:
    """Return `alias` if valid: the model-name pattern, not all digits, not "latest"/"default".

    Digits are reserved for versions and the two keywords for resolve(), so a reference string
    always has exactly one meaning.
    """
    if not isinstance(alias, str) or _NAME_RE.fullmatch(alias) is None:
        raise InvalidNameError(f"invalid alias {_short(alias)}: must match {MODEL_NAME_PATTERN}")
    if alias.isdigit():
        raise InvalidNameError(f"invalid alias {alias!r}: all-digit names are versions")
    if alias in _RESERVED_REFS:
        raise InvalidNameError(f"invalid alias {alias!r}: reserved word")
    return alias


def validate_version(version: Any) -> int:
    """Return the version as an int if it is 1..MAX_VERSION (int or canonical digit string).

    Booleans, floats, "0", negatives, leading zeros, signs, whitespace and non-ASCII digits are
    all rejected with InvalidNameError.
    """
    if isinstance(version, bool):
        raise InvalidNameError(f"invalid version {version!r}")
    if isinstance(version, int):
        if 1 <= version <= MAX_VERSION:
            return version
        raise InvalidNameError(f"invalid version {_short(version)}: must be 1..{MAX_VERSION}")
    if isinstance(version, str) and _VERSION_RE.fullmatch(version):
        return int(version)
    raise InvalidNameError(
        f"invalid version {_short(version)}: must be a positive integer 1..{MAX_VERSION}"
    )


def _validate_extra_name(fname: Any) -> str:
    if (
        not isinstance(fname, str)
        or _EXTRA_FILE_RE.fullmatch(fname) is None
        or fname in _RESERVED_FILES
        or fname.startswith(".")
    ):
        raise InvalidNameError(
            f"invalid extra file name {_short(fname)}: plain ASCII file name, "
            f"not {sorted(_RESERVED_FILES)}"
        )
    return fname


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


__all__ = [
    "AliasNotFoundError",
    "BrokenVersionError",
    "InvalidNameError",
    "ModelNotFoundError",
    "ReadOnlyRegistryError",
    "Registry",
    "RegistryError",
    "VersionNotFoundError",
    "validate_alias",
    "validate_model_name",
    "validate_version",
]
