"""The registry's exceptions: one base class, and the standard exception each also is (a
missing model is a LookupError, a bad name a ValueError) so callers can catch either."""

from __future__ import annotations


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


class VersionInUseError(RegistryError):
    """The version is pinned, aliased, shadowed or in the traffic split: it cannot be removed."""


class ReadOnlyRegistryError(RegistryError, PermissionError):
    """A write was attempted through a Registry opened with read_only=True."""
