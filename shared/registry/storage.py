"""What the `Registry` needs from where the models live: the storage interface.

`Registry` (core.py) holds everything that must mean the same on every storage, written once:
name validation, "latest" / "default" / alias resolution, describe, the pin / alias / traffic /
shadow changes (the pure functions of `state`), publish's input checks. A `Storage` holds only
what differs between a folder and an object store:

* where versions are listed from and how a new number is allocated atomically (a folder rename
  locally, a compare-and-swap write of the model's state object on S3);
* how a version is verified and cached (file identity locally, the committed object ETags on S3);
* how the state (pin, aliases, traffic, shadow, history) is changed without losing updates
  (flock locally, conditional writes on S3);
* how a reader notices a change cheaply (a few ``lstat`` locally, conditional GETs on S3).

Two implementations: `shared.registry.local.LocalStorage` (the default, a plain folder) and
`shared.registry.s3.S3Storage` (``s3://bucket/prefix``). Both pass the same registry test suite.
Every method takes names and versions already validated by the `Registry`.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from shared.registry.errors import RegistryError
from shared.registry.state import Change


class RegistryUnavailableError(RegistryError):
    """The storage cannot be reached or answered with an error of its own (the object store is
    down, a timeout, access denied): an outage, never the client's mistake (HTTP 503)."""


class Storage(abc.ABC):
    """Where a registry's versions, manifests and state live (see the module docstring)."""

    #: The registry's address for logs and messages: a folder path or ``s3://bucket/prefix``.
    location: str

    @abc.abstractmethod
    def model_names(self) -> list[str]:
        """Names (sorted) of the models that have at least one version."""

    @abc.abstractmethod
    def require_model(self, name: str) -> None:
        """ModelNotFoundError unless model `name` exists (it may have no version yet)."""

    @abc.abstractmethod
    def versions(self, name: str) -> list[int]:
        """Every published version, ascending, broken ones included; ModelNotFoundError."""

    @abc.abstractmethod
    def manifest(self, name: str, version: int) -> dict[str, Any]:
        """The verified manifest (shared: callers must not mutate it), without "version".

        VersionNotFoundError if there is no such version, BrokenVersionError (with `reason`,
        logged once per version and reason) if it fails verification. Cached: the warm poll
        path costs no file or object reads.
        """

    @abc.abstractmethod
    def weights_path(self, name: str, version: int) -> Path:
        """A local path of the version's weights.npz: the file itself, or a sha256-verified
        download of it (VersionNotFoundError / BrokenVersionError)."""

    @abc.abstractmethod
    def read_file(self, name: str, version: int, file_name: str, entry: dict[str, Any]) -> bytes:
        """The bytes of an extra file the verified manifest lists as `entry` (sha256,
        size_bytes), checked against both; BrokenVersionError if they do not match,
        FileNotFoundError if it is gone."""

    @abc.abstractmethod
    def version_identity(self, name: str, version: int) -> Hashable:
        """A cheap identity of the version's files (no object-store request): it changes when
        they are replaced, so a version refused as broken is retried only then."""

    @abc.abstractmethod
    def state(self, name: str) -> dict[str, Any]:
        """The model's state (shared: callers must not mutate it). Never raises on a corrupt
        state: it is logged once and the last good state seen is returned."""

    @abc.abstractmethod
    def change_state(self, name: str, change: Change) -> dict[str, Any]:
        """Apply `change` atomically against every other writer; return the new state."""

    @abc.abstractmethod
    def publish(
        self, name: str, weights: Path, extras: dict[str, Path], manifest: dict[str, Any]
    ) -> int:
        """Store a new version (objects first, made visible in one atomic step); return its
        number, never one another publisher got."""

    @abc.abstractmethod
    def delete_version(self, name: str, version: int, actor: str | None) -> None:
        """Remove a version unless the state refers to it (VersionInUseError), atomically with
        respect to every state change."""

    @abc.abstractmethod
    def cleanup(self, max_age_seconds: float, name: str | None) -> int:
        """Remove what crashed publishes left (never visible); return how many were removed."""

    @abc.abstractmethod
    def change_token(self, name: str | None) -> Hashable:
        """A comparable token that moves when a version or the state of `name` (or of any
        model, and the set of models, when None) changes. The registry poller's only call."""
