"""`/v1/sweeps`: start, inspect, list and cancel hyperparameter sweeps (sweeps.coordinator).

Reads are pure: a GET never moves a sweep on (the workers do). The body is validated here, once
(`SweepRequest`, the base TrainConfig included); the same auth, Idempotency-Key and 4xx rules as
`POST /v1/jobs` apply.

The sweep report (`report.png`, shared.reports.draw_sweep_report) is drawn on request from the
sweep's view, not stored in the registry: a version is immutable once published (its files are
hashed into its manifest), and every trial, the winner included, publishes before the sweep knows
it won; a copy kept elsewhere could disagree with the study. The winner's manifest names its
sweep (`sweep.sweep_id`), so the report is one request away from the version.
"""

from __future__ import annotations

import io
import logging
import uuid

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import LockError

from shared.web.errors import ApiError
from shared.web.openapi import Answer, ErrorBody
from shared.web.validation import json_object
from trainer_service.api import idempotency, web
from trainer_service.api.routes_jobs import IDEMPOTENCY_CONFLICT, MAX_LIST_LIMIT
from trainer_service.api.web import api, state
from trainer_service.sweeps import coordinator as sweeps
from trainer_service.sweeps.models import (
    README_EXAMPLE,
    SweepPlan,
    SweepRequest,
    SweepStatus,
    SweepView,
)

log = logging.getLogger(__name__)

bp = Blueprint("sweeps", __name__)


class SweepAccepted(BaseModel):
    """The sweep started (or, for a replayed Idempotency-Key, the sweep started the first time)."""

    sweep_id: str
    status: SweepStatus
    model: str
    location: str


class SweepSummary(BaseModel):
    sweep_id: str
    status: SweepStatus
    model: str
    created_at: str
    ended_at: str | None
    n_trials: int
    trials_started: int = Field(description="out of n_trials (retries of dead trials not counted)")


class SweepList(BaseModel):
    sweeps: list[SweepSummary]
    count: int


class ListSweepsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(default=50, ge=1, le=MAX_LIST_LIMIT)


def _record(sweep_id: str) -> dict:
    st = state()
    record = sweeps.load_record(st.redis, st.settings.rq_queue, web.check_id(sweep_id, "sweep"))
    if record is None:
        raise ApiError(404, f"no such sweep: {sweep_id}")
    return record


def _view(sweep_id: str) -> SweepView:
    st = state()
    return sweeps.view(st.redis, st.settings, _record(sweep_id))


def _accepted(record: dict, *, replayed: bool = False) -> Response:
    location = url_for("sweeps.get_sweep", sweep_id=record["sweep_id"])
    body = SweepAccepted(
        **{k: record[k] for k in ("sweep_id", "status", "model")}, location=location
    )
    return web.accepted(body, location, replayed=replayed)


@api.route(
    bp, "POST", "/v1/sweeps", body=SweepRequest,
    responses={202: SweepAccepted, 409: IDEMPOTENCY_CONFLICT},
    errors=(400, 401, 413, 415, 422, 503), summary="Start a hyperparameter sweep",
    tags=("sweeps",),
    description="Trials are ordinary training jobs, `parallelism` at a time, sampled and pruned "
    "by Optuna; the objective is measured on the validation split, never the test set. An "
    "Idempotency-Key header makes a retried POST return the sweep created the first time.",
    examples={"application/json": {"readme": README_EXAMPLE}},
)  # fmt: skip
def submit_sweep():
    payload = json_object(request.get_data(), request.mimetype)
    body = web.validated(SweepRequest, payload, "sweep", code="invalid_sweep")
    st = state()
    sweep_id = uuid.uuid4().hex

    def create() -> Response:
        try:
            record = sweeps.create(st.redis, st.queue, st.settings, body, sweep_id)
        except LockError:
            raise ApiError(503, "could not take the sweep's lock; retry shortly") from None
        log.info("sweep %s started for model %s", record["sweep_id"], record["model"])
        return _accepted(record)

    def replay(earlier: str) -> Response | None:
        """A retried POST (same key, same body): the sweep started the first time."""
        record = sweeps.load_record(st.redis, st.settings.rq_queue, earlier)
        return None if record is None else _accepted(record, replayed=True)

    return idempotency.once("sweep", payload, sweep_id, create, replay)


@api.route(
    bp, "GET", "/v1/sweeps/{sweep_id}", responses={200: SweepView}, errors=(404, 503),
    path_params={"sweep_id": web.ID}, summary="A sweep: trials, curves, best, promotion",
    tags=("sweeps",),
)  # fmt: skip
def get_sweep(sweep_id: str):
    return web.answer(_view(sweep_id))


@api.route(
    bp, "GET", "/v1/sweeps/{sweep_id}/report.png", errors=(404, 503),
    responses={200: Answer(
        "The sweep report: every trial's validation curve (pruned ones dashed, marked where they "
        "stopped; the best highlighted), the objective per trial, each parameter against the "
        "objective, the best trial's parameters",
        content={"image/png": {"type": "string", "format": "binary"}},
    )},
    path_params={"sweep_id": web.ID}, summary="The sweep report (PNG), drawn from the sweep now",
    tags=("sweeps",),
)  # fmt: skip
def sweep_report(sweep_id: str):
    from shared.reports import draw_sweep_report  # matplotlib: only for this route

    png = io.BytesIO()
    draw_sweep_report(_view(sweep_id).model_dump(mode="json"), png)
    disposition = f'inline; filename="sweep-{sweep_id}.png"'
    headers = {"Cache-Control": "no-cache", "Content-Disposition": disposition}
    return Response(png.getvalue(), mimetype="image/png", headers=headers)


@api.route(
    bp, "GET", "/v1/sweeps", query=ListSweepsQuery, responses={200: SweepList},
    errors=(422, 503), summary="Recent sweeps, newest first", tags=("sweeps",),
)  # fmt: skip
def list_sweeps():
    query = web.validated(ListSweepsQuery, request.args.to_dict(), "query")
    st = state()
    index = sweeps.sweeps_index_key(st.settings.rq_queue)
    ids = [i.decode() for i in st.redis.zrevrange(index, 0, query.limit - 1)]
    found = [
        SweepSummary(
            **{k: record[k] for k in ("sweep_id", "status", "model", "created_at", "ended_at")},
            n_trials=SweepPlan.of_record(record).n_trials,
            trials_started=sweeps.started_trials(record),
        )
        for record in sweeps.load_records(st.redis, st.settings.rq_queue, ids)
    ]
    return web.answer(SweepList(sweeps=found, count=len(found)))


@api.route(
    bp, "DELETE", "/v1/sweeps/{sweep_id}",
    responses={
        200: Answer("Canceled: the sweep, now `canceled`; its queued and running trials read "
                    "`canceled` (running ones once their worker has stopped them)",
                    content={"application/json": SweepView}),
        409: Answer("Nothing to cancel: the sweep already ended (`already finished`, "
                    "`already canceled`)", content={"application/json": ErrorBody}),
    },
    errors=(401, 404, 503),
    path_params={"sweep_id": web.ID},
    summary="Cancel a sweep: queued trials canceled, running ones stopped", tags=("sweeps",),
)  # fmt: skip
def delete_sweep(sweep_id: str):
    record = _record(sweep_id)
    if record["status"] != "running":
        raise ApiError(409, f"sweep {sweep_id} is already {record['status']}", sweep_id=sweep_id)
    st = state()
    try:
        sweeps.cancel(st.redis, st.settings, sweep_id)
    except LockError:
        raise ApiError(503, "could not take the sweep's lock; retry shortly") from None
    log.info("sweep %s canceled", sweep_id)
    return web.answer(_view(sweep_id))
