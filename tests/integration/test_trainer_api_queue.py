"""Trainer API job routes against a real Redis (no worker): queueing, listing, idempotency,
per-model limits, cancel, abandoned-job cleanup and recovery after a Redis outage. What is
refused before Redis is touched is in tests/unit/test_trainer_api_jobs.py."""

from __future__ import annotations

import json
import time
import uuid
import zlib

import pytest
from rq.job import Job

from shared.redis_embedded import EmbeddedRedis, free_port
from tests.trainer_support import SMALL, delete_queue_keys, trainer_app
from trainer_service import queueing
from trainer_service.api.routes_jobs import JobAccepted, JobList, JobView


def make_app(redis_url: str, queue: str, tmp_path, **extra):
    config = {
        "REDIS_URL": redis_url,
        "RQ_QUEUE": queue,
        "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
        "API_TOKEN": "",
        "MAX_QUEUED_JOBS_PER_MODEL": 3,
        **extra,
    }
    app = trainer_app(config)
    app.testing = True
    return app


@pytest.fixture
def trainer_client(redis_url, queue, tmp_path):
    """The trainer app on the real Redis, on this test's own queue."""
    return make_app(redis_url, queue, tmp_path).test_client()


def submit(client, body=None, **headers):
    return client.post("/v1/jobs", json=SMALL if body is None else body, headers=headers)


# ---- submit -------------------------------------------------------------------------------------


def test_submit_queues_a_json_job_and_get_shows_it(trainer_client, redis_conn, queue):
    r = submit(trainer_client)
    assert r.status_code == 202, r.json
    job_id = r.json["job_id"]
    assert queueing.JOB_ID_RE.match(job_id)
    assert r.json["status"] == "queued" and r.json["model"] == "mnist"
    assert r.headers["Location"] == f"/v1/jobs/{job_id}"
    JobAccepted.model_validate(r.json)  # what the OpenAPI document promises

    g = trainer_client.get(r.headers["Location"])
    assert g.status_code == 200
    job = g.json
    JobView.model_validate(job)
    assert job["job_id"] == job_id and job["status"] == "queued"
    assert job["sweep_id"] is None and job["trial"] is None  # a plain job, no sweep's trial
    assert job["model"] == "mnist" and job["model_version"] is None
    assert job["progress"] is None and job["history"] == [] and job["error"] is None
    assert job["enqueued_at"].endswith("Z") and job["started_at"] is None
    assert job["position"] == 0
    assert job["config"]["hidden_layers"] == [32] and job["config"]["epochs"] == 2
    assert job["timeout"] == 7200  # JOB_TIMEOUT default: far above RQ's 180 s

    # What a worker will see: JSON args (no pickle), our job function, our TTLs.
    rq_job = Job.fetch(job_id, connection=redis_conn, serializer=queueing.SERIALIZER)
    assert rq_job.func_name == "trainer_service.worker.jobs.train_job"
    assert rq_job.args[0]["train_limit"] == 2000
    assert rq_job.origin == queue
    assert rq_job.result_ttl == 7 * 86400 and rq_job.failure_ttl == 30 * 86400
    assert json.loads(zlib.decompress(redis_conn.hget(rq_job.key, "data")))  # JSON, not a pickle


def test_preset_is_applied_and_explicit_fields_win(trainer_client):
    r = submit(trainer_client, {"preset": "seed-basic", "epochs": 3, "model": "digits"})
    assert r.status_code == 202
    job = trainer_client.get(r.headers["Location"]).json
    assert job["model"] == "digits"
    assert job["config"]["hidden_layers"] == [10] and job["config"]["optimizer"] == "sgd"
    assert job["config"]["epochs"] == 3


# ---- 404s ---------------------------------------------------------------------------------------


def test_unknown_and_foreign_jobs_are_404(
    trainer_client, redis_url, tmp_path, redis_conn, unique_name
):
    assert trainer_client.get(f"/v1/jobs/{uuid.uuid4().hex}").status_code == 404
    # A job on another queue is not ours...
    other_queue = unique_name + "x"
    try:
        other = make_app(redis_url, other_queue, tmp_path).test_client()
        foreign = submit(other).json["job_id"]
        assert trainer_client.get(f"/v1/jobs/{foreign}").status_code == 404
        assert trainer_client.delete(f"/v1/jobs/{foreign}").status_code == 404
        assert other.get(f"/v1/jobs/{foreign}").status_code == 200
    finally:
        delete_queue_keys(redis_url, other_queue)


def test_non_training_rq_jobs_on_our_queue_are_404(trainer_client, redis_conn, queue):
    q = queueing.make_queue(queue, redis_conn)
    job = q.enqueue("os.getcwd", job_id=uuid.uuid4().hex)
    try:
        assert trainer_client.get(f"/v1/jobs/{job.id}").status_code == 404
    finally:
        job.delete()


# ---- listing ------------------------------------------------------------------------------------


def test_list_is_newest_first_with_status_model_and_limit_filters(trainer_client):
    ids = [submit(trainer_client, {**SMALL, "seed": i}).json["job_id"] for i in range(3)]
    other = submit(trainer_client, {**SMALL, "model": "other"}).json["job_id"]
    trainer_client.delete(f"/v1/jobs/{ids[0]}")

    listed = trainer_client.get("/v1/jobs").json
    JobList.model_validate(listed)
    assert [j["job_id"] for j in listed["jobs"]] == [other, ids[2], ids[1], ids[0]]
    assert listed["count"] == 4
    assert "history" not in listed["jobs"][0]  # the listing is the summary view

    queued = trainer_client.get("/v1/jobs?status=queued").json["jobs"]
    assert [j["job_id"] for j in queued] == [other, ids[2], ids[1]]
    canceled = trainer_client.get("/v1/jobs?status=canceled,failed").json["jobs"]
    assert [j["job_id"] for j in canceled] == [ids[0]]
    assert trainer_client.get("/v1/jobs?status=finished").json["jobs"] == []
    assert [j["job_id"] for j in trainer_client.get("/v1/jobs?limit=2").json["jobs"]] == [
        other,
        ids[2],
    ]
    assert [j["job_id"] for j in trainer_client.get("/v1/jobs?model=other").json["jobs"]] == [other]


# ---- idempotency --------------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_job(trainer_client, redis_conn, queue):
    first = submit(trainer_client, **{"Idempotency-Key": "abc-123"})
    again = submit(trainer_client, **{"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 202
    assert again.json["job_id"] == first.json["job_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert queueing.make_queue(queue, redis_conn).count == 1
    # Remembered with a TTL, under a hashed key in this queue's namespace.
    key = queueing.idempotency_redis_key(queue, "abc-123")
    assert 0 < redis_conn.ttl(key) <= 86400

    # Same key, different body: refused, and nothing new is queued.
    clash = submit(trainer_client, {**SMALL, "epochs": 3}, **{"Idempotency-Key": "abc-123"})
    assert clash.status_code == 422 and "different request body" in clash.json["error"]["message"]
    # A different key is a different job.
    other = submit(trainer_client, **{"Idempotency-Key": "abc-124"})
    assert other.json["job_id"] != first.json["job_id"]
    assert queueing.make_queue(queue, redis_conn).count == 2


def test_rejected_submission_frees_its_idempotency_key(trainer_client, redis_conn, queue):
    for i in range(3):
        assert submit(trainer_client, {**SMALL, "seed": i}).status_code == 202
    over = submit(trainer_client, **{"Idempotency-Key": "k1"})
    assert over.status_code == 429
    assert redis_conn.get(queueing.idempotency_redis_key(queue, "k1")) is None


# ---- per-model limit ----------------------------------------------------------------------------


def test_queued_jobs_per_model_are_limited(trainer_client):
    ids = [submit(trainer_client, {**SMALL, "seed": i}).json["job_id"] for i in range(3)]
    r = submit(trainer_client)
    assert r.status_code == 429
    assert (
        r.json["error"]["limit"] == 3 and "MAX_QUEUED_JOBS_PER_MODEL" in r.json["error"]["message"]
    )
    assert submit(trainer_client, {**SMALL, "model": "other"}).status_code == 202  # per model
    assert trainer_client.delete(f"/v1/jobs/{ids[0]}").status_code == 200
    assert submit(trainer_client).status_code == 202


# ---- cancel / stop ------------------------------------------------------------------------------


def test_cancel_a_queued_job(trainer_client, redis_conn, queue):
    job_id = submit(trainer_client).json["job_id"]
    r = trainer_client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json["status"] == "canceled"
    job = trainer_client.get(f"/v1/jobs/{job_id}").json
    assert job["status"] == "canceled" and "nothing was published" in job["error"]
    assert queueing.make_queue(queue, redis_conn).count == 0
    again = trainer_client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409 and "already canceled" in again.json["error"]["message"]
    assert trainer_client.delete(f"/v1/jobs/{uuid.uuid4().hex}").status_code == 404


def test_stopping_a_job_whose_worker_is_gone_is_a_clear_409(trainer_client, redis_conn):
    job_id = submit(trainer_client).json["job_id"]
    # As if a worker had picked it up and then vanished without a trace.
    redis_conn.hset(f"rq:job:{job_id}", mapping={"status": "started", "worker_name": "ghost"})
    r = trainer_client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 409 and "not reachable" in r.json["error"]["message"]


def test_a_publishing_job_can_no_longer_be_stopped(trainer_client, redis_conn):
    job_id = submit(trainer_client).json["job_id"]
    job = Job.fetch(job_id, connection=redis_conn, serializer=queueing.SERIALIZER)
    job.meta["phase"] = "publishing"
    job.save_meta()
    redis_conn.hset(job.key, mapping={"status": "started", "worker_name": "busy"})
    r = trainer_client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 409 and "too late" in r.json["error"]["message"]


def test_abandoned_started_job_is_failed_on_read(trainer_client, redis_conn, queue):
    """A job whose execution heartbeat expired (its worker was SIGKILLed) reads as failed."""
    job_id = submit(trainer_client).json["job_id"]
    q = queueing.make_queue(queue, redis_conn)
    q.remove(job_id)
    redis_conn.hset(f"rq:job:{job_id}", mapping={"status": "started", "worker_name": "dead"})
    redis_conn.zadd(f"rq:wip:{queue}", {f"{job_id}:{uuid.uuid4().hex}": time.time() - 5})

    job = trainer_client.get(f"/v1/jobs/{job_id}").json
    assert job["status"] == "failed"
    assert "worker" in job["error"] and "died" in job["error"]
    assert "nothing was published" in job["error"]
    assert redis_conn.zcard(f"rq:wip:{queue}") == 0
    assert [j["job_id"] for j in trainer_client.get("/v1/jobs?status=failed").json["jobs"]] == [
        job_id
    ]


# ---- health and Redis outages -------------------------------------------------------------------


def test_healthz_and_readyz(trainer_client, queue):
    assert trainer_client.get("/healthz").json == {"status": "ok"}
    ready = trainer_client.get("/readyz")
    assert ready.status_code == 200 and ready.json["queue"] == queue
    assert ready.json["workers"] == 0  # nobody listens on this test's queue


def test_redis_down_is_503_and_recovers_by_itself(tmp_path, unique_name):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    client = make_app(url, unique_name, tmp_path).test_client()
    job_id = uuid.uuid4().hex
    assert client.post("/v1/jobs", json=SMALL).status_code == 503
    assert client.get(f"/v1/jobs/{job_id}").status_code == 503
    assert client.get("/readyz").status_code == 503

    with EmbeddedRedis(port=port, data_dir=tmp_path / "redis"):
        r = client.post("/v1/jobs", json=SMALL)
        assert r.status_code == 202, r.json
        assert client.get(r.headers["Location"]).json["status"] == "queued"
        assert client.get("/readyz").status_code == 200
