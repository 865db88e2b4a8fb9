"""The `Registry` class: the one object callers use, holding once everything that must mean the
same on every `Storage` (storage.py) it keeps its versions and state in. See the package
docstring for the layouts and why."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.registry.cache import DEFAULT_CACHE_MAX_MB
from shared.registry.errors import (
    BrokenVersionError,
    FirstTime,
    InvalidNameError,
    ReadOnlyRegistryError,
    RegistryError,
    VersionInUseError,
    VersionNotFoundError,
    concerning,
)
from shared.registry.files import json_bytes
from shared.registry.local import LocalStorage
from shared.registry.names import (
    MAX_VERSION,
    validate_alias,
    validate_extra_file_name,
    validate_model_name,
    validate_version,
)
from shared.registry.publishing import DEFAULT_STALE_TEMP_SECONDS
from shared.registry.state import (
    KeepLast,
    delete_alias_change,
    field_change,
    promotion_change,
    resolve_ref,
    set_alias_change,
    validate_ref,
    validate_routes,
)
from shared.registry.storage import Storage

logger = logging.getLogger("shared.registry")


class Registry:
    """A model registry shared by trainers (writers) and inference (readers).

    `location` is a folder (a path, or a ``file://`` URL) or ``s3://bucket/prefix`` (endpoint and
    credentials from the standard AWS variables; `cache_dir` is where verified downloads are
    kept, pruned to `cache_max_mb` MiB), or a ready `Storage`. Thread-safe; safe across
    processes and machines. Read methods never write to the store. `read_only=True`
    additionally makes every write method raise ReadOnlyRegistryError, which is what inference
    should use.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | Storage,
        *,
        read_only: bool = False,
        stale_temp_seconds: float = DEFAULT_STALE_TEMP_SECONDS,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_max_mb: int = DEFAULT_CACHE_MAX_MB,
    ) -> None:
        if isinstance(location, Storage):
            self.storage = location
        elif os.fspath(location).startswith("s3://"):
            # the S3 storage only for an s3:// location, so a local registry never needs boto3
            from shared.registry.s3 import S3Storage

            self.storage = S3Storage(
                os.fspath(location), cache_dir=cache_dir, cache_max_mb=cache_max_mb
            )
        else:  # a folder: a plain path or a file:// URL
            self.storage = LocalStorage(os.fspath(location).removeprefix("file://"))
        #: The registry folder for a local registry (None on an object store).
        self.root: Path | None = getattr(self.storage, "root", None)
        self.location = self.storage.location
        self.read_only = read_only
        self.stale_temp_seconds = float(stale_temp_seconds)
        self._first_bad_pin = FirstTime()

    def __repr__(self) -> str:
        return f"Registry({self.location!r}, read_only={self.read_only})"

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyRegistryError(f"{self!r} is read-only")

    # ---- listing -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Names (sorted) of models that have at least one published version."""
        return self.storage.model_names()

    def versions(self, name: str) -> list[int]:
        """Every published version of `name`, ascending, including broken ones (damaged after
        publishing: describe_versions() / verify() tell). ModelNotFoundError if there is none."""
        return self.storage.versions(validate_model_name(name))

    # ---- verification ------------------------------------------------------------------------

    def weights_path(self, name: str, version: int | str) -> Path:
        """A local path of the version's weights.npz. Locally the file itself (call verify()
        for the sha256); on S3 a download verified against the manifest's sha256."""
        return self.storage.weights_path(validate_model_name(name), validate_version(version))

    def release(self, name: str, version: int) -> None:
        """This process no longer needs the file `weights_path` handed out: on S3 its download
        may be pruned from now on (it never is while held); a no-op on a folder."""
        self.storage.release(name, version)

    def read_file(self, name: str, version: int | str, file_name: str) -> bytes:
        """The bytes of an extra file of a verified version (a report PNG...), checked against
        the manifest's size and sha256. FileNotFoundError if the manifest does not list it or it
        is gone; BrokenVersionError if it does not match."""
        v = validate_version(version)
        file_name = validate_extra_file_name(file_name)
        entry = (self._verified(name, v).get("files") or {}).get(file_name)
        if not isinstance(entry, dict):
            raise FileNotFoundError(f"model {name!r} version {v} has no file {file_name!r}")
        return self.storage.read_file(name, v, file_name, entry)

    def version_identity(self, name: str, version: int) -> Hashable:
        """A cheap identity of the version's files (stat calls locally, nothing on S3): a
        version refused as broken is retried only when it moves."""
        return self.storage.version_identity(validate_model_name(name), validate_version(version))

    def verify(self, name: str, version: int | str) -> dict[str, Any]:
        """Check the manifest and the files it lists; return the manifest (a copy, plus
        "version"). Cached by the storage: a second call costs a few lstat() calls or nothing.
        VersionNotFoundError, or BrokenVersionError (logged once per version and reason)."""
        v = validate_version(version)
        out = copy.deepcopy(self._verified(name, v))
        out["version"] = v
        return out

    #: The version's manifest plus "version": what verify() returns.
    manifest = verify

    def _verified(self, name: str, v: int) -> dict[str, Any]:
        """verify() without the defensive copy (internal callers never mutate the result)."""
        return self.storage.manifest(validate_model_name(name), v)

    def describe_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version, ascending: {"version", "status": "ok"|"broken", "error", "manifest"}:
        broken versions are shown (manifest None, error = reason), not hidden."""
        out = []
        for v in self.versions(name):
            try:
                manifest, error = self.verify(name, v), None
            except VersionNotFoundError:
                continue  # removed while we were listing
            except BrokenVersionError as exc:
                manifest, error = None, exc.reason
            status = "ok" if manifest is not None else "broken"
            out.append({"version": v, "status": status, "error": error, "manifest": manifest})
        return out

    def staged_versions(self, name: str) -> list[int]:
        """Good versions published *staged* (sweep trials), ascending: reachable by number,
        alias, pin, traffic route or shadow, never as "latest" or an unpinned default."""
        return [v for v in self.versions(name) if self._staged(name, v)]

    def is_staged(self, name: str, version: int) -> bool:
        """Whether the version's manifest says ``"staged": true``: a sweep publishes every trial
        that way so that no trial goes live before the sweep's promotion names one."""
        return bool(self._verified(name, validate_version(version)).get("staged"))

    def _staged(self, name: str, version: int) -> bool | None:
        """is_staged(), or None for a version that is broken or gone."""
        try:
            return self.is_staged(name, version)
        except (BrokenVersionError, VersionNotFoundError):
            return None

    # ---- resolution --------------------------------------------------------------------------

    def latest_version(self, name: str) -> int | None:
        """Highest version that verifies and is not staged, or None. Broken versions are
        skipped (logged once); staged ones (sweep trials, see is_staged) are never "latest", so
        publishing one changes nothing an unpinned model serves."""
        return next(
            (v for v in reversed(self.versions(name)) if self._staged(name, v) is False), None
        )

    def default_version(self, name: str) -> int | None:
        """The pinned version if set and it verifies, else latest_version() (None if none)."""
        pinned = self._state_view(name)["pinned"]
        if pinned is not None:
            try:
                self._verified(name, pinned)
                return pinned
            except (BrokenVersionError, VersionNotFoundError) as exc:
                if self._first_bad_pin((name, pinned, type(exc).__name__)):
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
        self.storage.require_model(validate_model_name(name))

        def usable(ref: str) -> int | None:  # asked only when the reference is one of them
            return self.latest_version(name) if ref == "latest" else self.default_version(name)

        v = resolve_ref(name, ref, self._state_view(name)["aliases"], usable)
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
        caller values, and "version" is dropped (the storage's index is the truth). The manifest
        must be strict JSON (NumPy scalars and arrays are converted; NaN/Infinity raise
        ValueError). Crashed publishes of this model are cleaned up first (housekeeping).
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
            json_bytes(body)  # fail on bad caller data before touching the store
        except (TypeError, ValueError) as exc:
            raise ValueError(f"manifest is not strict JSON: {exc}") from exc
        try:
            self.storage.cleanup(self.stale_temp_seconds, name)
        except (OSError, RegistryError) as exc:  # housekeeping never fails a publish
            logger.warning("registry: cleanup of %r in %s failed: %s", name, self.location, exc)
        version = self.storage.publish(name, weights_src, extras, body)
        logger.info("registry: published model %r version %d", name, version)
        return version

    # ---- state (pin, aliases, traffic, shadow, history) -------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        """{"pinned": int|None, "aliases": {alias: v}, "traffic": [{"version", "weight"}]|None,
        "shadow": int|alias|None, "keep_last": int|None, "history": [...]} (a copy).

        Never writes and never raises on a corrupt state: it is logged once and the last good
        state this object saw (or the empty state) is returned. Cached by the storage.
        """
        return copy.deepcopy(self._state_view(name))

    def _state_view(self, name: str) -> dict[str, Any]:
        return self.storage.state(validate_model_name(name))

    def _change_state(self, name: str, change: Any) -> dict[str, Any]:
        self._writable()
        return copy.deepcopy(self.storage.change_state(validate_model_name(name), change))

    def _require_good(self, name: str, version: Any) -> int:
        v = validate_version(version)
        self._verified(name, v)  # VersionNotFoundError / BrokenVersionError
        return v

    def pin(self, name: str, version: int | str, actor: str | None = None) -> dict[str, Any]:
        """Make `version` the default. Raises VersionNotFoundError / BrokenVersionError."""
        self.storage.require_model(validate_model_name(name))
        with concerning("version"):
            v = self._require_good(name, version)
        return self._change_state(name, field_change("pinned", v, "pin", actor))

    def unpin(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Clear the pin: the default follows the latest good version again."""
        return self._change_state(name, field_change("pinned", None, "unpin", actor))

    def set_alias(
        self, name: str, alias: str, version: int | str, actor: str | None = None
    ) -> dict[str, Any]:
        """Point `alias` at `version` (creating or moving it)."""
        self.storage.require_model(validate_model_name(name))
        with concerning("alias"):
            alias = validate_alias(alias)
        with concerning("version"):
            v = self._require_good(name, version)
        return self._change_state(name, set_alias_change(alias, v, actor))

    def delete_alias(self, name: str, alias: str, actor: str | None = None) -> dict[str, Any]:
        """Remove `alias`. Raises AliasNotFoundError (a VersionNotFoundError) if it is not set."""
        self.storage.require_model(validate_model_name(name))
        with concerning("alias"):
            alias = validate_alias(alias)
            return self._change_state(name, delete_alias_change(name, alias, actor))

    def record_promotion(
        self,
        name: str,
        target: str,
        version: int | None,
        reason: str,
        sweep: str,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """A sweep's verdict on `target`, an alias or ``"default"`` (the pin): point it at
        `version`, or (None) leave it, recording the sweep and the reason in the history either
        way."""
        if target != "default":
            target = validate_alias(target)
        v = None if version is None else self._require_good(name, version)
        return self._change_state(name, promotion_change(target, v, reason, sweep, actor))

    def delete_version(self, name: str, version: int | str, actor: str | None = None) -> None:
        """Remove a version, unless it is pinned, aliased, shadowed or in the traffic split
        (VersionInUseError), atomically with respect to every state change: readers see the
        version or nothing."""
        self._writable()
        v = validate_version(version)
        name = validate_model_name(name)
        self.storage.require_model(name)
        self.storage.delete_version(name, v, actor)
        logger.info("registry: removed model %r version %d", name, v)

    def set_retention(
        self, name: str, keep_last: int | None, actor: str | None = None
    ) -> dict[str, Any]:
        """Keep the last `keep_last` versions of the model (None: every version, the default):
        `apply_retention`, which the publisher runs after each publish, deletes older ones."""
        self.storage.require_model(validate_model_name(name))
        try:
            rule = None if keep_last is None else TypeAdapter(KeepLast).validate_python(keep_last)
        except ValidationError:
            raise InvalidNameError(
                f"keep_last must be a whole number from 1 to {MAX_VERSION}", field="keep_last"
            ) from None
        action = "retention_clear" if rule is None else "retention_set"
        return self._change_state(name, field_change("keep_last", rule, action, actor))

    def apply_retention(
        self, name: str, in_use: Callable[[int], bool], actor: str | None = None
    ) -> list[int]:
        """Delete the versions older than the model's newest `keep_last` (nothing when it has
        no retention rule), oldest first, and return them: never one the state refers to (pin,
        alias, traffic route, shadow: `delete_version` refuses those atomically), nor one for
        which `in_use` says the caller still needs it (a job or sweep in flight). Numbers are
        never reused."""
        keep_last = self._state_view(name)["keep_last"]
        if keep_last is None:
            return []
        deleted = []
        for v in self.versions(name)[:-keep_last]:
            if in_use(v):
                continue
            try:
                self.delete_version(name, v, actor)
            except (VersionInUseError, VersionNotFoundError):
                continue  # named by the state, or deleted by someone else, meanwhile
            deleted.append(v)
        return deleted

    def set_traffic(
        self, name: str, routes: list[dict[str, Any]], actor: str | None = None
    ) -> dict[str, Any]:
        """Split the default route's traffic: ``[{"version": int|alias, "weight": 0-100}, …]``,
        weights summing to 100. Every version must verify and every alias be set *now*
        (VersionNotFoundError / AliasNotFoundError / BrokenVersionError); later, a route whose
        version breaks just gets no traffic (inference decides, per worker)."""
        self.storage.require_model(validate_model_name(name))
        clean = validate_routes(routes)
        for i, route in enumerate(clean):
            with concerning(f"routes[{i}].version"):
                self.resolve(name, route["version"])
        return self._change_state(name, field_change("traffic", clean, "traffic_set", actor))

    def clear_traffic(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Drop the split: the default route serves the default version (pinned else latest)."""
        return self._change_state(name, field_change("traffic", None, "traffic_clear", actor))

    def set_shadow(self, name: str, ref: int | str, actor: str | None = None) -> dict[str, Any]:
        """Name the shadow version (a number or an alias, which must resolve now)."""
        self.storage.require_model(validate_model_name(name))
        with concerning("version"):
            clean = validate_ref(ref)
            self.resolve(name, clean)
        return self._change_state(name, field_change("shadow", clean, "shadow_set", actor))

    def clear_shadow(self, name: str, actor: str | None = None) -> dict[str, Any]:
        """Stop shadowing."""
        return self._change_state(name, field_change("shadow", None, "shadow_clear", actor))

    # ---- change detection --------------------------------------------------------------------

    def change_token(self, name: str | None = None) -> Hashable:
        """A cheap, comparable token that changes when versions or state change (of `name`, or
        of every model and the set of models). Locally a few lstat calls; on S3 one conditional
        GET per state object (a 304 when nothing changed). RegistryUnavailableError when the
        store cannot be reached."""
        return self.storage.change_token(None if name is None else validate_model_name(name))
