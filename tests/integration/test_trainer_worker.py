"""The trainer API with a REAL RQ worker process (`python -m trainer_service worker`), a real Redis
and a temporary registry: jobs run, report per-epoch progress, publish; cancel, stop, timeouts,
a SIGKILLed worker and transient-error retries all end in the documented state."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import numpy as np
import pytest
import redis
from PIL import Image
from rq.job import Job
from rq.registry import StartedJobRegistry

from shared.datasets import load_dataset
from shared.modelfile import load_model
from shared.registry import Registry
from shared.reports import FIGURE_PIXELS, REPORT_FILES
from tests.trainer_support import (
    LONG,
    SMALL,
    horse_pids,
    pid_alive,
    wait_for,
)
from trainer_service import queueing
from trainer_service.api.routes_jobs import JobStopping
from trainer_service.sweeps import coordinator as sweeps
from trainer_service.worker.retention import apply_retention

pytestmark = [pytest.mark.slow]


# ---- the happy path -----------------------------------------------------------------------------


def test_small_job_runs_reports_progress_and_publishes_version_1(trainer_stack, mnist_dir):
    trainer_stack.start_worker()
    assert trainer_stack.client.get("/readyz").json["workers"] == 1
    job_id = trainer_stack.submit(SMALL)
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = trainer_stack.job(job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] not in ("queued", "started"):
            break
        time.sleep(0.02)
    assert job["status"] == "finished", (job, trainer_stack.logs())
    assert seen[-2:] == ["started", "finished"] and set(seen) <= {"queued", "started", "finished"}

    assert job["model"] == "mnist" and job["model_version"] == 1
    assert job["error"] is None and job["retries"] == 0
    assert job["started_at"] and job["ended_at"] and job["enqueued_at"] <= job["started_at"]
    assert job["progress"]["epoch"] == 2 and job["progress"]["epochs"] == 2
    assert [h["epoch"] for h in job["history"]] == [1, 2]
    for record in job["history"]:
        assert {"train_loss", "val_accuracy", "learning_rate", "seconds"} <= set(record)
    assert 0.3 < job["test_accuracy"] <= 1.0

    # The published version and its manifest are complete.
    assert trainer_stack.versions() == [1]
    manifest = trainer_stack.registry.verify("mnist", 1)
    assert manifest["job_id"] == job_id
    assert manifest["config"]["hidden_layers"] == [32] and manifest["config"]["train_limit"] == 2000
    metrics = manifest["metrics"]
    assert metrics["test_accuracy"] == pytest.approx(job["test_accuracy"])
    assert metrics["n_test"] == 10000
    assert len(metrics["per_class"]) == 10
    assert np.asarray(metrics["confusion_matrix"]).shape == (10, 10)
    assert np.asarray(metrics["confusion_matrix"]).sum() == 10000
    assert manifest["history"] == job["history"]
    assert manifest["best_epoch"] in (1, 2)
    assert manifest["train_seconds"] > 0
    assert len(manifest["dataset_fingerprint"]) >= 16
    for key in ("sha256", "created_at", "package_version", "size_bytes"):
        assert manifest[key]

    # The report is published with the version; report.json holds the manifest's numbers.
    assert set(manifest["files"]) == set(REPORT_FILES)
    version_dir = trainer_stack.registry.weights_path("mnist", 1).parent
    report = json.loads((version_dir / "report.json").read_text())
    assert report["metrics"] == metrics
    assert report["history"] == manifest["history"]
    for name, size in FIGURE_PIXELS.items():
        with Image.open(version_dir / name) as picture:
            assert picture.format == "PNG" and picture.size == size, name

    # The weights are the model the metrics describe.
    loaded = load_model(trainer_stack.registry.weights_path("mnist", 1), manifest["sha256"])
    ds = load_dataset("mnist", mnist_dir)
    acc = float((loaded.model.predict_proba(ds.x_test).argmax(1) == ds.y_test).mean())
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-6)

    listed = trainer_stack.client.get("/v1/jobs?status=finished").json["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]


# ---- cancel / stop ------------------------------------------------------------------------------


def test_cancel_queued_and_stop_running_publish_nothing(trainer_stack):
    worker = trainer_stack.start_worker()
    running = trainer_stack.submit(LONG)
    job = trainer_stack.wait_epoch(running, 2)  # live per-epoch progress, mid-run
    assert job["status"] == "started" and job["phase"] == "training"
    assert job["history"][0]["epoch"] == 1 and job["progress"]["epochs"] == 1000

    queued = trainer_stack.submit(SMALL)  # the only worker is busy: this one waits
    assert trainer_stack.job(queued)["status"] == "queued"
    r = trainer_stack.client.delete(f"/v1/jobs/{queued}")
    assert r.status_code == 200 and r.json["status"] == "canceled"

    r = trainer_stack.client.delete(f"/v1/jobs/{running}")
    assert r.status_code == 202 and r.json["status"] == "stopping"
    JobStopping.model_validate(r.json)  # what the OpenAPI document promises
    job = trainer_stack.wait_status(running, "stopped", timeout=30)
    assert "nothing was published" in job["error"]
    assert job["model_version"] is None
    assert trainer_stack.client.delete(f"/v1/jobs/{running}").status_code == 409

    # The canceled job never ran; nothing was published; the worker carries on.
    time.sleep(0.5)
    canceled = trainer_stack.job(queued)
    assert canceled["status"] == "canceled" and canceled["started_at"] is None
    assert trainer_stack.versions() == []
    assert worker.poll() is None
    after = trainer_stack.submit(SMALL)
    assert trainer_stack.wait_status(after, ("finished", "failed"))["status"] == "finished"
    assert trainer_stack.versions() == [1]


def test_a_cancel_that_lands_as_a_worker_takes_the_job_reads_canceled(trainer_stack, redis_conn):
    """DELETE flags a queued job, then cancels it in RQ; a worker that took the job in between
    sees the flag and quits before training. RQ calls that failed; the API says canceled."""
    job_id = trainer_stack.submit(SMALL)
    job = Job.fetch(job_id, connection=redis_conn, serializer=queueing.SERIALIZER)
    job.meta["cancel_requested"] = True  # the flag is down, RQ's cancel not yet: a worker takes it
    job.save_meta()
    trainer_stack.start_worker()
    view = trainer_stack.wait_status(job_id, ("canceled", "failed", "finished"))
    assert view["status"] == "canceled", view
    assert view["error"] == "canceled before it started; nothing was published", view
    assert [
        j["job_id"] for j in trainer_stack.client.get("/v1/jobs?status=canceled").json["jobs"]
    ] == [job_id]
    assert trainer_stack.versions() == []


def test_worker_killed_mid_job_fails_the_job_and_leaves_no_version(trainer_stack):
    worker = trainer_stack.start_worker()
    first = trainer_stack.submit(SMALL)
    assert trainer_stack.wait_status(first, ("finished", "failed"))["model_version"] == 1

    doomed = trainer_stack.submit(LONG)
    trainer_stack.wait_epoch(doomed, 1)
    horses = horse_pids(worker.pid)
    assert horses, "the worker should have forked a work horse"
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and everything in its process group
    worker.wait(timeout=10)

    # The horse (own process group) dies with its worker: it can never publish.
    wait_for(lambda: not any(pid_alive(p) for p in horses), 10, what="the work horse to die")
    # The heartbeat expires (1 s + 3 s grace here) and the next read moves the job to failed.
    job = trainer_stack.wait_status(doomed, ("failed",), timeout=30)
    assert "worker" in job["error"] and "died" in job["error"], job
    assert job["model_version"] is None
    assert trainer_stack.versions() == [1]

    trainer_stack.start_worker()
    nxt = trainer_stack.submit(SMALL)
    job = trainer_stack.wait_status(nxt, ("finished", "failed"))
    assert job["status"] == "finished" and job["model_version"] == 2
    assert trainer_stack.versions() == [1, 2]
    names = sorted(p.name for p in (trainer_stack.registry_dir / "mnist").iterdir())
    assert "1" in names and "2" in names


def test_sigterm_mid_job_lets_the_job_finish_and_publish_then_the_worker_exits(trainer_stack):
    """`docker compose stop` (SIGTERM to the worker) within its grace period: RQ's warm shutdown
    takes no new job but finishes the running one, publish included."""
    worker = trainer_stack.start_worker()
    job_id = trainer_stack.submit({**LONG, "epochs": 30})  # ~3 s of training left
    trainer_stack.wait_epoch(job_id, 1)
    worker.send_signal(signal.SIGTERM)
    queued = trainer_stack.submit(SMALL)  # a stopping worker takes no new job
    job = trainer_stack.wait_status(job_id, ("finished", "failed"))
    assert job["status"] == "finished" and job["model_version"] == 1, job
    assert worker.wait(timeout=30) == 0, trainer_stack.logs()
    assert trainer_stack.job(queued)["status"] == "queued"
    assert trainer_stack.client.get("/readyz").json["workers"] == 0  # deregistered
    assert trainer_stack.versions() == [1]


@pytest.mark.parametrize("then", ["SIGKILL after the grace period", "a second SIGTERM"])
def test_a_worker_stopped_mid_job_past_its_grace_fails_the_job_and_publishes_nothing(
    trainer_stack, then
):
    """compose's stop: SIGTERM, then SIGKILL once `stop_grace_period` is over (the work horse,
    in a process group of its own, dies with its worker); or a second SIGTERM, RQ's cold
    shutdown, which kills the work horse at once."""
    worker = trainer_stack.start_worker()
    job_id = trainer_stack.submit(LONG)
    epoch = trainer_stack.wait_epoch(job_id, 1)["progress"]["epoch"]
    worker.send_signal(signal.SIGTERM)
    # The job goes on within the grace period (here 1.5 s; RQ ignores a repeat within 1 s).
    time.sleep(1.5)
    assert trainer_stack.wait_epoch(job_id, epoch + 1)["status"] == "started"
    horses = horse_pids(worker.pid)
    assert horses, "the worker should still run its work horse"
    if then == "a second SIGTERM":
        worker.send_signal(signal.SIGTERM)
    else:
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: not any(pid_alive(p) for p in horses), 10, what="the work horse to die")
    job = trainer_stack.wait_status(job_id, ("failed",), timeout=30)
    assert "nothing was published" in job["error"], job
    assert job["model_version"] is None
    assert trainer_stack.versions() == []


def test_job_timeout_fails_with_a_clear_error(trainer_stack):
    trainer_stack.start_worker()
    client = trainer_stack.api(JOB_TIMEOUT=3)
    job_id = trainer_stack.submit(LONG, client=client)
    job = trainer_stack.wait_status(job_id, ("failed", "finished"), timeout=60)
    assert job["status"] == "failed"
    assert "time limit of 3 s" in job["error"] and "JOB_TIMEOUT" in job["error"]
    assert job["timeout"] == 3
    assert trainer_stack.versions() == []


# ---- retries ------------------------------------------------------------------------------------


def test_transient_download_errors_are_retried_then_fail(trainer_stack, tmp_path):
    dead = f"http://127.0.0.1:{_dead_port()}/"
    trainer_stack.start_worker(
        MNIST_DATA_DIR=str(tmp_path / "no-data-yet"),
        DATASET_MIRRORS=dead,
        JOB_RETRY_DELAYS="0,0",
    )
    job_id = trainer_stack.submit(SMALL)
    job = trainer_stack.wait_status(job_id, ("failed", "finished"), timeout=60)
    assert job["status"] == "failed"
    assert job["retries"] == 2, job
    assert "could not download" in job["error"]
    assert trainer_stack.versions() == []


def test_bad_config_fails_at_once_without_retry(trainer_stack):
    """A job enqueued behind the API's back with an invalid config (the API validates every job
    it queues; the job trusts it): it fails at once, is not retried, and names the field."""
    trainer_stack.start_worker(JOB_RETRY_DELAYS="0,0")
    conn = redis.Redis.from_url(trainer_stack.redis_url)
    try:
        q = queueing.make_queue(trainer_stack.queue, conn)
        job = q.enqueue(
            queueing.JOB_FUNC, {"epochs": 0, "bogus": 1}, job_id=uuid.uuid4().hex,
            meta={"model": "mnist"},
        )  # fmt: skip
        conn.zadd(
            queueing.jobs_index_key(trainer_stack.queue), {job.id: time.time()}
        )  # for cleanup
    finally:
        conn.close()
    result = trainer_stack.wait_status(job.id, ("failed", "finished"), timeout=30)
    assert result["status"] == "failed" and result["retries"] == 0
    assert result["error"].startswith("ValidationError: 2 validation errors for TrainConfig")
    assert "epochs" in result["error"] and "bogus" in result["error"]


def _dead_port() -> int:
    from shared.redis_embedded import free_port

    return free_port()


# ---- retention ----------------------------------------------------------------------------------


def test_a_publish_applies_the_models_retention_rule(trainer_stack, mnist_dir):
    trainer_stack.start_worker()
    first = trainer_stack.submit(SMALL)
    assert trainer_stack.wait_status(first, ("finished", "failed"))["status"] == "finished"
    trainer_stack.registry.set_retention("mnist", 1)
    second = trainer_stack.submit(SMALL)
    job = trainer_stack.wait_status(second, ("finished", "failed"))
    assert job["status"] == "finished" and job["model_version"] == 2, trainer_stack.logs()
    assert trainer_stack.registry.versions("mnist") == [2]
    last = trainer_stack.registry.state("mnist")["history"][-1]
    assert (last["action"], last["from"]) == ("version_delete", 1)
    assert last["actor"] == f"retention (job {second})"


def test_retention_keeps_the_versions_of_running_jobs_and_sweeps(redis_conn, queue, tmp_path):
    """What only Redis knows: a job still running (in RQ's started registry) and a sweep still
    running (in the running-sweeps set) keep their versions; the publishing job keeps its own
    even when it is not the newest."""
    registry = Registry(tmp_path / "models")
    weights = tmp_path / "w.npz"
    manifests = [
        {"job_id": "done"},
        {"job_id": "running"},
        {"job_id": "t1", "staged": True, "sweep": {"sweep_id": "sweep-running"}},
        {"job_id": "t2", "staged": True, "sweep": {"sweep_id": "sweep-finished"}},
        {"job_id": "also-done"},
        {"job_id": "me"},
        {"job_id": "other"},
    ]
    for i, manifest in enumerate(manifests):
        weights.write_bytes(b"weights %d" % i)
        registry.publish("m", weights, manifest)
    registry.set_retention("m", 1)
    started = StartedJobRegistry(queue, connection=redis_conn)
    redis_conn.zadd(started.key, {"running:execution": time.time() + 600})
    redis_conn.sadd(sweeps.running_key(queue), "sweep-running")
    assert apply_retention(registry, redis_conn, queue, "m", "me") == [1, 4, 5]
    assert registry.versions("m") == [2, 3, 6, 7]
    assert apply_retention(registry, redis_conn, queue, "m", "other") == [6]
    redis_conn.zrem(started.key, "running:execution")
    redis_conn.srem(sweeps.running_key(queue), "sweep-running")
    assert apply_retention(registry, redis_conn, queue, "m", "other") == [2, 3]
    assert registry.versions("m") == [7]
