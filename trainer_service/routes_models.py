"""`/v1/models`: pin a default version and manage aliases in the registry (plus a read-only listing).

The trainer owns the registry's write side; inference only reads it and picks changes up by
polling, so a pin made here is served by every inference worker within seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request

from shared import registry as reg
from trainer_service.routes_jobs import json_object_body
from trainer_service.web import ApiError, state

log = logging.getLogger(__name__)

bp = Blueprint("models", __name__)


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
        raise ApiError(422, f"invalid alias: {exc}", invalid_fields=["alias"]) from None


def _version_from_body() -> int:
    payload = json_object_body()
    unknown = sorted(set(payload) - {"version"})
    if unknown:
        raise ApiError(
            422,
            f'unknown field(s): {", ".join(unknown)}; send {{"version": N}}',
            invalid_fields=unknown,
        )
    version = payload.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ApiError(422, "version must be a positive integer", invalid_fields=["version"])
    return version


def _existing_version(name: str, version: int) -> int:
    """The version must exist and verify: pinning a broken or missing version would serve nothing."""
    registry = state().registry
    if version not in registry.versions(name):
        raise ApiError(
            422,
            f"model {name} has no version {version}",
            invalid_fields=["version"],
            versions=registry.versions(name),
        )
    try:
        registry.verify(name, version)
    except reg.BrokenVersionError as exc:
        raise ApiError(
            422, f"model {name} version {version} is broken: {exc}", invalid_fields=["version"]
        ) from None
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


@bp.get("/v1/models")
def list_models():
    registry = state().registry
    return jsonify({"models": [_summary(name) for name in registry.model_names()]})


@bp.get("/v1/models/<name>")
def get_model(name: str):
    name = _model_name(name)
    summary = _summary(name)
    summary["history"] = state().registry.state(name).get("history", [])
    return jsonify(summary)


@bp.put("/v1/models/<name>/pin")
def pin(name: str):
    name = _model_name(name)
    version = _existing_version(name, _version_from_body())
    state().registry.pin(name, version, actor=_actor())
    log.info("model %s pinned to version %d", name, version)
    return jsonify(_summary(name))


@bp.delete("/v1/models/<name>/pin")
def unpin(name: str):
    name = _model_name(name)
    state().registry.unpin(name, actor=_actor())
    log.info("model %s unpinned", name)
    return jsonify(_summary(name))


@bp.put("/v1/models/<name>/aliases/<alias>")
def set_alias(name: str, alias: str):
    name = _model_name(name)
    alias = _alias(alias)
    version = _existing_version(name, _version_from_body())
    state().registry.set_alias(name, alias, version, actor=_actor())
    log.info("model %s alias %s -> version %d", name, alias, version)
    return jsonify(_summary(name))


@bp.delete("/v1/models/<name>/aliases/<alias>")
def delete_alias(name: str, alias: str):
    name = _model_name(name)
    alias = _alias(alias)
    if alias not in state().registry.state(name).get("aliases", {}):
        raise ApiError(404, f"model {name} has no alias {alias}")
    state().registry.delete_alias(name, alias, actor=_actor())
    log.info("model %s alias %s deleted", name, alias)
    return jsonify(_summary(name))
