"""Application factory of the inference service (run under gunicorn: see ``__init__``).

Everything an app needs (settings, registry, model cache, metrics) hangs off the app (the web
kit's ``app_state()``) — no module globals — so tests can build as many independent apps as they
like. Every route comes from the one table of `inference_service.routes`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from inference_service import routes
from inference_service.front import Front
from inference_service.predict import Router
from inference_service.serving import ModelCache
from inference_service.settings import Settings
from inference_service.shadow import ShadowRunner
from inference_service.state import ServiceState
from inference_service.telemetry import Telemetry
from shared.web.app import add_views, create_flask_app, serve_openapi

logger = logging.getLogger("inference_service")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` keys override the environment variables of the same name
    (see `inference_service.settings.Settings`); other keys go to ``app.config`` (e.g.
    TESTING)."""
    settings = Settings.load(config)
    registry = settings.open_registry(read_only=True)
    telemetry = Telemetry(
        settings.prometheus_multiproc_dir, flush_seconds=settings.live_figures_flush_seconds
    )
    cache = ModelCache(
        registry,
        telemetry=telemetry,
        capacity=settings.model_cache_size,
        poll_seconds=settings.registry_poll_seconds,
    )
    state = ServiceState(settings, registry, cache, telemetry, ShadowRunner(telemetry))
    app = create_flask_app(
        __name__, settings, state, config, max_content_length=settings.max_content_length
    )
    add_views(app, routes.VIEWS)
    serve_openapi(app, routes.build_api())
    app.wsgi_app = Front(app, state, Router(routes.PLAIN))  # type: ignore[method-assign]
    logger.info(
        "inference app created: registry %s, poll %.3gs, cache %d versions",
        settings.registry_location, settings.registry_poll_seconds, settings.model_cache_size,
    )  # fmt: skip
    return app
