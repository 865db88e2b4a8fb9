"""Operational routes: liveness, readiness and Prometheus metrics (listed in
`inference_service.routes`)."""

from __future__ import annotations

import os

from flask import Response

from inference_service.responses import answer
from inference_service.schemas import Health, Readiness
from inference_service.state import service


def healthz() -> Response:
    """Alive: the process answers. Never depends on the registry or models."""
    return answer(Health(status="ok", pid=os.getpid()))


def readyz() -> Response:
    """200 once every model's default version is loaded in this worker, else 503 with the
    reason (an empty registry too: see `ModelCache.readiness`)."""
    cache = service().cache
    info = cache.readiness()
    loaded = [f"{name}:{version}" for name, version in cache.versions.loaded_versions()]
    info = Readiness(**info, pid=os.getpid(), loaded=loaded)
    return answer(info, 200 if info.ready else 503, exclude_unset=True)


def metrics() -> Response:
    body, content_type = service().telemetry.render()
    return Response(body, content_type=content_type)
