"""The trainer HTTP API: a Flask app that queues training jobs on RQ and manages registry pins.

Run it as `gunicorn -c trainer_service/gunicorn.conf.py "trainer_service.api:create_app()"` (or
`python -m trainer_service api`). Every answer, errors included, is JSON. When Redis is down the
job routes answer 503 and recover on their own once it is back; health and model routes do not
need Redis.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response, jsonify
from rq import Worker
from werkzeug.exceptions import HTTPException

from shared import registry as reg
from shared.config import TrainConfig
from trainer_service.cors import install_cors
from trainer_service.web import ApiError, Settings, TrainerState, error_response, install_auth

log = logging.getLogger("trainer_service.api")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MAX_BODY_BYTES = 1024 * 1024  # a training config is a few hundred bytes


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides environment variables (REDIS_URL, RQ_QUEUE, API_TOKEN...)."""
    settings = Settings.load(config)
    _configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions["digitflow_trainer"] = TrainerState(settings)

    install_auth(app)
    install_cors(app, config)  # CORS_ORIGINS: the web page's origin(s), nothing else
    _install_error_handlers(app)

    from trainer_service.routes_jobs import bp as jobs_bp
    from trainer_service.routes_models import bp as models_bp

    app.register_blueprint(jobs_bp)
    app.register_blueprint(models_bp)

    @app.get("/healthz")
    def healthz():
        """Alive: the process answers. Says nothing about Redis (see /readyz)."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        """Ready: Redis answers a PING, so jobs can be queued."""
        state: TrainerState = app.extensions["digitflow_trainer"]
        try:
            state.redis.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            return error_response(503, f"Redis is unreachable: {_redis_reason(exc)}", ready=False)
        workers = Worker.count(connection=state.redis, queue=state.queue)
        return jsonify({"status": "ready", "queue": settings.queue, "workers": workers})

    openapi_doc = openapi_document()

    @app.get("/openapi.json")
    def openapi():
        return Response(openapi_doc, mimetype="application/json")

    log.info(
        "trainer API ready: queue=%s registry=%s auth=%s",
        settings.queue,
        settings.registry_dir,
        "on" if settings.api_token else "off",
    )
    return app


def openapi_document() -> bytes:
    """The routes come from openapi.json; the job body schema from TrainConfig itself, so the
    document can never drift from what POST /v1/jobs validates."""
    doc = json.loads(OPENAPI_PATH.read_text())
    doc["components"]["schemas"]["TrainConfig"] = TrainConfig.model_json_schema()
    return json.dumps(doc, ensure_ascii=False).encode()


def _configure_logging(level: str) -> None:
    """Our INFO lines (job queued, pin changed...) on stderr, next to gunicorn's own log, unless
    the host process already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level, format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
        )
    logging.getLogger("trainer_service").setLevel(level)


def _redis_reason(exc: Exception) -> str:
    """Redis client errors name host:port and errno; no credentials (the URL's password) appear."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:200].rstrip(".")


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(
            exc.status, exc.message, headers=exc.headers, code=exc.code, **exc.extra
        )

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception):
        log.warning("Redis unavailable: %s", _redis_reason(exc))
        return error_response(
            503,
            f"the job queue (Redis) is unavailable: {_redis_reason(exc)}; retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(reg.InvalidNameError)
    def _invalid_name(exc: Exception):
        return error_response(404, f"no such model or alias: {exc}")

    @app.errorhandler(reg.ModelNotFoundError)
    def _model_not_found(exc: Exception):
        return error_response(404, str(exc))

    @app.errorhandler(reg.VersionNotFoundError)
    def _version_not_found(exc: Exception):
        return error_response(404, str(exc))

    @app.errorhandler(reg.RegistryError)
    def _registry_error(exc: Exception):
        return error_response(422, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = error_response(exc.code or 500, exc.description or exc.name)
        for key, value in exc.get_headers():
            if key.lower() == "allow":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; see the trainer API logs")
