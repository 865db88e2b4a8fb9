"""The per-worker model cache: what makes hot reload work.

Each gunicorn worker owns one ModelCache (created by create_app, never a module global), made of
three parts: `inference_service.loading` (verified loads, the LRU), `inference_service.poller`
(runs `ModelCache.refresh` every ``poll_seconds``) and `inference_service.rollout` (each model's
traffic split and shadow). Per model it keeps a *served default*: the (version, loaded model)
pair the default predict route uses.

A refresh reads ``Registry.change_token()``; when the token moves it resolves each model's default
(pinned else latest good), **loads the new version first and only then swaps the pointer**.
In-flight requests hold a reference to the old model object, so nothing is dropped under their
feet. A broken version (bad hash, truncated, unloadable file) is never served: the failure is
logged once and the last good default keeps being served.

The hot path (default predict) is a dict lookup and no filesystem access.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from inference_service.loading import Key, Served, VersionCache
from inference_service.poller import Poller
from inference_service.rollout import Rollout
from inference_service.telemetry import Telemetry
from shared.registry import (
    BrokenVersionError,
    ModelNotFoundError,
    Registry,
    RegistryUnavailableError,
    VersionNotFoundError,
    resolve_ref,
    validate_model_name,
    validate_version,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelView:
    """What the last registry scan said about one model (used to resolve "latest" and aliases
    without touching the disk on every request), and how this worker serves its traffic split
    and shadow."""

    latest: int | None = None
    default: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    #: Staged versions (sweep trials): never "latest" nor an unpinned default.
    staged: list[int] = field(default_factory=list)
    #: What `Rollout.update_split` and `Rollout.update_shadow` returned at this scan.
    traffic: list[dict[str, Any]] | None = None
    shadow: dict[str, Any] | None = None


class ModelCache:
    """Loaded model versions of one worker process plus the served default per model."""

    def __init__(
        self,
        registry: Registry,
        *,
        telemetry: Telemetry,
        capacity: int = 4,
        poll_seconds: float = 0.5,
    ) -> None:
        self.registry = registry
        self._telemetry = telemetry  # told of every load, default, shadow, poll and scan
        self._defaults: dict[str, Served] = {}
        self._views: dict[str, ModelView] = {}
        self._token: Any = None
        self._last_refresh: float | None = None
        self.versions = VersionCache(
            registry,
            capacity,
            protected=self._protected,
            on_load=telemetry.on_load,
            on_broken=telemetry.on_broken,
        )
        self._rollout = Rollout(on_shadow=telemetry.on_shadow)
        # The same dicts (never replaced): the default route reads them, one lookup each.
        self._splits, self.shadows = self._rollout.splits, self._rollout.shadows
        #: Runs `refresh` (the front binds its ``ensure_started`` once: no extra call per request).
        self.poller = Poller(
            self.refresh,
            poll_seconds,
            registry.location,
            on_poll=telemetry.on_poll,
            on_fork=self.versions.reset_locks,
        )

    def _protected(self) -> set[Key]:
        """The versions served without being named: the defaults, the splits' and shadows'."""
        served = {(s.name, s.version) for s in list(self._defaults.values())}
        return served | self._rollout.versions()

    # ---- registry scan --------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-read the registry if its change token moved; returns True if a scan happened.
        The token also covers the files of every served default (a few stat calls), so a
        version damaged in place, which moves no folder, is noticed and dropped too."""
        token = (self.registry.change_token(), self._defaults_signature())
        if token == self._token:
            return False
        with self.versions.load_lock:
            if token == self._token:
                return False
            names = self.registry.model_names()
            views: dict[str, ModelView] = {}
            complete = True
            for name in names:
                try:
                    views[name] = self._scan_model(name)
                except ModelNotFoundError:
                    continue  # removed while scanning
                except (RegistryUnavailableError, OSError):
                    raise  # the store, not this model: the whole poll fails and is retried
                except Exception:  # one odd model folder must not stop the others
                    logger.exception(
                        "registry scan of model %r failed; keeping its last state", name
                    )
                    complete = False
                    if name in self._views:
                        views[name] = self._views[name]
            with self.versions.lock:
                self._views = views
                for gone in set(self._defaults) - set(views):
                    logger.warning("model %r disappeared from the registry; no longer served", gone)
                    del self._defaults[gone]
                self._rollout.keep_only(views)
            # An incomplete scan leaves the token unset so the next poll retries it.
            self._token = token if complete else None
            self._last_refresh = time.time()
        return True

    def _scan_model(self, name: str) -> ModelView:
        """Read one model's state; make sure its default, split and shadow are loaded (load,
        then swap). Versions deleted since they were loaded leave the cache."""
        published = set(self.registry.versions(name))
        self.versions.drop_unpublished(name, published)
        self._telemetry.on_versions(name, published)
        state = self.registry.state(name)
        view = ModelView(
            latest=self.registry.latest_version(name),
            default=self.registry.default_version(name),
            aliases=dict(state["aliases"]),
            staged=self.registry.staged_versions(name),
        )
        self._update_default(name, view)
        load = self.versions.load_current
        view.traffic = self._rollout.update_split(name, view.aliases, state["traffic"], load)
        view.shadow = self._rollout.update_shadow(name, view.aliases, state["shadow"], load)
        return view

    def _update_default(self, name: str, view: ModelView) -> None:
        """Make sure the model's default version is loaded and served (load, then swap)."""
        current = self._defaults.get(name)
        target = view.default
        if target is None or (current is not None and current.version == target):
            return
        candidates = [target]
        damaged = current is not None and not self.versions.still_verifies(current)
        if damaged:
            # Its files changed on disk since we loaded it: the registry calls it broken, so this
            # worker stops serving it too (by default and by number), like a fresh worker would.
            self.versions.drop(name, current.version)
        if current is None or damaged:
            # A fresh worker with no last good default, or one whose default was damaged in place
            # (and the target verifies but will not load): fall back to the latest good version,
            # then to older ones, rather than serve nothing or a version the registry calls broken.
            # Never a staged version (a sweep trial): it is not eligible until promoted.
            staged = set(view.staged)
            for v in [view.latest, *reversed(self.registry.versions(name))]:
                if v is not None and v not in candidates and v not in staged:
                    candidates.append(v)
        for version in candidates:
            try:
                served = self.versions.load(name, version)
            except (BrokenVersionError, VersionNotFoundError):
                continue  # logged by _load / skipped
            self._defaults[name] = served  # one atomic pointer swap; readers never lock
            if current is None:
                logger.info("model %r: serving version %d by default", name, version)
            else:
                logger.info("model %r: default version %d -> %d", name, current.version, version)
            self._telemetry.on_default_change(name, version)
            return
        if current is not None:
            logger.error(
                "model %r: default version %d cannot be loaded; still serving version %d",
                name, target, current.version,
            )  # fmt: skip

    def _defaults_signature(self) -> tuple:
        """The files of every version served by default, in a split or as a shadow."""
        served = self._protected()
        return tuple(sorted((n, v, self.versions.identity(n, v)) for n, v in served))

    # ---- request-time lookups ---------------------------------------------------------------------

    def get(
        self, name: str, ref: str | int | None = None, routing_key: str | None = None
    ) -> Served:
        """The model to serve for `name` and a version reference.

        `ref` None (the default route): a version of the traffic split when the model has one
        (`Split.pick` with `routing_key`), else the served default; "default": the served
        default; an int or digit string: that version;
        "latest": the newest good version; anything else: an alias. Raises the registry's
        InvalidNameError / ModelNotFoundError / VersionNotFoundError / BrokenVersionError.
        """
        if ref is None and (split := self._splits.get(name)) is not None:
            return split.pick(routing_key)
        if ref is None or ref == "default":
            return self._defaults.get(name) or self._default_slow(name)  # a Served is truthy
        if isinstance(ref, int) or ref.isdigit():
            version = validate_version(ref)
            if (served := self.versions.cached(name, version)) is not None:
                return served
            validate_model_name(name)
            return self.versions.load(name, version)
        return self.versions.load(name, self._resolve_ref(name, ref))

    def _default_slow(self, name: str) -> Served:
        """First request for a model the last scan did not know (or could not load)."""
        validate_model_name(name)
        with self.versions.load_lock:
            if (served := self._defaults.get(name)) is not None:
                return served
            view = self._scan_model(name)  # ModelNotFoundError → 404
            with self.versions.lock:
                self._views[name] = view
            if (served := self._defaults.get(name)) is not None:
                return served
        versions = self.registry.versions(name)
        if versions:
            raise BrokenVersionError(
                f"model {name!r} has no loadable version (all of {versions} are broken)"
            )
        raise VersionNotFoundError(f"model {name!r} has no published version")

    def _resolve_ref(self, name: str, ref: str) -> int:
        """ "latest" or an alias → version, from the last scan; ask the registry when unknown
        (a model or alias created since), which also validates the strings."""
        view = self._views.get(name)
        if view is not None:
            try:
                # What "latest" / "default" name at this scan (not read for an alias).
                usable = view.latest if ref == "latest" else view.default
                return resolve_ref(name, ref, view.aliases, lambda _: usable)
            except LookupError:
                pass  # an alias set, or a first good version published, since the last scan
        return self.registry.resolve(name, ref)

    # ---- introspection ----------------------------------------------------------------------------

    def rollout(self, name: str) -> dict[str, Any]:
        """The model's traffic split and shadow as this worker serves them, once its scan has
        seen them (none: left out)."""
        view = self._views.get(name, ModelView())
        return {key: v for key in ("traffic", "shadow") if (v := getattr(view, key)) is not None}

    def served_default(self, name: str) -> int | None:
        served = self._defaults.get(name)
        return None if served is None else served.version

    def readiness(self) -> dict[str, Any]:
        """Ready when every model of the last registry scan with a usable version has its
        default loaded in this worker. An empty registry (or no scan yet) is *not* ready: a
        worker that can answer no prediction should not receive traffic.

        A store that became unreachable after the defaults were loaded leaves the worker
        *ready* (it still answers every prediction it answered before; taking every replica out
        of rotation at once would turn a store outage into a full outage), and ``registry``
        says the store is unreachable, since when and why. A worker that never reached the
        store is not ready, with that reason."""
        with self.versions.lock:
            views = dict(self._views)
            defaults = dict(self._defaults)
        models: dict[str, Any] = {}
        missing: list[str] = []
        for name, view in sorted(views.items()):
            served = defaults.get(name)
            models[name] = entry = {
                "registry_default": view.default,
                "serving": None if served is None else served.version,
            }
            if view.traffic is not None:
                entry["traffic"] = view.traffic  # each route: what it serves, or why nothing
            if view.shadow is not None:
                entry["shadow"] = view.shadow
            if served is None:
                if view.default is None and view.staged:
                    entry["problem"] = (
                        f"only staged versions {view.staged} (sweep trials): a promotion, a pin "
                        "or a traffic route makes one served"
                    )
                elif view.default is None:
                    entry["problem"] = "no usable version in the registry"
                else:
                    missing.append(f"{name}:{view.default}")
            elif view.default is not None and view.default != served.version:
                reason = self.versions.broken_reason(name, view.default)
                if reason is not None:  # still ready: the last good version keeps serving
                    entry["problem"] = (
                        f"default version {view.default} cannot be served ({reason}); "
                        f"serving version {served.version}"
                    )
        scanned = self._last_refresh is not None
        ready = scanned and bool(defaults) and not missing
        out: dict[str, Any] = {"ready": ready, "models": models, "registry": self.poller.status()}
        if not scanned and self.poller.reachable is False:
            out["reason"] = f"registry unreachable: {self.poller.error}"
        elif not scanned:
            out["reason"] = "registry not scanned yet"
        elif not views:
            out["reason"] = "no models in the registry"
        elif not defaults:
            out["reason"] = "no model has a loadable version"
        elif missing:
            out["reason"] = "default versions not loaded yet"
            out["missing"] = missing
        return out
