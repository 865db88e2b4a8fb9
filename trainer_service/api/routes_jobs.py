"""`/v1/jobs`: submit, inspect, list and cancel/stop training jobs on the RQ queue.

A job body is validated here, once (`TrainConfig`, every rule, cross-field ones included); the
worker's job function trusts what it is given.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Literal

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import LockError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from shared.config import TrainConfig
from shared.registry import RegistryError
from shared.web.errors import ApiError
from shared.web.openapi import Answer, ErrorBody
from shared.web.validation import json_object
from trainer_service import queueing
from trainer_service.api import idempotency, web
from trainer_service.api.web import api, state
from trainer_service.sweeps import coordinator as sweeps

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__)

MAX_LIST_LIMIT = 500
_STATUS_LIST = "|".join(queueing.PUBLIC_STATUSES)


class JobAccepted(BaseModel):
    """The job is queued (or, for a replayed Idempotency-Key, the job created the first time)."""

    job_id: str
    status: queueing.PublicStatus = Field(
        description="queued; a replayed POST: the job's status now"
    )
    model: str
    location: str


class JobProgress(BaseModel):
    """The last finished epoch."""

    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    seconds: float | None = None


class JobSummary(BaseModel):
    """A job as listed: `position` only while queued, `test_accuracy` once finished."""

    job_id: str
    status: queueing.PublicStatus
    sweep_id: str | None = Field(description="the sweep this job is a trial of; null: a plain job")
    trial: int | None = Field(description="its trial number in that sweep")
    model: str | None
    model_version: int | None
    phase: str | None
    progress: JobProgress | None
    error: str | None
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None
    worker: str | None
    retries: int
    position: int | None = None
    test_accuracy: float | None = None


class JobView(JobSummary):
    """A job with its per-epoch history and its (validated) training config."""

    history: list[dict[str, Any]]
    config: dict[str, Any] | None
    timeout: int


class JobStopping(JobView):
    """Stop requested: the worker kills the job's work horse; the job then reads `stopped`."""

    status: Literal["stopping"]  # type: ignore[assignment]


class JobList(BaseModel):
    """Recent jobs, newest first."""

    jobs: list[JobSummary]
    count: int


class ListJobsQuery(BaseModel):
    """Filters of `GET /v1/jobs`."""

    model_config = ConfigDict(extra="ignore")

    status: str | None = Field(
        default=None,
        description="comma-separated statuses to keep",
        pattern=rf"^\s*({_STATUS_LIST})?\s*(,\s*({_STATUS_LIST})?\s*)*$",
    )
    model: str | None = Field(default=None, description="only jobs publishing under this model")
    limit: int = Field(default=50, ge=1, le=MAX_LIST_LIMIT)

    @field_validator("status", mode="before")
    @classmethod
    def _known_statuses(cls, value: Any) -> Any:
        """The readable message for an unknown status (the pattern says the same for the schema)."""
        if isinstance(value, str):
            unknown = sorted(_split(value) - set(queueing.PUBLIC_STATUSES))
            if unknown:
                raise ValueError(
                    f"unknown status {', '.join(unknown)}; "
                    f"use one of {', '.join(queueing.PUBLIC_STATUSES)}"
                )
        return value

    def statuses(self) -> set[str]:
        return _split(self.status or "")


def _split(statuses: str) -> set[str]:
    return {s.strip() for s in statuses.split(",") if s.strip()}


def training_config(payload: dict[str, Any]) -> TrainConfig:
    """The body as a TrainConfig, or 422 naming every bad field. A validator that raises a
    TypeError instead of reporting (a bug in TrainConfig: e.g. a list used as a dict key) is
    logged as the bug it is, and the client still gets a 422 naming the fields, never a 500."""
    try:
        return web.validated(TrainConfig, payload, "training config", code="invalid_config")
    except TypeError as exc:
        log.error("TrainConfig raised instead of reporting a validation error", exc_info=exc)
        bad = sorted(k for k, v in payload.items() if _raises_type_error({k: v})) or ["(body)"]
        raise ApiError(
            422,
            f"invalid training config: {', '.join(bad)}: value of the wrong type",
            code="invalid_config",
            field=bad[0],
            fields=[
                {"field": f, "message": "value of the wrong type", "type": "type_error"}
                for f in bad
            ],
            invalid_fields=bad,
        ) from None


def _raises_type_error(partial: dict[str, Any]) -> bool:
    try:
        with contextlib.suppress(ValidationError):
            TrainConfig.model_validate(partial)
    except TypeError:
        return True
    return False


def cleanup_abandoned() -> None:
    """Move jobs whose worker died (heartbeat expired) from started to failed, right now: RQ's
    workers only do it every 10 minutes; on every read a SIGKILLed worker's job shows `failed`
    within seconds of its heartbeat expiring."""
    StartedJobRegistry(queue=state().queue).cleanup()


def fetch_job(job_id: str) -> Job:
    """Our job by id, after `cleanup_abandoned`, or 404 (malformed id, unknown id, another
    queue's job, not a training job)."""
    web.check_id(job_id, "job")
    cleanup_abandoned()
    st = state()
    try:
        job = Job.fetch(job_id, connection=st.redis, serializer=queueing.SERIALIZER)
    except NoSuchJobError:
        raise ApiError(404, f"no such job: {job_id}") from None
    if job.origin != st.queue.name or job.func_name != queueing.JOB_FUNC:
        raise ApiError(404, f"no such job: {job_id}")
    return job


def job_view(job: Job, *, detail: bool = True) -> JobSummary:
    """A job as the API shows it (`JobView` with `detail`, else the listing's `JobSummary`). A
    sweep's trial names its sweep and trial number, and reads `canceled` once its sweep's cancel
    ended it. Answer it with `web.answer` (fields that do not apply, like `position` of a job that
    is not queued, are left out)."""
    st = state()
    meta = job.meta or {}
    sweep = queueing.sweep_of(job) or {}
    ended = queueing.public_status(job)  # what RQ saw; `status` below is what it means
    status = ended
    canceled = sweep and ended in ("stopped", "failed")
    if canceled and sweeps.canceled_with_sweep(st.redis, st.settings.rq_queue, job):
        status = "canceled"
    model = meta.get("model")
    model_version = meta.get("model_version")
    error = None
    ended_at = queueing.iso(job.ended_at)
    extra: dict[str, Any] = {}
    if status == "queued":
        extra["position"] = job.get_position()
    if ended in ("failed", "stopped"):
        result = job.latest_result()
        if ended == "stopped":
            error = "stopped on request; nothing was published"
        else:
            exc_string = result.exc_string if result is not None else None
            error = meta.get("error") or queueing.describe_failure(exc_string, timeout=job.timeout)
        if ended_at is None and result is not None:
            ended_at = queueing.iso(result.created_at)
    if status == "canceled":
        error = (
            f"canceled with its sweep {sweep['sweep_id']}; nothing was published"
            if sweep
            else "canceled before it started; nothing was published"
        )
    elif status == "pruned":
        error = (
            f"trial {sweep.get('trial')} of sweep {sweep.get('sweep_id')} "
            f"{meta.get('error') or 'pruned'}; nothing was published"
        )
    publishing = meta.get("phase") in ("publishing", "published")
    if ended in ("failed", "stopped") and not model_version and publishing:
        published = published_by(job.id, model)
        if published is not None:  # it died between its publish and recording it
            model_version = published
            error = (
                f"the job published version {published} but its outcome could not be "
                f"recorded ({error})"
            )
    if status == "finished":
        result = job.return_value()
        if isinstance(result, dict):
            model_version = result.get("model_version", model_version)
            extra["test_accuracy"] = result.get("test_accuracy")
    if detail:
        extra["history"] = meta.get("history", [])
        extra["config"] = job.args[0] if job.args else None
        extra["timeout"] = job.timeout or st.settings.job_timeout
    return (JobView if detail else JobSummary)(
        job_id=job.id,
        status=status,
        sweep_id=sweep.get("sweep_id"),
        trial=sweep.get("trial"),
        model=model,
        model_version=model_version,
        phase=meta.get("phase") if status == "started" else None,
        progress=meta.get("progress"),
        error=error,
        enqueued_at=queueing.iso(job.enqueued_at),
        started_at=queueing.iso(job.started_at),
        ended_at=ended_at,
        worker=job.worker_name or None,
        retries=job.number_of_retries or 0,
        **extra,
    )


def published_by(job_id: str, model: str | None) -> int | None:
    """The version whose manifest names this job, if any: the truth for a job that got as far as
    publishing and then lost its worker or Redis before it could record the outcome."""
    if not model:
        return None
    with contextlib.suppress(RegistryError, OSError):
        for entry in reversed(state().registry.describe_versions(model)):
            if (entry["manifest"] or {}).get("job_id") == job_id:
                return entry["version"]
    return None


def count_queued(model: str) -> int:
    """Jobs still waiting in the queue that will publish under `model`."""
    st = state()
    jobs = Job.fetch_many(
        st.queue.get_job_ids(), connection=st.redis, serializer=queueing.SERIALIZER
    )
    return sum(1 for job in jobs if job is not None and (job.meta or {}).get("model") == model)


def accepted(job_id: str, status: str, model: str, *, replayed: bool = False) -> Response:
    location = url_for("jobs.get_job", job_id=job_id)
    body = JobAccepted(job_id=job_id, status=status, model=model, location=location)
    return web.accepted(body, location, replayed=replayed)


#: The conflict of a retried POST whose first request is still being processed (or expired).
IDEMPOTENCY_CONFLICT = Answer(
    "The request with this Idempotency-Key is still being processed, or what it created has "
    "expired: retry shortly or use a new key",
    content={"application/json": ErrorBody},
)


@api.route(
    bp, "POST", "/v1/jobs", body=TrainConfig,
    responses={202: JobAccepted, 409: IDEMPOTENCY_CONFLICT},
    errors=(400, 401, 413, 415, 422, 429, 503), summary="Queue a training job", tags=("jobs",),
    description="The body is a TrainConfig; a preset fills in what the body does not set. An "
    "Idempotency-Key header makes a retried POST return the job created the first time.",
    examples={"application/json": {
        "quick": {"dataset": "mnist", "epochs": 3},
        "preset": {"model": "digits", "preset": "seed-deep", "epochs": 5, "augment": True},
        "custom": {"hidden_layers": [256, 128], "optimizer": "adam", "learning_rate": 0.001,
                   "dropout": 0.2, "batch_size": 128, "epochs": 10, "seed": 1},
    }},
)  # fmt: skip
def submit_job():
    payload = json_object(request.get_data(), request.mimetype)
    config = training_config(payload)
    job_id = uuid.uuid4().hex
    return idempotency.once("job", payload, job_id, lambda: enqueue(config, job_id), replay)


def replay(job_id: str) -> Response | None:
    """A retried POST (same key, same body): the job created the first time."""
    try:
        job = Job.fetch(job_id, connection=state().redis, serializer=queueing.SERIALIZER)
    except NoSuchJobError:
        return None
    return accepted(
        job.id, queueing.public_status(job), (job.meta or {}).get("model", ""), replayed=True
    )


def enqueue(config: TrainConfig, job_id: str) -> Response:
    """Enqueue under a per-model lock so the queued-jobs limit holds under concurrent POSTs."""
    st = state()
    model = config.model_name
    limit = st.settings.max_queued_jobs_per_model
    lock_key = queueing.submit_lock_key(st.settings.rq_queue, model)
    try:
        with st.redis.lock(lock_key, timeout=10, blocking_timeout=5):
            if limit > 0 and count_queued(model) >= limit:
                raise ApiError(
                    429,
                    f"too many queued jobs for model {model!r} (limit {limit}, "
                    "MAX_QUEUED_JOBS_PER_MODEL); wait for some to start or cancel them",
                    model=model,
                    limit=limit,
                )
            queueing.enqueue(
                st.queue, st.settings, config.public_dict(), model, job_id, f"train {model}"
            )
    except LockError:
        raise ApiError(503, "could not take the submission lock; retry shortly") from None
    log.info("job %s queued for model %s", job_id, model)
    return accepted(job_id, "queued", model)


@api.route(
    bp, "GET", "/v1/jobs/{job_id}", responses={200: JobView}, errors=(404, 503),
    path_params={"job_id": web.ID}, summary="A job: status, progress, history, outcome",
    tags=("jobs",),
)  # fmt: skip
def get_job(job_id: str):
    return web.answer(job_view(fetch_job(job_id)))


@api.route(
    bp, "GET", "/v1/jobs", query=ListJobsQuery, responses={200: JobList}, errors=(422, 503),
    summary="Recent jobs, newest first", tags=("jobs",),
)  # fmt: skip
def list_jobs():
    query = web.validated(ListJobsQuery, request.args.to_dict(), "query")
    wanted, model, limit = query.statuses(), query.model, query.limit

    cleanup_abandoned()
    st = state()
    index = queueing.jobs_index_key(st.settings.rq_queue)
    found: list[JobSummary] = []
    start, page = 0, 100
    while len(found) < limit and start < queueing.INDEX_MAX:
        ids = [i.decode() for i in st.redis.zrevrange(index, start, start + page - 1)]
        if not ids:
            break
        start += page
        jobs = Job.fetch_many(ids, connection=st.redis, serializer=queueing.SERIALIZER)
        gone = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if gone:  # expired by their TTL: drop them from the index
            st.redis.zrem(index, *gone)
            start -= len(gone)
        for job in (job for job in jobs if job is not None):
            view = job_view(job, detail=False)
            if (not wanted or view.status in wanted) and (not model or view.model == model):
                found.append(view)
                if len(found) >= limit:
                    break
    return web.answer(JobList(jobs=found, count=len(found)))


@api.route(
    bp, "DELETE", "/v1/jobs/{job_id}",
    responses={
        200: Answer("Canceled: the job was queued and now reads `canceled`; it never runs",
                    content={"application/json": JobView}),
        202: Answer("Stop requested: the job was running; its worker kills it, nothing is "
                    "published, and it reads `stopped` soon after",
                    content={"application/json": JobStopping},
                    headers={"Location": "the job, to follow until it reads stopped"}),
        409: Answer("Nothing to cancel or stop: the job already ended (`already <status>`), it "
                    "is publishing its model version (too late to stop), or the worker running "
                    "it is not reachable (it reads failed once its heartbeat expires)",
                    content={"application/json": ErrorBody}),
    },
    errors=(401, 404, 503),
    path_params={"job_id": web.ID}, summary="Cancel a queued job (200) or stop a running one (202)",
    tags=("jobs",),
)  # fmt: skip
def delete_job(job_id: str):
    """Cancel a queued job, or stop a running one (its work horse is killed; nothing published)."""
    job = fetch_job(job_id)
    status = queueing.public_status(job)
    if status == "queued":
        queueing.cancel_queued(job, state().settings.failure_ttl)
        job.get_status(refresh=True)
        log.info("job %s canceled", job.id)
        return web.answer(job_view(job))
    if status == "started":
        if (job.meta or {}).get("phase") in ("publishing", "published"):
            # Stopping now could leave a published version behind a "stopped" job.
            raise ApiError(
                409, "too late to stop: the job is publishing its model version", job_id=job.id
            )
        if not queueing.send_stop(state().redis, job):
            raise ApiError(
                409,
                "the worker running this job is not reachable; if it died, the job is marked "
                "failed as soon as its heartbeat expires",
                job_id=job.id,
            )
        log.info("stop requested for job %s on worker %s", job.id, job.worker_name)
        view = job_view(job)
        stopping = JobStopping(**{**view.model_dump(exclude_unset=True), "status": "stopping"})
        response = web.answer(stopping, 202)
        response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
        return response
    ended = job_view(job, detail=False).status  # a canceled sweep's stopped trial: canceled
    raise ApiError(409, f"job {job.id} is already {ended}; nothing to cancel", job_id=job.id)
