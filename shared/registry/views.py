"""What a listing answers about a model and its versions, built here once from the registry.

`GET /v1/models` and `GET /v1/models/<name>` answer these shapes on both services: the trainer
as they are, inference through its one documented extension (`inference_service.schemas`: what
this worker serves). The traffic split and the shadow appear as set in the registry; a caller
never needs to know which service it asked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.registry.core import Registry
from shared.registry.state import TrafficRoute, VersionRef


class ShadowRef(BaseModel):
    """The shadow version as set: a number or an alias (followed as it moves)."""

    version: VersionRef


class _ModelState(BaseModel):
    """What summary and detail share: the default and how it is chosen, aliases, split, shadow,
    retention."""

    name: str
    latest_version: int | None = Field(
        description="The newest good version that is not staged (null: none)."
    )
    default_version: int | None = Field(
        description="What the default route serves without a split: the pin, else latest."
    )
    pinned_version: int | None
    aliases: dict[str, int]
    traffic: list[TrafficRoute] | None = Field(
        description="The default route's traffic split (null: none): each route's version (a "
        "number or an alias) and weight (percent)."
    )
    shadow: ShadowRef | None = Field(description="The shadow version (null: none).")
    keep_last: int | None = Field(
        description="The retention rule (null: every version is kept): after each publish, "
        "versions older than the newest keep_last are deleted, except those a pin, alias, "
        "traffic route or shadow names and those of a running job or sweep."
    )


class ModelSummary(_ModelState):
    """A model in the registry: its versions, the one served by default, pin, aliases, the
    traffic split of the default route and the shadow version."""

    versions: list[int]
    staged_versions: list[int] = Field(
        description='Versions published staged (sweep trials): never "latest" nor an unpinned '
        "default until a promotion, a pin or a traffic route names them."
    )


class ModelList(BaseModel):
    """Every model in the registry."""

    models: list[ModelSummary]


class VersionSummary(BaseModel):
    """One version of a model: whether it verifies, what its manifest says, what names it."""

    version: int
    status: Literal["ok", "broken"]
    error: str | None = Field(description="Why it is broken (null when ok).")
    created_at: str | None
    sha256: str | None
    metrics: dict[str, Any] | None
    config: dict[str, Any] | None
    files: list[str] = Field(description="Files published with the version (its training report).")
    sweep: dict[str, Any] | None = Field(
        description="The sweep trial that trained it: sweep_id, trial, params, objective, value "
        "(the sweep's report: GET /v1/sweeps/<sweep_id>/report.png on the trainer)."
    )
    staged: bool = Field(
        description='Published staged (a sweep trial): never "latest" nor an unpinned default; '
        "served only when named (number, alias, pin, traffic route or shadow)."
    )
    aliases: list[str]
    default: bool
    pinned: bool


class ModelDetail(_ModelState):
    """A model with every version (status, metrics, config, aliases) and the history of its pin,
    alias, traffic, shadow and retention changes."""

    versions: list[VersionSummary]
    history: list[dict[str, Any]] = Field(
        description="Pin, alias, traffic, shadow and retention changes (and the versions "
        "deleted), oldest first."
    )


def _of(manifest: dict[str, Any], key: str, kind: type) -> Any:
    """A manifest entry of the documented type, else None: a manifest published by hand (not by
    a trainer) can hold anything, and a listing must still answer its documented shape."""
    value = manifest.get(key)
    return value if isinstance(value, kind) else None


def _state_fields(registry: Registry, name: str, state: dict[str, Any]) -> dict[str, Any]:
    shadow = state["shadow"]
    return {
        "name": name,
        "latest_version": registry.latest_version(name),
        "default_version": registry.default_version(name),
        "pinned_version": state["pinned"],
        "aliases": state["aliases"],
        "traffic": state["traffic"],
        "shadow": None if shadow is None else {"version": shadow},
        "keep_last": state["keep_last"],
    }


def model_summary(registry: Registry, name: str) -> ModelSummary:
    """Model `name` as listings show it (ModelNotFoundError when there is none)."""
    state = registry.state(name)
    return ModelSummary(
        **_state_fields(registry, name, state),
        versions=registry.versions(name),
        staged_versions=registry.staged_versions(name),
    )


def model_summaries(registry: Registry) -> list[ModelSummary]:
    """Every model, skipping one removed while it was being listed."""
    out = []
    for name in registry.model_names():
        try:
            out.append(model_summary(registry, name))
        except LookupError:
            continue
    return out


def aliases_by_version(aliases: dict[str, int]) -> dict[int, list[str]]:
    """version → its aliases, sorted: what a version's row (or manifest) lists."""
    out: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        out.setdefault(version, []).append(alias)
    return out


def model_detail(registry: Registry, name: str, *, history: int | None = None) -> ModelDetail:
    """Model `name` with every version, broken ones shown with their reason, and its history
    (the newest `history` entries; all when None)."""
    rows = registry.describe_versions(name)  # validates the name; ModelNotFoundError
    state = registry.state(name)
    fields = _state_fields(registry, name, state)
    by_version = aliases_by_version(state["aliases"])
    versions = []
    for row in rows:
        v = row["version"]
        manifest = row["manifest"] or {}
        versions.append(
            VersionSummary(
                version=v,
                status=row["status"],
                error=row["error"],
                created_at=_of(manifest, "created_at", str),
                sha256=_of(manifest, "sha256", str),
                metrics=_of(manifest, "metrics", dict),
                config=_of(manifest, "config", dict),
                files=sorted(manifest.get("files") or {}),
                sweep=_of(manifest, "sweep", dict),
                staged=bool(manifest.get("staged")),
                aliases=by_version.get(v, []),
                default=v == fields["default_version"],
                pinned=v == state["pinned"],
            )
        )
    entries = state["history"] if history is None else state["history"][-history:]
    return ModelDetail(**fields, versions=versions, history=entries)
