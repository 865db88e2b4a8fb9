"""What the `Registry` needs from where the models live: the storage interface.

`Registry` (core.py) holds everything that must mean the same on every storage; a `Storage`
holds only what differs between a folder (`local.LocalStorage`) and an object store
(`s3.S3Storage`): how versions are listed and a new number allocated atomically, how a version is
verified and cached, how the state changes without losing updates, and how a reader notices a
change cheaply. Every method takes names and versions already validated by the `Registry`, whose
methods of the same names document what they answer (here: only what more a storage owes).
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
    def model_names(self) -> list[str]: ...

    @abc.abstractmethod
    def require_model(self, name: str) -> None:
        """ModelNotFoundError unless model `name` exists (it may have no version yet)."""

    @abc.abstractmethod
    def versions(self, name: str) -> list[int]: ...

    @abc.abstractmethod
    def manifest(self, name: str, version: int) -> dict[str, Any]:
        """The verified manifest without "version" (shared: callers must not mutate it).
        Cached: the warm poll path costs no file or object reads."""

    @abc.abstractmethod
    def weights_path(self, name: str, version: int) -> Path: ...

    @abc.abstractmethod
    def release(self, name: str, version: int) -> None: ...

    @abc.abstractmethod
    def read_file(self, name: str, version: int, file_name: str, entry: dict[str, Any]) -> bytes:
        """An extra file's bytes, checked against its manifest `entry` (sha256, size_bytes)."""

    @abc.abstractmethod
    def version_identity(self, name: str, version: int) -> Hashable:
        """Moves when the version's files are replaced (no object-store request)."""

    @abc.abstractmethod
    def state(self, name: str) -> dict[str, Any]:
        """The model's state (shared: callers must not mutate it); never raises on a corrupt
        one."""

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
    def delete_version(self, name: str, version: int, actor: str | None) -> None: ...

    @abc.abstractmethod
    def cleanup(self, max_age_seconds: float, name: str | None) -> int:
        """Remove what crashed publishes left (never visible); return how many were removed."""

    @abc.abstractmethod
    def change_token(self, name: str | None) -> Hashable: ...
