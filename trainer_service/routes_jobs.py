"""`/v1/jobs`: submit, inspect, list and cancel/stop training jobs on the RQ queue."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from pydantic import ValidationError
from redis.exceptions import LockError
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from shared.config import TrainConfig
from shared.registry import RegistryError
from trainer_service import queueing
from trainer_service.web import ApiError, state

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__)

MAX_LIST_LIMIT = 500
JOBS_INDEX_MAX = 10_000
IDEMPOTENCY_KEY_MAX = 255


# --------------------------------------------------------------------------- helpers


def json_object_body() -> dict[str, Any]:
    """The request body as a JSON object, or the right 4xx: 415 not JSON, 400 malformed, 422 not an object."""
    if not request.is_json:
        raise ApiError(
            415,
            "request body must be JSON: send 'Content-Type: application/json'",
            content_type=request.mimetype or None,
        )
    payload = request.get_json(silent=True)
    if payload is None:
        raise ApiError(400, "request body is not valid JSON")
    if not isinstance(payload, dict):
        raise ApiError(422, "request body must be a JSON object")
    return payload


def validation_error(exc: ValidationError, what: str) -> ApiError:
    """422 naming every bad field (pydantic's location), with a readable message for each."""
    fields = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(body)"
        message = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        fields.append({"field": loc, "message": message, "type": err.get("type")})
    names = sorted({f["field"].split(".")[0] for f in fields})
    return ApiError(
        422,
        f"invalid {what}: " + ", ".join(names),
        code="invalid_config",
        fields=fields,
        invalid_fields=names,
    )


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cleanup_abandoned() -> None:
    """Move jobs whose worker died (heartbeat expired) from started to failed, right now.

    RQ's workers only do this in their periodic maintenance (every 10 minutes); doing it on every
    read makes a SIGKILLed worker's job show `failed` within seconds of its heartbeat expiring.
    """
    StartedJobRegistry(queue=state().queue).cleanup()


def check_job_id(job_id: str) -> str:
    """404 for a malformed id before Redis is touched (and never echo arbitrary text back)."""
    if not queueing.JOB_ID_RE.match(job_id):
        raise ApiError(404, "no such job: job ids are 32 lowercase hex characters")
    return job_id


def fetch_job(job_id: str) -> Job:
    """Our job by id, or 404 (malformed id, unknown id, another queue's job, not a training job)."""
    check_job_id(job_id)
    st = state()
    try:
        job = Job.fetch(job_id, connection=st.redis, serializer=queueing.SERIALIZER)
    except NoSuchJobError:
        raise ApiError(404, f"no such job: {job_id}") from None
    if job.origin != st.queue.name or job.func_name != queueing.JOB_FUNC:
        raise ApiError(404, f"no such job: {job_id}")
    return job


def job_view(job: Job, *, detail: bool = True) -> dict[str, Any]:
    """The public JSON of a job (what `GET /v1/jobs/<id>` returns)."""
    settings = state().settings
    meta = job.meta or {}
    status = queueing.public_status(job)
    view: dict[str, Any] = {
        "job_id": job.id,
        "status": status,
        "model": meta.get("model"),
        "model_version": meta.get("model_version"),
        "phase": meta.get("phase") if status == "started" else None,
        "progress": meta.get("progress"),
        "error": None,
        "enqueued_at": iso(job.enqueued_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
        "worker": job.worker_name or None,
        "retries": job.number_of_retries or 0,
    }
    if status == "queued":
        view["position"] = job.get_position()
    if status in ("failed", "stopped"):
        result = job.latest_result()
        exc_string = result.exc_string if result is not None else None
        if status == "stopped":
            view["error"] = "stopped on request; nothing was published"
        else:
            view["error"] = meta.get("error") or queueing.describe_failure(
                exc_string, timeout=job.timeout
            )
            published = None
            if meta.get("phase") in ("publishing", "published") and not view["model_version"]:
                published = published_by(job.id, view["model"])
            if published is not None:  # it died between its publish and recording it
                view["model_version"] = published
                view["error"] = (
                    f"the job published version {published} but its outcome could not be "
                    f"recorded ({view['error']})"
                )
        if view["ended_at"] is None and result is not None:
            view["ended_at"] = iso(result.created_at)
    elif status == "canceled":
        view["error"] = "canceled before it started; nothing was published"
    if status == "finished":
        result = job.return_value()
        if isinstance(result, dict):
            view["model_version"] = result.get("model_version", view["model_version"])
            view["test_accuracy"] = result.get("test_accuracy")
    if detail:
        view["history"] = meta.get("history", [])
        view["config"] = job.args[0] if job.args else None
        view["timeout"] = job.timeout or settings.job_timeout
    return view


def published_by(job_id: str, model: str | None) -> int | None:
    """The version whose manifest names this job, if any: the truth for a job that got as far as
    publishing and then lost its worker or Redis before it could record the outcome."""
    if not model:
        return None
    try:
        for entry in reversed(state().registry.describe_versions(model)):
            if (entry["manifest"] or {}).get("job_id") == job_id:
                return entry["version"]
    except (RegistryError, OSError):
        return None
    return None


def count_queued(model: str) -> int:
    """Jobs still waiting in the queue that will publish under `model`."""
    st = state()
    ids = st.queue.get_job_ids()
    if not ids:
        return 0
    jobs = Job.fetch_many(ids, connection=st.redis, serializer=queueing.SERIALIZER)
    return sum(1 for job in jobs if job is not None and (job.meta or {}).get("model") == model)


def body_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_idempotency_key(key: str) -> str:
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise ApiError(
            400, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters"
        )
    return key


def accepted(job_id: str, status: str, model: str, *, replayed: bool = False):
    location = url_for("jobs.get_job", job_id=job_id)
    body = {"job_id": job_id, "status": status, "model": model, "location": location}
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = location
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


# --------------------------------------------------------------------------- routes


@bp.post("/v1/jobs")
def submit_job():
    payload = json_object_body()
    try:
        config = TrainConfig.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, "training config") from None
    st = state()
    settings = st.settings
    model = config.model_name
    job_id = uuid.uuid4().hex

    idem_key = request.headers.get("Idempotency-Key")
    redis_key = None
    if idem_key is not None:
        redis_key = queueing.idempotency_redis_key(settings.queue, check_idempotency_key(idem_key))
        digest = body_digest(payload)
        record = json.dumps({"job_id": job_id, "body": digest})
        if not st.redis.set(redis_key, record, nx=True, ex=settings.idempotency_ttl):
            return replay(redis_key, digest)

    try:
        job = enqueue(config, job_id, model)
    except BaseException:
        if redis_key is not None:
            # Forget the key only if it is still ours, so a retry can try again.
            raw = st.redis.get(redis_key)
            if raw and json.loads(raw).get("job_id") == job_id:
                st.redis.delete(redis_key)
        raise
    log.info("job %s queued for model %s", job.id, model)
    return accepted(job.id, "queued", model)


def replay(redis_key: str, digest: str):
    """A retried POST: same key + same body → the job created the first time."""
    st = state()
    raw = st.redis.get(redis_key)
    if raw is None:  # expired between SET NX and GET: vanishingly rare, ask to retry
        raise ApiError(409, "Idempotency-Key record expired while reading it; retry the request")
    record = json.loads(raw)
    if record.get("body") != digest:
        raise ApiError(422, "this Idempotency-Key was already used with a different request body")
    try:
        job = Job.fetch(record["job_id"], connection=st.redis, serializer=queueing.SERIALIZER)
    except NoSuchJobError:
        raise ApiError(
            409,
            "the request with this Idempotency-Key is still being processed, "
            "or its job has expired; retry shortly or use a new key",
        ) from None
    return accepted(
        job.id, queueing.public_status(job), (job.meta or {}).get("model", ""), replayed=True
    )


def enqueue(config: TrainConfig, job_id: str, model: str) -> Job:
    """Enqueue under a per-model lock so the queued-jobs limit holds under concurrent POSTs."""
    st = state()
    settings = st.settings
    lock = st.redis.lock(
        queueing.submit_lock_key(settings.queue, model), timeout=10, blocking_timeout=5
    )
    try:
        with lock:
            limit = settings.max_queued_jobs_per_model
            if limit > 0 and count_queued(model) >= limit:
                raise ApiError(
                    429,
                    f"too many queued jobs for model {model!r} (limit {limit}, "
                    "MAX_QUEUED_JOBS_PER_MODEL); wait for some to start or cancel them",
                    model=model,
                    limit=limit,
                )
            job = st.queue.enqueue(
                queueing.JOB_FUNC,
                config.public_dict(),
                job_id=job_id,
                job_timeout=settings.job_timeout,
                result_ttl=settings.result_ttl,
                failure_ttl=settings.failure_ttl,
                description=f"train {model}",
                meta={"model": model, "phase": "queued", "progress": None, "history": []},
            )
            index = queueing.jobs_index_key(settings.queue)
            with st.redis.pipeline() as pipe:
                pipe.zadd(index, {job.id: time.time()})
                pipe.zremrangebyrank(index, 0, -(JOBS_INDEX_MAX + 1))
                pipe.execute()
            return job
    except LockError:
        raise ApiError(503, "could not take the submission lock; retry shortly") from None


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str):
    check_job_id(job_id)
    cleanup_abandoned()
    return jsonify(job_view(fetch_job(job_id)))


@bp.get("/v1/jobs")
def list_jobs():
    raw_status = request.args.get("status", "").strip()
    wanted = {s.strip() for s in raw_status.split(",") if s.strip()}
    unknown = sorted(wanted - set(queueing.PUBLIC_STATUSES))
    if unknown:
        raise ApiError(
            422,
            f"unknown status {', '.join(unknown)}; use one of {', '.join(queueing.PUBLIC_STATUSES)}",
            invalid_fields=["status"],
        )
    raw_limit = request.args.get("limit", "50")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ApiError(
            422, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}", invalid_fields=["limit"]
        )
    model = request.args.get("model") or None

    cleanup_abandoned()
    st = state()
    index = queueing.jobs_index_key(st.settings.queue)
    found: list[dict[str, Any]] = []
    start, page = 0, 100
    while len(found) < limit and start < JOBS_INDEX_MAX:
        ids = [i.decode() for i in st.redis.zrevrange(index, start, start + page - 1)]
        if not ids:
            break
        start += page
        jobs = Job.fetch_many(ids, connection=st.redis, serializer=queueing.SERIALIZER)
        gone = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if gone:  # expired by their TTL: drop them from the index
            st.redis.zrem(index, *gone)
            start -= len(gone)
        for job in jobs:
            if job is None:
                continue
            view = job_view(job, detail=False)
            if wanted and view["status"] not in wanted:
                continue
            if model and view["model"] != model:
                continue
            found.append(view)
            if len(found) >= limit:
                break
    return jsonify({"jobs": found, "count": len(found)})


@bp.delete("/v1/jobs/<job_id>")
def delete_job(job_id: str):
    """Cancel a queued job, or stop a running one (its work horse is killed; nothing is published)."""
    check_job_id(job_id)
    cleanup_abandoned()
    job = fetch_job(job_id)
    st = state()
    status = queueing.public_status(job)
    if status == "queued":
        # Flag first: if a worker dequeues it in the same instant, the job sees the flag and quits.
        job.meta["cancel_requested"] = True
        job.save_meta()
        with contextlib.suppress(InvalidJobOperation):  # a concurrent DELETE got there first
            job.cancel()
        job.get_status(refresh=True)
        log.info("job %s canceled", job.id)
        return jsonify(job_view(job))
    if status == "started":
        if (job.meta or {}).get("phase") in ("publishing", "published"):
            # Stopping now could leave a published version behind a "stopped" job.
            raise ApiError(
                409, "too late to stop: the job is publishing its model version", job_id=job.id
            )
        worker = job.worker_name
        receivers = 0
        if worker:
            # rq.command.send_stop_job_command, but we keep PUBLISH's receiver count.
            payload = json.dumps({"command": "stop-job", "job_id": job.id})
            receivers = st.redis.publish(PUBSUB_CHANNEL_TEMPLATE % worker, payload)
        if not receivers:
            raise ApiError(
                409,
                "the worker running this job is not reachable; if it died, the job is marked "
                "failed as soon as its heartbeat expires",
                job_id=job.id,
            )
        log.info("stop requested for job %s on worker %s", job.id, worker)
        view = job_view(job)
        view["status"] = "stopping"
        response = jsonify(view)
        response.status_code = 202
        response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
        return response
    raise ApiError(409, f"job {job.id} is already {status}; nothing to cancel", job_id=job.id)
