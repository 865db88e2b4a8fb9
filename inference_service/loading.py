"""Model versions loaded into one worker: verified loads and the LRU that keeps them.

A version is loaded on first use, verified against the registry's sha256 (``Registry.verify``
then ``load_model(expected_sha256=...)``), and kept in an LRU of at most ``capacity`` versions.
What the caller protects (`ModelCache`: each model's served default, its split's versions with
traffic, its shadow) is never evicted, so those alone can exceed ``capacity`` (the README's
MODEL_CACHE_SIZE says so). A version that fails to load (bad hash, truncated, unloadable file) is
remembered as broken with its reason, and retried only once its files change. A loaded version
keeps its registry download held (never pruned) until it leaves the LRU (`Registry.release`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.modelfile import ModelFileError, load_model
from shared.nn.inference import InferencePlan
from shared.nn.reshape import Reshape
from shared.registry import BrokenVersionError, Registry, RegistryError, VersionNotFoundError

logger = logging.getLogger(__name__)

#: A loaded version: (model name, version number).
Key = tuple[str, int]


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
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one image as the model's layers see it: (1, 28, 28) for a convolutional
        model (its Reshape), (784,) for a perceptron."""
        reshape = (layer for layer in self.loaded.model.layers if isinstance(layer, Reshape))
        return next((layer.shape for layer in reshape), (self.input_size,))

    @property
    def n_classes(self) -> int:
        return int(self.loaded.model.output_size)

    def predict_proba(self, x: Any) -> Any:
        """Class probabilities float32 [N, classes] of x, float32 [N, input_size] in [0, 1] as
        the decoders return it."""
        return self.plan.predict_proba(x)


class VersionCache:
    """The versions one worker process has loaded (an LRU) and the ones it refused (broken)."""

    def __init__(
        self,
        registry: Registry,
        capacity: int,
        *,
        protected: Callable[[], Iterable[Key]],
        on_load: Callable[[Served, float], None],
        on_broken: Callable[[str, int], None],
    ) -> None:
        self.registry = registry
        self.capacity = int(capacity)
        #: The versions that are served without being named: never evicted.
        self._protected = protected
        self._on_load = on_load
        self._on_broken = on_broken
        self._loaded: OrderedDict[Key, Served] = OrderedDict()
        self._broken: dict[Key, tuple[Any, str]] = {}
        self.reset_locks()

    def reset_locks(self) -> None:
        """Locks belong to a process: re-created after a fork."""
        #: Guards the LRU and the broken table (`ModelCache` also guards its scan results with it).
        self.lock = threading.Lock()
        #: Serialises loads (and `ModelCache`'s registry scans, which load).
        self.load_lock = threading.RLock()

    def cached(self, name: str, version: int) -> Served | None:
        """The version when it is loaded (now the most recently used), else None."""
        key = (name, version)
        with self.lock:
            served = self._loaded.get(key)
            if served is not None:
                self._loaded.move_to_end(key)
            return served

    def load(self, name: str, version: int) -> Served:
        """Load (or fetch) one version, verified. Raises BrokenVersionError / VersionNotFoundError."""
        key = (name, version)
        with self.load_lock:
            served = self.cached(name, version)
            if served is not None:
                return served
            broken = self._broken.get(key)
            if broken is not None and broken[0] == self.identity(name, version):
                raise BrokenVersionError(broken[1])
            started = time.perf_counter()
            try:
                manifest = self.registry.verify(name, version)
                path = self.registry.weights_path(name, version)  # held while loaded
                try:
                    loaded = load_model(path, expected_sha256=manifest["sha256"])
                except BaseException:
                    self.registry.release(name, version)
                    raise
            except (BrokenVersionError, ModelFileError, OSError) as exc:
                message = str(exc)
                if not isinstance(exc, BrokenVersionError):
                    message = f"model {name!r} version {version} is broken: {exc}"
                logger.error("not serving %s", message)
                with self.lock:
                    self._broken[key] = (self.identity(name, version), message)
                self._on_broken(name, version)
                raise BrokenVersionError(message) from None
            seconds = time.perf_counter() - started
            served = Served(name=name, version=version, loaded=loaded)
            with self.lock:
                self._broken.pop(key, None)
                self._loaded[key] = served
                evicted = self._evict(keep=key)
            self._release(evicted)
            logger.info("model %r version %d loaded in %.3fs", name, version, seconds)
            self._on_load(served, seconds)
            return served

    def load_current(self, name: str, version: int) -> Served:
        """`load`, after dropping a cached copy whose files were damaged since it was loaded."""
        with self.lock:
            cached = self._loaded.get((name, version))
        if cached is not None and not self.still_verifies(cached):
            self.drop(name, version)
        return self.load(name, version)

    def still_verifies(self, served: Served) -> bool:
        """Whether the registry still vouches for the files `served` was loaded from."""
        try:
            self.registry.verify(served.name, served.version)  # cached by file identity
        except (BrokenVersionError, VersionNotFoundError):
            return False
        return True

    def identity(self, name: str, version: int) -> Any:
        """Identity of the files: a version marked broken is retried only if they change."""
        try:
            return self.registry.version_identity(name, version)
        except RegistryError:
            return None

    def drop(self, name: str, version: int) -> None:
        with self.lock:
            dropped = [(name, version)] if self._loaded.pop((name, version), None) else []
        self._release(dropped)

    def drop_unpublished(self, name: str, published: set[int]) -> None:
        """Forget the model's versions deleted from the registry since they were loaded: a worker
        must not keep answering by number for a version every other worker calls not found."""
        with self.lock:
            gone = [k for k in self._loaded if k[0] == name and k[1] not in published]
            for key in gone:
                del self._loaded[key]
        self._release(gone)

    def _release(self, keys: list[Key]) -> None:
        """Let the registry prune the downloads of versions no longer loaded (outside `lock`:
        pruning touches the disk)."""
        for key in keys:
            self.registry.release(*key)

    def _evict(self, keep: Key) -> list[Key]:
        """Drop least recently used versions beyond capacity; the protected ones are never
        evicted (they are served without being named), nor `keep`, the version just loaded: it
        may be about to become one of them (a new model's default, a new shadow), and evicting
        it would leave it served but uncounted. Requests still holding an evicted Served keep
        using it until they finish. Called with `lock` held; returns the evicted keys."""
        protected = {keep, *self._protected()}
        excess = max(len(self._loaded) - self.capacity, 0)
        evicted = [key for key in self._loaded if key not in protected][:excess]
        for key in evicted:
            del self._loaded[key]
            logger.info("model %r version %d evicted from the cache", *key)
        return evicted

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._loaded

    def loaded_versions(self) -> list[Key]:
        with self.lock:
            return list(self._loaded)

    def broken_reason(self, name: str, version: int) -> str | None:
        """Why this worker refused to load `version` (files unchanged since), else None.

        Catches what registry verification cannot: a file whose sha256 matches its manifest but
        which does not load (truncated or foreign content published with a matching hash), so
        listings never call a version "ok" that is never served.
        """
        with self.lock:
            broken = self._broken.get((name, version))
        if broken is None or broken[0] != self.identity(name, version):
            return None
        return broken[1]
