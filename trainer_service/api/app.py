"""The trainer HTTP API: a Flask app that queues training jobs on RQ and manages registry pins.

Run by gunicorn (`trainer_service/api/gunicorn.conf.py`, the Procfile). Built on the shared web
kit (`shared.web`): every answer, errors included, is JSON from the kit's one error table, and
``GET /openapi.json`` is generated from the routes' own declarations. When Redis is down the job
routes answer 503 with Retry-After and recover once it is back; health and model routes do not
need Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from shared.web.app import create_flask_app, serve_openapi
from shared.web.errors import ApiError
from trainer_service import queueing
from trainer_service.api.auth import install_auth
from trainer_service.api.cors import install_cors
from trainer_service.api.routes_health import bp as health_bp
from trainer_service.api.routes_jobs import bp as jobs_bp
from trainer_service.api.routes_models import bp as models_bp
from trainer_service.api.routes_sweeps import bp as sweeps_bp
from trainer_service.api.web import TrainerState, api
from trainer_service.settings import TrainerSettings

log = logging.getLogger("trainer_service.api.app")

MAX_BODY_BYTES = 1024 * 1024  # a training config is a few hundred bytes
#: Seconds a client is asked to wait before retrying while Redis is unreachable.
REDIS_RETRY_AFTER = "5"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides environment variables (REDIS_URL, RQ_QUEUE, API_TOKEN...,
    see `TrainerSettings`); other keys (TESTING) go to Flask's config."""
    settings = TrainerSettings.load(config)
    app = create_flask_app(
        __name__,
        settings,
        TrainerState(settings),
        config,
        translate=dict.fromkeys(queueing.REDIS_ERRORS, redis_unavailable),
        max_content_length=MAX_BODY_BYTES,
    )
    install_auth(app, settings)
    install_cors(app, settings.cors_origins)  # the web page's origin(s), nothing else

    for blueprint in (health_bp, jobs_bp, models_bp, sweeps_bp):
        app.register_blueprint(blueprint)
    serve_openapi(app, api)

    log.info(
        "trainer API ready: queue=%s registry=%s auth=%s",
        settings.rq_queue,
        settings.registry_location,
        "on" if settings.api_token is not None else "off",
    )
    return app


def redis_unavailable(exc: BaseException) -> ApiError:
    """503 + Retry-After while the job queue is unreachable. Redis client errors name host:port
    and errno, never credentials (the URL's password)."""
    reason = (str(exc).strip() or exc.__class__.__name__).splitlines()[0][:200].rstrip(".")
    log.warning("Redis unavailable: %s", reason)
    message = f"the job queue (Redis) is unavailable: {reason}; retry shortly"
    return ApiError(503, message, headers={"Retry-After": REDIS_RETRY_AFTER})
