"""`/v1/models`: pin a default version, manage aliases, split the default route's traffic, name
a shadow version and set a retention rule in the registry (plus a read-only listing).

The trainer owns the registry's write side; inference only reads it and picks changes up by
polling, so a pin made here is served by every inference worker within seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared import registry as reg
from shared.config import MODEL_NAME_PATTERN
from shared.web.validation import json_object
from trainer_service.api import web
from trainer_service.api.web import api, state

log = logging.getLogger(__name__)

bp = Blueprint("models", __name__)


NAME = {"type": "string", "pattern": MODEL_NAME_PATTERN, "examples": ["digits"]}
WRITE_ERRORS = (400, 401, 404, 409, 413, 415, 422, 503)


class VersionBody(BaseModel):
    """The version to pin or to name."""

    model_config = ConfigDict(extra="forbid")
    version: StrictInt = Field(ge=1)


class ShadowBody(BaseModel):
    """The version (number or alias) that also answers every default-route request, unseen."""

    model_config = ConfigDict(extra="forbid")
    version: reg.VersionRef


class RetentionBody(BaseModel):
    """How many of the newest versions to keep."""

    model_config = ConfigDict(extra="forbid")
    keep_last: reg.KeepLast


def _actor() -> str:
    """Who made a state change, for the registry's history (never the token)."""
    return f"trainer-api ({request.remote_addr or 'unknown'})"


def _body(model: type[web.M]) -> web.M:
    return web.validated(model, json_object(request.get_data(), request.mimetype), "body")


def _write(method: str, path: str, summary: str, **spec: Any) -> Any:
    """A write route: a PUT with a `body`, or a DELETE; it answers the model as listed now."""
    errors = WRITE_ERRORS if "body" in spec else (401, 404, 503)
    spec = {"errors": errors, "path_params": {"name": NAME}, **spec}
    return api.route(
        bp, method, path, responses={200: reg.ModelSummary}, summary=summary, tags=("models",),
        **spec,
    )  # fmt: skip


def _changed(name: str, change: str, *args: Any) -> Response:
    log.info("model %s " + change, name, *args)
    return web.answer(reg.model_summary(state().registry, name))


@api.route(
    bp, "GET", "/v1/models", responses={200: reg.ModelList}, errors=(503,),
    summary="Every model: versions, default, pin, aliases", tags=("models",),
)  # fmt: skip
def list_models():
    return web.answer(reg.ModelList(models=reg.model_summaries(state().registry)))


@api.route(
    bp, "GET", "/v1/models/{name}", responses={200: reg.ModelDetail}, errors=(404, 503),
    path_params={"name": NAME}, summary="One model, with its pin/alias history", tags=("models",),
)  # fmt: skip
def get_model(name: str):
    return web.answer(reg.model_detail(state().registry, name))


@_write("PUT", "/v1/models/{name}/pin", "Pin the version served by default", body=VersionBody,
        examples={"application/json": {"version 1": {"version": 1}}})  # fmt: skip
def pin(name: str):
    version = _body(VersionBody).version
    state().registry.pin(name, version, actor=_actor())
    return _changed(name, "pinned to version %d", version)


@_write("DELETE", "/v1/models/{name}/pin", "Unpin: serve the latest version again")
def unpin(name: str):
    state().registry.unpin(name, actor=_actor())
    return _changed(name, "unpinned")


@_write("PUT", "/v1/models/{name}/aliases/{alias}", "Point an alias at a version", body=VersionBody,
        examples={"application/json": {"version 2": {"version": 2}}})  # fmt: skip
def set_alias(name: str, alias: str):
    version = _body(VersionBody).version
    state().registry.set_alias(name, alias, version, actor=_actor())
    return _changed(name, "alias %s -> version %d", alias, version)


@_write(
    "DELETE", "/v1/models/{name}/aliases/{alias}", "Delete an alias", errors=(401, 404, 422, 503)
)
def delete_alias(name: str, alias: str):
    state().registry.delete_alias(name, alias, actor=_actor())
    return _changed(name, "alias %s deleted", alias)


@_write(
    "PUT", "/v1/models/{name}/traffic", "Split the default route's traffic over versions",
    body=reg.TrafficSplit,
    description="Requests that name no version are shared by weight (percent); a request with "
    "an X-Routing-Key header always lands on the same version while the split is unchanged. "
    "Aliases are followed as they move; a version that cannot be served gets no traffic.",
    examples={"application/json": {
        "all on version 1": {"routes": [{"version": 1, "weight": 100}]},
    }},
)  # fmt: skip
def set_traffic(name: str):
    routes = _body(reg.TrafficSplit).as_state()
    state().registry.set_traffic(name, routes, actor=_actor())
    return _changed(name, "traffic split %s", routes)


@_write("DELETE", "/v1/models/{name}/traffic", "Drop the split: serve the default version again")
def clear_traffic(name: str):
    state().registry.clear_traffic(name, actor=_actor())
    return _changed(name, "traffic split removed")


@_write(
    "PUT", "/v1/models/{name}/shadow", "Name the shadow version", body=ShadowBody,
    description="Every request served by the default route also runs on the shadow version "
    "after its answer is sent; inference keeps the agreement figures.",
    examples={"application/json": {"version 1": {"version": 1}}},
)  # fmt: skip
def set_shadow(name: str):
    version = _body(ShadowBody).version
    state().registry.set_shadow(name, version, actor=_actor())
    return _changed(name, "shadow version %s", version)


@_write("DELETE", "/v1/models/{name}/shadow", "Stop shadowing")
def clear_shadow(name: str):
    state().registry.clear_shadow(name, actor=_actor())
    return _changed(name, "shadow removed")


@_write(
    "PUT", "/v1/models/{name}/retention", "Keep only the newest versions", body=RetentionBody,
    errors=(400, 401, 404, 413, 415, 422, 503),
    description="After each publish, the trainer worker deletes the versions older than the "
    "newest keep_last, except those a pin, alias, traffic route or shadow names and those of a "
    "job or sweep still running. Deleted numbers are never reused.",
    examples={"application/json": {"the last 10": {"keep_last": 10}}},
)  # fmt: skip
def set_retention(name: str):
    keep_last = _body(RetentionBody).keep_last
    state().registry.set_retention(name, keep_last, actor=_actor())
    return _changed(name, "retention: keep the last %d versions", keep_last)


@_write("DELETE", "/v1/models/{name}/retention", "Keep every version again (the default)")
def clear_retention(name: str):
    state().registry.set_retention(name, None, actor=_actor())
    return _changed(name, "retention removed")
