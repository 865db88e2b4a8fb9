"""Plumbing the trainer API's blueprints share: settings, per-app state, JSON errors, auth.

Kept apart from `api.py` so the route modules can import it without a circular import.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from flask import Flask, current_app, jsonify, request
from rq import Queue

from trainer_service import queueing


@dataclass(frozen=True)
class Settings:
    """Everything the API reads from the environment, resolved once per app."""

    redis_url: str
    queue: str
    registry_dir: Path
    job_timeout: int
    result_ttl: int
    failure_ttl: int
    api_token: str | None = field(default=None, repr=False)  # never in reprs or logs
    max_queued_jobs_per_model: int = 10
    idempotency_ttl: int = queueing.SECONDS_PER_DAY
    redis_socket_timeout: float = 5.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> Settings:
        """Environment variables, with `overrides` (create_app's config dict) taking precedence."""
        env: dict[str, str] = dict(os.environ)
        for key, value in (overrides or {}).items():
            env[key] = "" if value is None else str(value)
        token = env.get("API_TOKEN", "")
        return cls(
            redis_url=queueing.redis_url(env),
            queue=queueing.queue_name(env),
            registry_dir=Path(env.get("MODEL_REGISTRY_DIR", "").strip() or "./var/models"),
            job_timeout=queueing.env_int("JOB_TIMEOUT", 7200, env),
            result_ttl=queueing.env_int("RESULT_TTL", 7 * queueing.SECONDS_PER_DAY, env),
            failure_ttl=queueing.env_int("FAILURE_TTL", 30 * queueing.SECONDS_PER_DAY, env),
            api_token=token or None,
            max_queued_jobs_per_model=queueing.env_int("MAX_QUEUED_JOBS_PER_MODEL", 10, env),
            idempotency_ttl=queueing.env_int("IDEMPOTENCY_TTL", queueing.SECONDS_PER_DAY, env),
            redis_socket_timeout=float(env.get("REDIS_SOCKET_TIMEOUT", "") or 5.0),
            log_level=(env.get("LOG_LEVEL", "").strip() or "INFO").upper(),
        )


class TrainerState:
    """Per-app connections. The Redis client is lazy and reconnects by itself after an outage."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: redis.Redis = queueing.connect(
            settings.redis_url, socket_timeout=settings.redis_socket_timeout
        )
        self.queue: Queue = queueing.make_queue(
            settings.queue, self.redis, default_timeout=settings.job_timeout
        )
        self._registry = None

    @property
    def registry(self):
        """The model registry (imported lazily: the API must start even before it is needed)."""
        if self._registry is None:
            from shared.registry import Registry

            self._registry = Registry(self.settings.registry_dir)
        return self._registry


def state() -> TrainerState:
    return current_app.extensions["digitflow_trainer"]


#: HTTP status → the machine-readable error code (same vocabulary as the inference service).
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by a route to answer with a JSON error body and a status code."""

    def __init__(self, status: int, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra
        self.headers: dict[str, str] = {}


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    **extra: Any,
):
    """`{"error": {"code", "message", ...details}}`, the shape both services answer errors with."""
    error = {"code": code or ERROR_CODES.get(status, "error"), "message": message, **extra}
    response = jsonify({"error": error})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def install_auth(app: Flask) -> None:
    """When API_TOKEN is set, every mutating request needs `Authorization: Bearer <token>`.

    Reads stay open. The comparison is constant-time and neither the expected nor the presented
    token is ever logged or echoed back.
    """

    @app.before_request
    def _require_token():
        token = state().settings.api_token
        if not token or request.method not in MUTATING_METHODS:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode("utf-8"), token.encode("utf-8")
        )
        if ok:
            return None
        message = (
            "missing bearer token: send 'Authorization: Bearer <API_TOKEN>'"
            if not header
            else "invalid bearer token"
        )
        return error_response(
            401, message, headers={"WWW-Authenticate": 'Bearer realm="digitflow"'}
        )
