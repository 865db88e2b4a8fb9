"""The per-worker model cache and registry poller: what makes hot reload work.

Each gunicorn worker owns one ModelCache (created by create_app, never a module global). It:

* loads a version on first use, verified against the registry's sha256 (``Registry.verify`` then
  ``load_model(expected_sha256=...)``), and keeps at most ``capacity`` versions in an LRU, never
  evicting a model's current default, its split's versions with traffic or its shadow (so those
  alone can exceed ``capacity``: the README's MODEL_CACHE_SIZE says so);
* keeps, per model, a *served default*: the (version, loaded model) pair the default predict route
  uses. A background daemon thread polls ``Registry.change_token()`` every ``poll_seconds``; when
  the token moves it resolves each model's default (pinned else latest good), **loads the new
  version first and only then swaps the pointer**. In-flight requests hold a reference to the old
  model object, so nothing is dropped under their feet;
* never serves a broken version (bad hash, truncated, unloadable file): the failure is logged once
  and the last good default keeps being served;
* is fork-aware: the thread is started lazily in the process that serves (gunicorn's
  post_worker_init hook, or the first request), never in the master, and a cache inherited
  through fork() re-creates its locks and thread.

* keeps, per model, the *traffic split* of the default route (``state.json``'s ``traffic``) as
  this worker can serve it: each route's version (aliases followed as they move) loaded before the
  split is swapped in; a route whose version is broken or will not load gets no traffic (its
  weight is shared by the others) and `readiness()` says why. `Split.pick` chooses a version per
  request: by the sha256 of its routing key (sticky while the split is unchanged), else at random;
* keeps the model's *shadow version* loaded, for `inference_service.shadow` to run after the
  answer is sent.

``poll_seconds == 0`` means: no thread, check the change token synchronously at the start of every
request (a few stat calls) — deterministic for tests.

The hot path (default predict) is a dict lookup and no filesystem access.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.modelfile import ModelFileError, load_model
from shared.nn.inference import InferencePlan
from shared.registry import (
    BrokenVersionError,
    ModelNotFoundError,
    Registry,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
    resolve_ref,
    validate_model_name,
    validate_version,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """A model version ready to predict. Holding it keeps the model alive (load-before-drop)."""

    name: str
    version: int
    loaded: Any  # shared.modelfile.LoadedModel
    plan: InferencePlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per loaded version: requests run the folded forward pass (fewer NumPy calls
        # per image, see shared/nn/inference.py), not the layer-by-layer one.
        object.__setattr__(self, "plan", InferencePlan(self.loaded.model))

    @property
    def input_size(self) -> int:
        """Values per image the model takes (784 for MNIST): what the decoders check."""
        return int(self.loaded.model.input_size)

    @property
    def n_classes(self) -> int:
        return int(self.loaded.model.output_size)

    def predict_proba(self, x: Any) -> Any:
        """Class probabilities float32 [N, classes] of x, float32 [N, input_size] in [0, 1] as
        the decoders return it."""
        return self.plan.predict_proba(x)


@dataclass(frozen=True)
class Split:
    """The default route's traffic split as one worker serves it: the versions that can serve
    (weight > 0) and their cumulative weights."""

    served: tuple[Served, ...]
    bounds: tuple[int, ...]

    def pick(self, key: str | None) -> Served:
        """The version for one request. With a routing key: the first 8 bytes of sha256(key) as
        an integer, modulo the total weight, against the cumulative weights — the same key lands
        on the same version in every worker while the split (and which versions can serve) is
        unchanged. Without: a uniform random draw (``random.random``, no hashing)."""
        total = self.bounds[-1]
        if key is None:
            point = int(random.random() * total)
        else:
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
            point = int.from_bytes(digest[:8], "big") % total
        return self.served[bisect.bisect_right(self.bounds, point)]


@dataclass
class ModelView:
    """What the last registry scan said about one model (used to resolve "latest" and aliases
    without touching the disk on every request), and how this worker serves its traffic split
    and shadow."""

    latest: int | None = None
    default: int | None = None
    pinned: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    #: Staged versions (sweep trials): never "latest" nor an unpinned default.
    staged: list[int] = field(default_factory=list)
    #: One entry per route of the split: {"version" (as set), "weight", "serving" (the number,
    #: None when it gets no traffic), "problem"?}; None when the model has no split.
    traffic: list[dict[str, Any]] | None = None
    #: {"version" (as set), "serving", "problem"?}; None when the model has no shadow.
    shadow: dict[str, Any] | None = None

    def usable(self, ref: str) -> int | None:
        """What "latest" / "default" named at this scan (for `resolve_ref`)."""
        return self.latest if ref == "latest" else self.default


class ModelCache:
    """Loaded model versions of one worker process plus the served default per model."""

    def __init__(
        self,
        registry: Registry,
        *,
        capacity: int = 4,
        poll_seconds: float = 0.5,
        on_default_change: Callable[[str, int], None] | None = None,
        on_load: Callable[[Served, float], None] | None = None,
        on_broken: Callable[[str, int], None] | None = None,
        on_poll: Callable[[bool, bool], None] | None = None,
        on_shadow: Callable[[Served], None] | None = None,
    ) -> None:
        self.registry = registry
        self.capacity = int(capacity)
        self.poll_seconds = float(poll_seconds)
        self._on_default_change = on_default_change
        self._on_load = on_load
        self._on_broken = on_broken
        self._on_poll = on_poll
        self._on_shadow = on_shadow
        #: Whether the last poll reached the store, what stopped it, and since when (time.time).
        self._reachable: bool | None = None
        self._store_error: str | None = None
        self._unreachable_since: float | None = None
        self._defaults: dict[str, Served] = {}
        self._splits: dict[str, Split] = {}
        self._shadows: dict[str, Served] = {}
        self._views: dict[str, ModelView] = {}
        self._loaded: OrderedDict[tuple[str, int], Served] = OrderedDict()
        self._broken: dict[tuple[str, int], tuple[Any, str]] = {}
        self._token: Any = None
        self._last_refresh: float | None = None
        self._last_error: tuple[str, float] = ("", 0.0)
        self._init_process_state()

    def _init_process_state(self) -> None:
        """Locks and thread belong to a process: (re)create them after a fork."""
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _loaded / _broken / _views mutations
        self._load_lock = threading.RLock()  # serialises loads and refreshes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Called on every request (cheap) and from gunicorn's post_worker_init hook."""
        if self._pid != os.getpid():
            self._init_process_state()
        if self.poll_seconds <= 0:
            self._safe_refresh()
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name="digitflow-registry-poller", daemon=True
                    )
                    self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the poller thread (tests, shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def polling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        logger.info(
            "registry poller started in pid %d (every %.3gs, %s)",
            os.getpid(),
            self.poll_seconds,
            self.registry.location,
        )
        # Fixed rate, not fixed delay: a change is seen at most one poll interval after it
        # happened (plus the load of the new version), however long the scans take.
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._safe_refresh()
            next_at = max(next_at + self.poll_seconds, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def _safe_refresh(self) -> None:
        """One poll that never raises. A store that cannot be reached (an object store down, an
        unmounted volume) leaves everything loaded in place: this worker keeps serving it,
        `readiness()` and the metrics say the store is unreachable, and the next poll that
        reaches it catches up."""
        try:
            self.refresh()
        except Exception as exc:  # never let the poller die or a request fail because of a scan
            unreachable = isinstance(exc, RegistryUnavailableError | OSError)
            key = f"{type(exc).__name__}: {exc}"
            if unreachable:
                if self._reachable is not False:
                    self._unreachable_since = time.time()
                self._reachable = False
                self._store_error = str(exc)
            if self._on_poll is not None:
                self._on_poll(False, not unreachable)
            # The same failure (say, an unmounted volume) is logged once a minute, not per poll.
            now = time.monotonic()
            if key != self._last_error[0] or now - self._last_error[1] > 60:
                self._last_error = (key, now)
                if unreachable:
                    logger.error("registry unreachable (%s); serving what is loaded", exc)
                else:
                    logger.exception("registry scan failed; keeping the current models")
            return
        if self._reachable is False:
            logger.info("registry reachable again (%s)", self.registry.location)
        self._reachable, self._store_error, self._unreachable_since = True, None, None
        self._last_error = ("", 0.0)
        if self._on_poll is not None:
            self._on_poll(True, True)

    # ---- registry scan --------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Re-read the registry if its change token moved; returns True if a scan happened.

        The token also covers the files of every served default (a few stat calls), so a
        version damaged in place, which moves no folder, is noticed and dropped too.
        """
        token = (self.registry.change_token(), self._defaults_signature())
        if not force and token == self._token:
            return False
        with self._load_lock:
            if not force and token == self._token:
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
            with self._lock:
                self._views = views
                for gone in set(self._defaults) - set(views):
                    logger.warning("model %r disappeared from the registry; no longer served", gone)
                    del self._defaults[gone]
                for table in (self._splits, self._shadows):
                    for gone in set(table) - set(views):
                        del table[gone]
            # An incomplete scan leaves the token unset so the next poll retries it.
            self._token = token if complete else None
            self._last_refresh = time.time()
        return True

    def _scan_model(self, name: str) -> ModelView:
        """Read one model's state; make sure its default, split and shadow are loaded (load,
        then swap). Versions deleted since they were loaded leave the cache: a worker must not
        keep answering by number for a version every other worker calls not found."""
        published = set(self.registry.versions(name))
        with self._lock:
            for key in [k for k in self._loaded if k[0] == name and k[1] not in published]:
                del self._loaded[key]
        state = self.registry.state(name)
        view = ModelView(
            latest=self.registry.latest_version(name),
            default=self.registry.default_version(name),
            pinned=state["pinned"],
            aliases=dict(state["aliases"]),
            staged=self.registry.staged_versions(name),
        )
        self._update_default(name, view)
        self._update_split(name, view, state["traffic"])
        self._update_shadow(name, view, state["shadow"])
        return view

    def _update_split(self, name: str, view: ModelView, traffic: list | None) -> None:
        """Load every route's version, then swap the split in (or drop it)."""
        if traffic is None:
            self._splits.pop(name, None)
            return
        routes, served, bounds = [], [], []
        for route in traffic:
            entry: dict[str, Any] = {**route, "serving": None}
            try:
                one = self._load_current(name, self._ref_version(name, view, route["version"]))
            except (BrokenVersionError, VersionNotFoundError) as exc:
                entry["problem"] = f"gets no traffic: {exc}"
            else:
                entry["serving"] = one.version
                if route["weight"] > 0:
                    served.append(one)
                    bounds.append((bounds[-1] if bounds else 0) + route["weight"])
            routes.append(entry)
        view.traffic = routes
        if served:
            self._splits[name] = Split(tuple(served), tuple(bounds))
        else:  # nothing in the split can serve: the default version takes the traffic
            self._splits.pop(name, None)
            for entry in routes:
                entry.setdefault("problem", "gets no traffic: weight 0")
            logger.error("model %r: no version of its traffic split can serve", name)

    def _update_shadow(self, name: str, view: ModelView, ref: int | str | None) -> None:
        if ref is None:
            self._shadows.pop(name, None)
            return
        view.shadow = {"version": ref, "serving": None}
        try:
            served = self._load_current(name, self._ref_version(name, view, ref))
        except (BrokenVersionError, VersionNotFoundError) as exc:
            view.shadow["problem"] = f"not shadowing: {exc}"
            self._shadows.pop(name, None)
            return
        view.shadow["serving"] = served.version
        previous = self._shadows.get(name)
        self._shadows[name] = served
        if self._on_shadow is not None and previous is not served:
            self._on_shadow(served)

    @staticmethod
    def _ref_version(name: str, view: ModelView, ref: int | str) -> int:
        """A route's or the shadow's version number, its alias followed as of this scan."""
        return resolve_ref(name, ref, view.aliases, view.usable)

    def _load_current(self, name: str, version: int) -> Served:
        """`_load`, after dropping a cached copy whose files were damaged since it was loaded."""
        with self._lock:
            cached = self._loaded.get((name, version))
        if cached is not None and not self._still_verifies(cached):
            with self._lock:
                self._loaded.pop((name, version), None)
        return self._load(name, version)

    def _update_default(self, name: str, view: ModelView) -> None:
        """Make sure the model's default version is loaded and served (load, then swap)."""
        current = self._defaults.get(name)
        target = view.default
        if target is None or (current is not None and current.version == target):
            return
        candidates = [target]
        damaged = current is not None and not self._still_verifies(current)
        if damaged:
            # Its files changed on disk since we loaded it: the registry calls it broken, so this
            # worker stops serving it too (by default and by number), like a fresh worker would.
            with self._lock:
                self._loaded.pop((name, current.version), None)
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
                served = self._load(name, version)
            except (BrokenVersionError, VersionNotFoundError):
                continue  # logged by _load / skipped
            self._set_default(name, served, previous=current)
            return
        if current is not None:
            logger.error(
                "model %r: default version %d cannot be loaded; still serving version %d",
                name,
                target,
                current.version,
            )

    def _still_verifies(self, served: Served) -> bool:
        try:
            self.registry.verify(served.name, served.version)  # cached by file identity
        except (BrokenVersionError, VersionNotFoundError):
            return False
        return True

    def _set_default(self, name: str, served: Served, previous: Served | None) -> None:
        self._defaults[name] = served  # one atomic pointer swap; readers never lock
        if previous is None:
            logger.info("model %r: serving version %d by default", name, served.version)
        else:
            logger.info(
                "model %r: default version %d -> %d", name, previous.version, served.version
            )
        if self._on_default_change is not None:
            self._on_default_change(name, served.version)

    # ---- loading --------------------------------------------------------------------------------

    def _defaults_signature(self) -> tuple:
        """The files of every version served by default, in a split or as a shadow."""
        served = {(s.name, s.version) for s in list(self._defaults.values())}
        served.update((s.name, s.version) for s in list(self._shadows.values()))
        for split in list(self._splits.values()):
            served.update((s.name, s.version) for s in split.served)
        return tuple(sorted((n, v, self._broken_signature(n, v)) for n, v in served))

    def _broken_signature(self, name: str, version: int) -> Any:
        """Identity of the files: a version marked broken is retried only if they change."""
        try:
            return self.registry.version_identity(name, version)
        except RegistryError:
            return None

    def _load(self, name: str, version: int) -> Served:
        """Load (or fetch) one version, verified. Raises BrokenVersionError / VersionNotFoundError."""
        key = (name, version)
        with self._load_lock:
            with self._lock:
                served = self._loaded.get(key)
                if served is not None:
                    self._loaded.move_to_end(key)
                    return served
            broken = self._broken.get(key)
            if broken is not None and broken[0] == self._broken_signature(name, version):
                raise BrokenVersionError(broken[1])
            started = time.perf_counter()
            try:
                manifest = self.registry.verify(name, version)
                path = self.registry.weights_path(name, version)
                loaded = load_model(path, expected_sha256=manifest["sha256"])
            except (BrokenVersionError, ModelFileError, OSError) as exc:
                message = str(exc)
                if not isinstance(exc, BrokenVersionError):
                    message = f"model {name!r} version {version} is broken: {exc}"
                logger.error("not serving %s", message)
                with self._lock:
                    self._broken[key] = (self._broken_signature(name, version), message)
                if self._on_broken is not None:
                    self._on_broken(name, version)
                raise BrokenVersionError(message) from None
            seconds = time.perf_counter() - started
            served = Served(name=name, version=version, loaded=loaded)
            with self._lock:
                self._broken.pop(key, None)
                self._loaded[key] = served
                self._evict(keep=key)
            logger.info("model %r version %d loaded in %.3fs", name, version, seconds)
            if self._on_load is not None:
                self._on_load(served, seconds)
            return served

    def _evict(self, keep: tuple[str, int]) -> None:
        """Drop least recently used versions beyond capacity; the defaults, the split's versions
        with traffic and the shadows are never evicted (they are served without being named),
        nor `keep`, the version just loaded: it may be about to become one of them (a new
        model's default, a new shadow), and evicting it would leave it served but uncounted.
        Requests still holding an evicted Served keep using it until they finish."""
        protected = {keep, *((s.name, s.version) for s in self._defaults.values())}
        protected.update((s.name, s.version) for s in self._shadows.values())
        for split in self._splits.values():
            protected.update((s.name, s.version) for s in split.served)
        excess = len(self._loaded) - self.capacity
        for key in list(self._loaded):
            if excess <= 0:
                break
            if key in protected:
                continue
            del self._loaded[key]
            excess -= 1
            logger.info("model %r version %d evicted from the cache", *key)

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
        if ref is None:
            split = self._splits.get(name)
            if split is not None:
                return split.pick(routing_key)
        if ref is None or ref == "default":
            served = self._defaults.get(name)
            if served is not None:
                return served
            return self._default_slow(name)
        if isinstance(ref, int) or ref.isdigit():
            version = validate_version(ref)
            with self._lock:
                served = self._loaded.get((name, version))
                if served is not None:
                    self._loaded.move_to_end((name, version))
                    return served
            validate_model_name(name)
            return self._load(name, version)
        return self._load(name, self._resolve_ref(name, ref))

    def _default_slow(self, name: str) -> Served:
        """First request for a model the last scan did not know (or could not load)."""
        validate_model_name(name)
        with self._load_lock:
            served = self._defaults.get(name)
            if served is not None:
                return served
            view = self._scan_model(name)  # ModelNotFoundError → 404
            with self._lock:
                self._views[name] = view
            served = self._defaults.get(name)
            if served is not None:
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
                return resolve_ref(name, ref, view.aliases, view.usable)
            except LookupError:
                pass  # an alias set, or a first good version published, since the last scan
        validate_model_name(name)
        return self.registry.resolve(name, ref)

    # ---- introspection ----------------------------------------------------------------------------

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._loaded

    def broken_reason(self, name: str, version: int) -> str | None:
        """Why this worker refused to load `version` (files unchanged since), else None.

        Catches what registry verification cannot: a file whose sha256 matches its manifest but
        which does not load (truncated or foreign content published with a matching hash), so
        listings never call a version "ok" that is never served.
        """
        with self._lock:
            broken = self._broken.get((name, version))
        if broken is None or broken[0] != self._broken_signature(name, version):
            return None
        return broken[1]

    def shadow(self, name: str) -> Served | None:
        """The model's shadow version when it has one this worker can run."""
        return self._shadows.get(name)

    def rollout(self, name: str) -> dict[str, Any]:
        """How this worker serves the model's split and shadow (see `ModelView`)."""
        view = self._views.get(name)
        if view is None:
            return {"traffic": None, "shadow": None}
        return {"traffic": view.traffic, "shadow": view.shadow}

    def served_default(self, name: str) -> int | None:
        served = self._defaults.get(name)
        return None if served is None else served.version

    def loaded_versions(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._loaded)

    def store_status(self) -> dict[str, Any]:
        """{"location", "reachable" (None before the first poll), "error"?, "unreachable_since"?,
        "serving"?} as of this worker's last poll."""
        out: dict[str, Any] = {"location": self.registry.location, "reachable": self._reachable}
        if self._reachable is False:
            out["error"] = self._store_error
            out["unreachable_since"] = self._unreachable_since
            out["serving"] = (
                "the versions loaded before the store became unreachable; "
                "new versions, pins and aliases are picked up when it answers again"
            )
        return out

    def readiness(self) -> dict[str, Any]:
        """Ready when every model of the last registry scan with a usable version has its
        default loaded in this worker. An empty registry (or no scan yet) is *not* ready: a
        worker that can answer no prediction should not receive traffic.

        A store that became unreachable after the defaults were loaded leaves the worker
        *ready* (it still answers every prediction it answered before; taking every replica out
        of rotation at once would turn a store outage into a full outage), and ``registry``
        says the store is unreachable, since when and why. A worker that never reached the
        store is not ready, with that reason."""
        with self._lock:
            views = dict(self._views)
            defaults = dict(self._defaults)
        models: dict[str, Any] = {}
        missing: list[str] = []
        for name, view in sorted(views.items()):
            served = defaults.get(name)
            entry = {
                "registry_default": view.default,
                "serving": None if served is None else served.version,
            }
            models[name] = entry
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
                reason = self.broken_reason(name, view.default)
                if reason is not None:  # still ready: the last good version keeps serving
                    entry["problem"] = (
                        f"default version {view.default} cannot be served ({reason}); "
                        f"serving version {served.version}"
                    )
        scanned = self._last_refresh is not None
        ready = scanned and bool(defaults) and not missing
        out: dict[str, Any] = {"ready": ready, "models": models, "registry": self.store_status()}
        if not scanned and self._reachable is False:
            out["reason"] = f"registry unreachable: {self._store_error}"
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
