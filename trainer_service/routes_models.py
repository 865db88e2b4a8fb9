"""`/v1/models`: pin a default version, manage aliases, split the default route's traffic and name
a shadow version in the registry (plus a read-only listing).

The trainer owns the registry's write side; inference only reads it and picks changes up by
polling, so a pin made here is served by every inference worker within seconds.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from flask import Blueprint, jsonify, request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from shared import registry as reg
from shared.config import MODEL_NAME_PATTERN
from shared.web.errors import ApiError
from shared.web.validation import json_object, validation_error
from trainer_service.web import api, state

log = logging.getLogger(__name__)

bp = Blueprint("models", __name__)


NAME = {"type": "string", "pattern": MODEL_NAME_PATTERN, "examples": ["digits"]}
WRITE_ERRORS = (400, 401, 404, 409, 413, 415, 422, 503)


class VersionBody(BaseModel):
    """The version to pin or to name."""

    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1)


#: A version a route or the shadow names: a number, or an alias (followed as it moves). One
#: check, the registry's own (`validate_ref`), so an error names the field itself.
VersionRef = Annotated[
    int | str,
    BeforeValidator(reg.validate_ref),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": reg.MAX_VERSION},
                {"type": "string", "pattern": MODEL_NAME_PATTERN},
            ],
            "examples": [1, "champion"],
        }
    ),
]


class TrafficRoute(BaseModel):
    """One side of a split: a version (number or alias) and its share of the default route."""

    model_config = ConfigDict(extra="forbid")
    version: VersionRef
    weight: StrictInt = Field(ge=0, le=100, description="Percent of the default route's requests.")


class TrafficBody(BaseModel):
    """The split of the default predict routes: weights sum to 100, each version named once."""

    model_config = ConfigDict(extra="forbid")
    routes: list[TrafficRoute] = Field(min_length=1, max_length=reg.MAX_ROUTES)

    @field_validator("routes")
    @classmethod
    def _a_split(cls, routes: list[TrafficRoute]) -> list[TrafficRoute]:
        total = sum(r.weight for r in routes)
        if total != 100:
            raise ValueError(f"weights must sum to 100, not {total}")
        refs = [str(r.version) for r in routes]
        if len(set(refs)) != len(refs):
            raise ValueError("each version may be named once")
        return routes


class ShadowBody(BaseModel):
    """The version (number or alias) that also answers every default-route request, unseen."""

    model_config = ConfigDict(extra="forbid")
    version: VersionRef


class ModelSummary(BaseModel):
    """A model in the registry: its versions, the one served by default, pin, aliases, the
    traffic split of the default route and the shadow version (null when none)."""

    name: str
    versions: list[int]
    staged_versions: list[int] = Field(
        description='Versions published staged (sweep trials): never "latest" nor an unpinned '
        "default until a promotion, a pin or a traffic route names them."
    )
    latest_version: int | None
    default_version: int | None
    pinned_version: int | None
    aliases: dict[str, int]
    traffic: list[dict[str, Any]] | None
    shadow: int | str | None


class ModelDetail(ModelSummary):
    """A model with the history of its pin, alias, traffic and shadow changes."""

    history: list[dict[str, Any]]


class ModelList(BaseModel):
    """Every model in the registry."""

    models: list[ModelSummary]


def _actor() -> str:
    """Who made a state change, for the registry's history (never the token)."""
    return f"trainer-api ({request.remote_addr or 'unknown'})"


def _model_name(name: str) -> str:
    """A valid name of an existing model, else 404 (an invalid name cannot exist)."""
    try:
        reg.validate_model_name(name)
    except ValueError:
        raise ApiError(404, "no such model: model names match [a-z0-9][a-z0-9_-]{0,63}") from None
    if name not in state().registry.model_names():
        raise ApiError(404, f"no such model: {name}")
    return name


def _alias(alias: str) -> str:
    try:
        return reg.validate_alias(alias)
    except ValueError as exc:
        raise ApiError(
            422, f"invalid alias: {exc}", field="alias", invalid_fields=["alias"]
        ) from None


def _version_from_body() -> int:
    return _body(VersionBody).version


def _body(model: type[BaseModel]) -> Any:
    payload = json_object(request.get_data(), request.mimetype)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


def _existing_ref(name: str, ref: int | str, field: str) -> None:
    """A route's or the shadow's version must exist (or its alias be set) now: 422 naming the
    field otherwise; a broken one is the kit's 409, as for pins."""
    try:
        state().registry.resolve(name, ref)
    except (reg.VersionNotFoundError, reg.InvalidNameError) as exc:
        raise ApiError(422, str(exc), field=field, invalid_fields=[field.split(".")[0]]) from None


def _existing_version(name: str, version: int) -> int:
    """The version must exist (422 naming it) and verify: pinning a missing or broken version
    would serve nothing. A broken one is the kit's 409 (`BrokenVersionError`), as on inference."""
    registry = state().registry
    versions = registry.versions(name)
    if version not in versions:
        raise ApiError(
            422,
            f"model {name} has no version {version}",
            field="version",
            invalid_fields=["version"],
            versions=versions,
        )
    registry.verify(name, version)
    return version


def _summary(name: str) -> dict[str, Any]:
    registry = state().registry
    st = registry.state(name)
    return {
        "name": name,
        "versions": registry.versions(name),
        "staged_versions": registry.staged_versions(name),
        "latest_version": registry.latest_version(name),
        "default_version": registry.default_version(name),
        "pinned_version": st.get("pinned"),
        "aliases": st.get("aliases", {}),
        "traffic": st.get("traffic"),
        "shadow": st.get("shadow"),
    }


@api.route(
    bp, "GET", "/v1/models", responses={200: ModelList}, errors=(503,),
    summary="Every model: versions, default, pin, aliases", tags=("models",),
)  # fmt: skip
def list_models():
    registry = state().registry
    return jsonify({"models": [_summary(name) for name in registry.model_names()]})


@api.route(
    bp, "GET", "/v1/models/{name}", responses={200: ModelDetail}, errors=(404, 503),
    path_params={"name": NAME}, summary="One model, with its pin/alias history", tags=("models",),
)  # fmt: skip
def get_model(name: str):
    name = _model_name(name)
    summary = _summary(name)
    summary["history"] = state().registry.state(name).get("history", [])
    return jsonify(summary)


@api.route(
    bp, "PUT", "/v1/models/{name}/pin", body=VersionBody, responses={200: ModelSummary},
    errors=WRITE_ERRORS, path_params={"name": NAME},
    summary="Pin the version served by default", tags=("models",),
    examples={"application/json": {"version 1": {"version": 1}}},
)  # fmt: skip
def pin(name: str):
    name = _model_name(name)
    version = _existing_version(name, _version_from_body())
    state().registry.pin(name, version, actor=_actor())
    log.info("model %s pinned to version %d", name, version)
    return jsonify(_summary(name))


@api.route(
    bp, "DELETE", "/v1/models/{name}/pin", responses={200: ModelSummary},
    errors=(401, 404, 503), path_params={"name": NAME},
    summary="Unpin: serve the latest version again", tags=("models",),
)  # fmt: skip
def unpin(name: str):
    name = _model_name(name)
    state().registry.unpin(name, actor=_actor())
    log.info("model %s unpinned", name)
    return jsonify(_summary(name))


@api.route(
    bp, "PUT", "/v1/models/{name}/aliases/{alias}", body=VersionBody,
    responses={200: ModelSummary}, errors=WRITE_ERRORS, path_params={"name": NAME},
    summary="Point an alias at a version", tags=("models",),
    examples={"application/json": {"version 2": {"version": 2}}},
)  # fmt: skip
def set_alias(name: str, alias: str):
    name = _model_name(name)
    alias = _alias(alias)
    version = _existing_version(name, _version_from_body())
    state().registry.set_alias(name, alias, version, actor=_actor())
    log.info("model %s alias %s -> version %d", name, alias, version)
    return jsonify(_summary(name))


@api.route(
    bp, "DELETE", "/v1/models/{name}/aliases/{alias}", responses={200: ModelSummary},
    errors=(401, 404, 422, 503), path_params={"name": NAME},
    summary="Delete an alias", tags=("models",),
)  # fmt: skip
def delete_alias(name: str, alias: str):
    name = _model_name(name)
    alias = _alias(alias)
    if alias not in state().registry.state(name).get("aliases", {}):
        raise ApiError(404, f"model {name} has no alias {alias}")
    state().registry.delete_alias(name, alias, actor=_actor())
    log.info("model %s alias %s deleted", name, alias)
    return jsonify(_summary(name))


@api.route(
    bp, "PUT", "/v1/models/{name}/traffic", body=TrafficBody, responses={200: ModelSummary},
    errors=WRITE_ERRORS, path_params={"name": NAME},
    summary="Split the default route's traffic over versions", tags=("models",),
    description="Requests that name no version are shared by weight (percent); a request with "
    "an X-Routing-Key header always lands on the same version while the split is unchanged. "
    "Aliases are followed as they move; a version that cannot be served gets no traffic.",
    examples={"application/json": {
        "all on version 1": {"routes": [{"version": 1, "weight": 100}]},
    }},
)  # fmt: skip
def set_traffic(name: str):
    name = _model_name(name)
    body: TrafficBody = _body(TrafficBody)
    routes = [r.model_dump() for r in body.routes]
    for i, route in enumerate(routes):
        _existing_ref(name, route["version"], f"routes[{i}].version")
    state().registry.set_traffic(name, routes, actor=_actor())
    log.info("model %s traffic split %s", name, routes)
    return jsonify(_summary(name))


@api.route(
    bp, "DELETE", "/v1/models/{name}/traffic", responses={200: ModelSummary},
    errors=(401, 404, 503), path_params={"name": NAME},
    summary="Drop the split: serve the default version again", tags=("models",),
)  # fmt: skip
def clear_traffic(name: str):
    name = _model_name(name)
    state().registry.clear_traffic(name, actor=_actor())
    log.info("model %s traffic split removed", name)
    return jsonify(_summary(name))


@api.route(
    bp, "PUT", "/v1/models/{name}/shadow", body=ShadowBody, responses={200: ModelSummary},
    errors=WRITE_ERRORS, path_params={"name": NAME},
    summary="Name the shadow version", tags=("models",),
    description="Every request served by the default route also runs on the shadow version "
    "after its answer is sent; inference keeps the agreement figures.",
    examples={"application/json": {"version 1": {"version": 1}}},
)  # fmt: skip
def set_shadow(name: str):
    name = _model_name(name)
    body: ShadowBody = _body(ShadowBody)
    _existing_ref(name, body.version, "version")
    state().registry.set_shadow(name, body.version, actor=_actor())
    log.info("model %s shadow version %s", name, body.version)
    return jsonify(_summary(name))


@api.route(
    bp, "DELETE", "/v1/models/{name}/shadow", responses={200: ModelSummary},
    errors=(401, 404, 503), path_params={"name": NAME},
    summary="Stop shadowing", tags=("models",),
)  # fmt: skip
def clear_shadow(name: str):
    name = _model_name(name)
    state().registry.clear_shadow(name, actor=_actor())
    log.info("model %s shadow removed", name)
    return jsonify(_summary(name))
