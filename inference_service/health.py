"""Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import os
from functools import lru_cache

from flask import Blueprint, Response

from inference_service.context import service
from inference_service.openapi import spec_bytes
from inference_service.responses import json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Alive: the process answers. Never depends on the registry or models."""
    return json_response({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz() -> Response:
    """200 once the default version of every model in the registry is loaded in this worker.

    503 with ``{"ready": false, "reason", "missing"?, "models"}`` otherwise — including an empty
    registry ("no models in the registry"): a worker that can serve no prediction should not get
    traffic yet.
    """
    cache = service().cache
    info = cache.readiness()
    info["pid"] = os.getpid()
    info["loaded"] = [f"{name}:{version}" for name, version in cache.loaded_versions()]
    return json_response(info, status=200 if info["ready"] else 503)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = service().telemetry.render()
    return Response(body, content_type=content_type)


@lru_cache(maxsize=4)
def _openapi_bytes(max_batch_images: int) -> bytes:
    return spec_bytes(max_batch_images)


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(
        _openapi_bytes(service().settings.max_batch_images), mimetype="application/json"
    )
