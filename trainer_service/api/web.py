"""What the trainer API's blueprints share: the route table (``api.route(bp, ...)`` registers
a Flask rule and its OpenAPI operation together), the per-app state and the answers. Apart from
`app` (the factory) so the route modules can import it without a circular import."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from flask import Response, jsonify
from pydantic import BaseModel, ValidationError
from rq import Queue

from shared.web.app import app_state
from shared.web.errors import ApiError
from shared.web.openapi import Api
from shared.web.validation import validation_error
from trainer_service import queueing
from trainer_service.settings import TrainerSettings

if TYPE_CHECKING:
    from shared.registry import Registry

M = TypeVar("M", bound=BaseModel)

#: The path parameter of a job or sweep id (the API makes them: uuid4 hex).
ID = {"type": "string", "pattern": queueing.JOB_ID_RE.pattern}

api = Api(
    "digitflow trainer API",
    "1.0",
    "Training and the registry's state for digitflow's digit classifiers. **Jobs**: queue a "
    "training job (RQ on Redis; an Idempotency-Key makes a retry return the same job), follow "
    "its per-epoch progress, cancel or stop it. **Sweeps**: hyperparameter searches (Optuna) "
    "whose trials are training jobs, with a report PNG per sweep; cancel one. **Registry "
    "state**, what the inference service serves (picked up within a poll, no restart): list "
    "models and their versions, pin the default version, name versions with aliases, split the "
    "default route's traffic over versions, name a shadow version, set a retention rule (keep "
    "the last N versions); every change is kept in the model's history. **Health** and readiness (Redis answers) probes. When API_TOKEN is set, "
    "every POST, PUT and DELETE needs `Authorization: Bearer <token>`. Answers are JSON, errors "
    "included, except the sweep report PNG.",
)


class TrainerState:
    """Per-app connections. The Redis client is lazy and reconnects by itself after an outage."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.redis: redis.Redis = queueing.connect(settings)
        self.queue: Queue = queueing.make_queue(settings.rq_queue, self.redis)

    @functools.cached_property
    def registry(self) -> Registry:
        """The model registry (opened lazily: the API must start even before it is needed)."""
        return self.settings.open_registry()


def state() -> TrainerState:
    """The state of the app handling the current request."""
    return app_state()


def answer(view: BaseModel, status: int = 200) -> Response:
    """A documented answer (its response model) as JSON: every field set, and those a route
    left unset because they do not apply (a job's `position` once it is not queued) left out."""
    response = jsonify(view.model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    return response


def accepted(view: BaseModel, location: str, *, replayed: bool = False) -> Response:
    """202 with `Location` (and `Idempotent-Replayed: true` for a replayed POST): what a queued
    job or a started sweep answers, `view` naming it with its `location`."""
    response = answer(view, 202)
    response.headers["Location"] = location
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def validated(model: type[M], data: Any, what: str, **error: Any) -> M:
    """`data` as `model`, or 422 naming every bad field (`what`: "body", "query"...)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, what, **error) from None


def check_id(value: str, what: str) -> str:
    """404 for a malformed job or sweep id before Redis is touched (never echoing it back)."""
    if not queueing.JOB_ID_RE.match(value):
        raise ApiError(404, f"no such {what}: {what} ids are 32 lowercase hex characters")
    return value
