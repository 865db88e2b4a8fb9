"""Is a version intact? Its manifest parses and every file it lists has the recorded size and
sha256. `check_manifest` (what a manifest must say) is shared by every storage; the rest is the
local folder's: results are cached by the identity (inode, size, mtime, ctime) of every file
involved, so the 0.5 s poll of every gunicorn worker costs a few stat calls, not a re-hash."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

from shared.registry.errors import BrokenVersionError, FirstTime, InvalidNameError
from shared.registry.files import file_stamp, hash_file, lstat_or_none, read_nofollow
from shared.registry.names import (
    MANIFEST_FILE,
    REQUIRED_MANIFEST_KEYS,
    WEIGHTS_FILE,
    is_sha256,
    validate_extra_file_name,
)

logger = logging.getLogger("shared.registry")

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ManifestProblem(ValueError):
    """Why a manifest cannot be trusted (its text is the `reason` listings show)."""


def check_manifest(raw: bytes) -> tuple[dict[str, Any], list[tuple[str, Any, Any]]]:
    """Parse a manifest's bytes; return it (without "version") and the files it lists as
    ``(file name, sha256, size_bytes)``, weights first. Raises ManifestProblem. Shared by every
    storage: what a manifest must say does not depend on where it is kept."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestProblem(f"{MANIFEST_FILE} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ManifestProblem(f"{MANIFEST_FILE} is not a JSON object")
    if missing := [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]:
        raise ManifestProblem(f"{MANIFEST_FILE} lacks required keys {missing}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ManifestProblem(f"{MANIFEST_FILE} 'files' is not an object")
    checks = [(WEIGHTS_FILE, manifest.get("sha256"), manifest.get("size_bytes"))]
    for fname, entry in files.items():
        try:
            validate_extra_file_name(fname)
        except InvalidNameError as exc:
            raise ManifestProblem(f"{MANIFEST_FILE} 'files': {exc}") from None
        if not isinstance(entry, dict):
            raise ManifestProblem(f"{MANIFEST_FILE} 'files' entry {fname!r} is not an object")
        checks.append((fname, entry.get("sha256"), entry.get("size_bytes")))
    for fname, want_sha, want_size in checks:
        if not is_sha256(want_sha):
            raise ManifestProblem(f"{MANIFEST_FILE} has an invalid sha256 for {fname}")
        if isinstance(want_size, bool) or not isinstance(want_size, int) or want_size < 0:
            raise ManifestProblem(f"{MANIFEST_FILE} has an invalid size_bytes for {fname}")
    manifest.pop("version", None)
    return manifest, checks


def verify_version_dir(vdir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Full verification, uncached. Returns (manifest, None) or (None, reason)."""
    try:
        raw = read_nofollow(vdir / MANIFEST_FILE, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None, f"{MANIFEST_FILE} is missing"
    except OSError as exc:
        return None, f"{MANIFEST_FILE} unreadable: {exc.strerror or exc}"
    try:
        manifest, checks = check_manifest(raw)
    except ManifestProblem as exc:
        return None, str(exc)
    for fname, want_sha, want_size in checks:
        if (problem := _check_file(vdir / fname, fname, want_sha, want_size)) is not None:
            return None, problem
    return manifest, None


def _check_file(path: Path, fname: str, want_sha: Any, want_size: Any) -> str | None:
    """Why one listed file does not match its manifest entry, or None when it does."""
    st = lstat_or_none(path)
    if st is None:
        return f"{fname} is missing"
    if not stat.S_ISREG(st.st_mode):
        return f"{fname} is not a regular file"
    if st.st_size != want_size:
        return f"{fname} has {st.st_size} bytes, manifest says {want_size}"
    try:
        got_sha, got_size = hash_file(path)
    except OSError as exc:
        return f"{fname} unreadable: {exc.strerror or exc}"
    if got_size != want_size or got_sha != want_sha:
        return f"{fname} sha256 mismatch (expected {want_sha[:12]}…, got {got_sha[:12]}…)"
    return None


def version_stamps(vdir: str, manifest: dict[str, Any] | None) -> tuple:
    """The identities of the manifest, the weights and (once known) every extra file."""
    prefix = vdir + os.sep
    stamps = [file_stamp(prefix + MANIFEST_FILE), file_stamp(prefix + WEIGHTS_FILE)]
    if manifest is not None:
        for fname in sorted(manifest.get("files", {})):
            stamps.append((fname, file_stamp(prefix + fname)))
    return tuple(stamps)


class VerifiedVersions:
    """Verification results by version folder, valid while its files' identities hold; each
    broken version is logged once per reason. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # version dir -> (stamps, manifest | None, error | None)
        self._cache: dict[str, tuple[tuple, dict | None, str | None]] = {}
        self._first = FirstTime()

    def manifest(self, name: str, v: int, vdir: str) -> dict[str, Any]:
        """The verified manifest of version folder `vdir` (shared: callers must not mutate it);
        BrokenVersionError (with `reason`) if verification fails."""
        with self._lock:
            cached = self._cache.get(vdir)
        if cached is None or cached[0] != version_stamps(vdir, cached[1]):
            before = version_stamps(vdir, None)
            manifest, error = verify_version_dir(Path(vdir))
            after = version_stamps(vdir, manifest)
            cached = (after, manifest, error)
            # Only cache a result if the files did not change while we were reading them.
            with self._lock:
                if after[:2] == before:
                    self._cache[vdir] = cached
                else:
                    self._cache.pop(vdir, None)
        _, manifest, error = cached
        if error is not None:
            raise broken(name, v, error, log=self._first((vdir, error)))
        assert manifest is not None
        return manifest

    def retain(self, model_dir: str, listed: set[str]) -> None:
        """Forget `model_dir`'s version folders that are no longer `listed` (deleted): a
        long-running reader must not keep every version it ever verified."""
        prefix = model_dir + os.sep
        with self._lock:
            for vdir in [d for d in self._cache if d.startswith(prefix) and d not in listed]:
                del self._cache[vdir]


def broken(name: str, v: int, reason: str, *, log: bool = False) -> BrokenVersionError:
    """The BrokenVersionError of version `v`, with `reason` for listings; `log`: the one warning
    a broken version gets (callers make sure it is once per reason)."""
    if log:
        logger.warning("registry: model %r version %d is broken, skipping it: %s", name, v, reason)
    exc = BrokenVersionError(f"model {name!r} version {v} is broken: {reason}")
    exc.reason = reason
    return exc
