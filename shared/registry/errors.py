"""The registry's exceptions: one base class, and the standard exception each also is (a
missing model is a LookupError, a bad name a ValueError) so callers can catch either."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose.

    `field` names the caller's input the error concerns (``version``, ``alias``,
    ``routes[1].version``), set by the registry method that took it, so the one error table
    (`shared.web.errors`) answers naming it without a route re-checking what the registry checks.
    None when the error concerns the resource a path names (the model, a version looked up).
    """

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class InvalidNameError(RegistryError, ValueError):
    """A model name, alias, version or file name that could escape the root or is malformed."""


class ModelNotFoundError(RegistryError, LookupError):
    """No folder for this model name under the root."""


class VersionNotFoundError(RegistryError, LookupError):
    """The version (or "latest"/"default") does not exist."""


class AliasNotFoundError(VersionNotFoundError):
    """The alias is not set for this model (a VersionNotFoundError, so callers map it to 404)."""


class BrokenVersionError(RegistryError):
    """The version folder exists but fails verification (manifest, files, sha256); `reason` says
    why in short (e.g. "weights.npz is missing") for listings."""

    reason: str = ""


class VersionInUseError(RegistryError):
    """The version is pinned, aliased, shadowed or in the traffic split: it cannot be removed."""


class ReadOnlyRegistryError(RegistryError, PermissionError):
    """A write was attempted through a Registry opened with read_only=True."""


@contextlib.contextmanager
def concerning(field: str) -> Iterator[None]:
    """Registry errors raised inside name `field` as the input they concern (unless an inner
    block named a more precise one)."""
    try:
        yield
    except RegistryError as exc:
        if exc.field is None:
            exc.field = field
        raise


class FirstTime:
    """Thread-safe memory of keys seen: calling it is True only the first time for a key, so a
    problem seen on every poll is logged once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[Hashable] = set()

    def __call__(self, key: Hashable) -> bool:
        with self._lock:
            first = key not in self._seen
            self._seen.add(key)
        return first
