"""What the registry's tests ask of a registry beyond what the services use."""

from __future__ import annotations

from shared.registry import BrokenVersionError, Registry


def version_status(reg: Registry, name: str, version: int | str) -> str:
    """ "ok" or "broken: <reason>" (raises VersionNotFoundError if there is no such version)."""
    try:
        reg.verify(name, version)
    except BrokenVersionError as exc:
        return f"broken: {exc.reason}"
    return "ok"


def cleanup_temp(reg: Registry, max_age_seconds: float, *, name: str | None = None) -> int:
    """Run the storage's sweep of what crashed publishes left (publish runs it for its model)."""
    return reg.storage.cleanup(max_age_seconds, name)
