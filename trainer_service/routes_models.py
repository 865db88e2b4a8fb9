"""`/v1/models`: pin a default version and manage aliases in the registry (plus a read-only listing).

The trainer owns the registry's write side; inference only reads it and picks changes up by
polling, so a pin made here is served by every inference worker within seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

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


class ModelSummary(BaseModel):
    """A model in the registry: its versions, the one served by default, pin and aliases."""

    name: str
    versions: list[int]
    latest_version: int | None
    default_version: int | None
    pinned_version: int | None
    aliases: dict[str, int]


class ModelDetail(ModelSummary):
    """A model with the history of its pin and alias changes."""

    history: list[dict[str, Any]]


class ModelList(BaseModel):
    """Every model in the registry."""

    models: list[ModelSummary]


def _actor() -> str:
    """Who made a pin/alias change, for the registry's history (never the token)."""
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
    payload = json_object(request.get_data(), request.mimetype)
    try:
        return VersionBody.model_validate(payload).version
    except ValidationError as exc:
        raise validation_error(exc, "body") from None


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
        "latest_version": registry.latest_version(name),
        "default_version": registry.default_version(name),
        "pinned_version": st.get("pinned"),
        "aliases": st.get("aliases", {}),
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
