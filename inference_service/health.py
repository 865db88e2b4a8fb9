"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from flask import Blueprint, Response

from inference_service.openapi import api
from inference_service.responses import json_response
from inference_service.schemas import Health, Readiness
from inference_service.state import service

bp = Blueprint("health", __name__)


@api.route(bp, "GET", "/healthz", summary="Liveness: the worker answers", responses={200: Health})
def healthz() -> Response:
    """Alive: the process answers. Never depends on the registry or models."""
    return json_response({"status": "ok", "pid": os.getpid()})


@api.route(
    bp,
    "GET",
    "/readyz",
    summary="Readiness: every model's default version is loaded in this worker",
    responses={200: Readiness, 503: Readiness},
)
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


@api.route(
    bp,
    "GET",
    "/metrics",
    summary="Prometheus metrics (all workers aggregated under gunicorn)",
    responses={200: "Prometheus text format"},
)
def metrics() -> Response:
    body, content_type = service().telemetry.render()
    return Response(body, content_type=content_type)
