"""`/v1/sweeps`: start, inspect, list and cancel hyperparameter sweeps (trainer_service.sweeps.coordinator).

Reads are pure: a GET never moves a sweep on (the workers do, see trainer_service.sweeps.coordinator).

The sweep report (`GET /v1/sweeps/<id>/report.png`, shared.reports.draw_sweep_report) is drawn
on request from the same data as `GET /v1/sweeps/<id>`, and is not stored in the registry: a
version is immutable once published (its files are hashed into its manifest), and every trial,
the winner included, publishes at its own end, before the sweep knows it won. Adding a file to
the winner afterwards would break that promise, and a copy kept elsewhere could disagree with the
study it describes. The winner's manifest names its sweep (`sweep.sweep_id`), so the report is
one request away from the version; `digitflow sweep FILE --wait --report FILE.png` saves it.
The body is validated here, once (`SweepRequest`, the base TrainConfig included); the same
auth, Idempotency-Key and 4xx rules as `POST /v1/jobs` apply.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import LockError

from shared.web.errors import ApiError
from shared.web.openapi import Answer, ErrorBody
from shared.web.validation import json_object, validation_error
from trainer_service import queueing
from trainer_service.api import idempotency, web
from trainer_service.api.routes_jobs import IDEMPOTENCY_CONFLICT
from trainer_service.api.web import api, state
from trainer_service.sweeps import coordinator as sweeps
from trainer_service.sweeps.models import README_EXAMPLE, SweepPlan, SweepRequest

log = logging.getLogger(__name__)

bp = Blueprint("sweeps", __name__)

SWEEP_ID = {"type": "string", "pattern": queueing.JOB_ID_RE.pattern}
MAX_LIST_LIMIT = 500


class SweepAccepted(BaseModel):
    """The sweep started (or, for a replayed Idempotency-Key, the sweep started the first time)."""

    sweep_id: str
    status: sweeps.SweepStatus
    model: str
    location: str


class SweepTrial(BaseModel):
    """One trial: an ordinary training job (`job_id`) with sampled `params`."""

    number: int
    job_id: str
    params: dict[str, Any]
    status: sweeps.TrialStatus
    job_status: queueing.PublicStatus | Literal["expired"] = Field(
        description="its job's status (GET /v1/jobs/<job_id>); expired: the job's record is gone "
        "(RESULT_TTL, FAILURE_TTL)"
    )
    pruned: bool
    value: float | None = Field(description="the objective of the published weights")
    curve: list[dict[str, Any]] = Field(description="the objective after every epoch")
    model_version: int | None
    retry_of: int | None = Field(
        description="the trial this one retries: its job died (worker or work horse killed)"
    )
    retried_by: int | None = Field(description="the trial that retries this one")
    started_at: str | None
    ended_at: str | None


class SweepView(BaseModel):
    """A sweep: status, every trial, the best so far, the promotion verdict."""

    sweep_id: str
    status: sweeps.SweepStatus
    model: str
    objective: str
    n_trials: int
    parallelism: int
    sampler: str
    pruner: str
    created_at: str
    ended_at: str | None
    trials: list[SweepTrial]
    best: SweepTrial | None
    promotion: dict[str, Any] | None
    removed_versions: list[int]
    request: dict[str, Any]


class SweepSummary(BaseModel):
    sweep_id: str
    status: sweeps.SweepStatus
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


def _record(sweep_id: str) -> dict[str, Any]:
    if not queueing.JOB_ID_RE.match(sweep_id):
        raise ApiError(404, "no such sweep: sweep ids are 32 lowercase hex characters")
    st = state()
    record = sweeps.load_record(st.redis, st.settings.rq_queue, sweep_id)
    if record is None:
        raise ApiError(404, f"no such sweep: {sweep_id}")
    return record


def _accepted(record: dict[str, Any], *, replayed: bool = False):
    body = {k: record[k] for k in ("sweep_id", "status", "model")}
    location = url_for("sweeps.get_sweep", sweep_id=record["sweep_id"])
    return web.accepted(location, body, replayed=replayed)


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
    try:
        body = SweepRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, "sweep", code="invalid_sweep") from None
    st = state()
    sweep_id = uuid.uuid4().hex
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None:
        earlier = idempotency.claim(st.redis, st.settings, "sweep:", idem_key, payload, sweep_id)
        if earlier is not None:
            return _replay(earlier)
    try:
        record = _create(body, sweep_id)
    except BaseException:
        if idem_key is not None:
            idempotency.release(st.redis, st.settings, "sweep:", idem_key, sweep_id)
        raise
    log.info("sweep %s started for model %s", record["sweep_id"], record["model"])
    return _accepted(record)


def _create(body: SweepRequest, sweep_id: str) -> dict[str, Any]:
    st = state()
    try:
        return sweeps.create(st.redis, st.queue, st.settings, body, sweep_id)
    except LockError:
        raise ApiError(503, "could not take the sweep's lock; retry shortly") from None


def _replay(sweep_id: str):
    """A retried POST (same key, same body): the sweep started the first time."""
    st = state()
    sweep = sweeps.load_record(st.redis, st.settings.rq_queue, sweep_id)
    if sweep is None:
        raise ApiError(
            409,
            "the request with this Idempotency-Key is still being processed, "
            "or its sweep has expired; retry shortly or use a new key",
        )
    return _accepted(sweep, replayed=True)


@api.route(
    bp, "GET", "/v1/sweeps/{sweep_id}", responses={200: SweepView}, errors=(404, 503),
    path_params={"sweep_id": SWEEP_ID}, summary="A sweep: trials, curves, best, promotion",
    tags=("sweeps",),
)  # fmt: skip
def get_sweep(sweep_id: str):
    """A pure read: the workers move sweeps on (trainer_service.sweeps.coordinator)."""
    st = state()
    return jsonify(sweeps.view(st.redis, st.settings, _record(sweep_id)))


@api.route(
    bp, "GET", "/v1/sweeps/{sweep_id}/report.png", errors=(404, 503),
    responses={200: Answer(
        "The sweep report: every trial's validation curve (pruned ones dashed, marked where they "
        "stopped; the best highlighted), the objective per trial, each parameter against the "
        "objective, the best trial's parameters",
        content={"image/png": {"type": "string", "format": "binary"}},
    )},
    path_params={"sweep_id": SWEEP_ID}, summary="The sweep report (PNG), drawn from the sweep now",
    tags=("sweeps",),
)  # fmt: skip
def sweep_report(sweep_id: str):
    from shared.reports import draw_sweep_report  # matplotlib: only for this route

    st = state()
    view = sweeps.view(st.redis, st.settings, _record(sweep_id))
    png = io.BytesIO()
    draw_sweep_report(view, png)
    return Response(
        png.getvalue(),
        mimetype="image/png",
        headers={
            "Cache-Control": "no-cache",
            "Content-Disposition": f'inline; filename="sweep-{sweep_id}.png"',
        },
    )


@api.route(
    bp, "GET", "/v1/sweeps", query=ListSweepsQuery, responses={200: SweepList},
    errors=(422, 503), summary="Recent sweeps, newest first", tags=("sweeps",),
)  # fmt: skip
def list_sweeps():
    try:
        query = ListSweepsQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise validation_error(exc, "query") from None
    st = state()
    index = sweeps.sweeps_index_key(st.settings.rq_queue)
    ids = [i.decode() for i in st.redis.zrevrange(index, 0, query.limit - 1)]
    found = [
        {
            "sweep_id": record["sweep_id"],
            "status": record["status"],
            "model": record["model"],
            "created_at": record["created_at"],
            "ended_at": record["ended_at"],
            "n_trials": SweepPlan.of_record(record).n_trials,
            "trials_started": sweeps.started_trials(record),
        }
        for record in sweeps.load_records(st.redis, st.settings.rq_queue, ids)
    ]
    return jsonify({"sweeps": found, "count": len(found)})


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
    path_params={"sweep_id": SWEEP_ID},
    summary="Cancel a sweep: queued trials canceled, running ones stopped", tags=("sweeps",),
)  # fmt: skip
def delete_sweep(sweep_id: str):
    record = _record(sweep_id)
    if record["status"] != "running":
        raise ApiError(409, f"sweep {sweep_id} is already {record['status']}", sweep_id=sweep_id)
    st = state()
    try:
        sweeps.cancel(st.redis, st.queue, st.settings, sweep_id)
    except LockError:
        raise ApiError(503, "could not take the sweep's lock; retry shortly") from None
    log.info("sweep %s canceled", sweep_id)
    return jsonify(sweeps.view(st.redis, st.settings, _record(sweep_id)))
