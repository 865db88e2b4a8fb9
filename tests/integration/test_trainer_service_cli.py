"""`python -m trainer_service api` and `worker` as real processes, and several workers on one queue."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import pytest
import requests

from tests.trainer_support import (
    LONG,
    REPO_ROOT,
    SMALL,
    free_port,
    service_env,
    stop_process,
    tail,
    wait_for,
    wait_http_ok,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_api_subcommand_serves_under_gunicorn(stack, tmp_path):
    port = free_port()
    log = tmp_path / "api.log"
    env = service_env(
        REDIS_URL=stack.redis_url,
        RQ_QUEUE=stack.queue,
        MODEL_REGISTRY_DIR=str(stack.registry_dir),
        API_TOKEN="t0k3n-" + uuid.uuid4().hex,
        WEB_CONCURRENCY="1",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer_service", "api", "--port", str(port), "--host", "127.0.0.1"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(base + "/readyz", proc, log)
            assert (
                requests.get(base + "/openapi.json", timeout=5).json()["openapi"].startswith("3.")
            )
            r = requests.post(base + "/v1/jobs", json=SMALL, timeout=5)
            assert r.status_code == 401
            r = requests.post(
                base + "/v1/jobs",
                json=SMALL,
                headers={"Authorization": f"Bearer {env['API_TOKEN']}"},
                timeout=5,
            )
            assert r.status_code == 202, r.text
            job = requests.get(base + r.headers["Location"], timeout=5).json()
            assert job["status"] == "queued"
        finally:
            stop_process(proc, signal.SIGTERM)
    text = log.read_text()
    assert "gunicorn" in text.lower(), text
    assert env["API_TOKEN"] not in text  # the token is never logged


def test_worker_burst_mode_drains_the_queue_and_exits(stack, tmp_path):
    job_id = stack.submit(SMALL)
    proc = subprocess.run(
        [sys.executable, "-m", "trainer_service", "worker", "--burst",
         "--name", f"{stack.queue}-burst"],
        cwd=REPO_ROOT, env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = stack.job(job_id)
    assert job["status"] == "finished" and job["model_version"] == 1
    assert "BLAS threads" in proc.stderr + proc.stdout


def test_several_workers_share_one_queue(stack):
    stack.start_worker()
    stack.start_worker()
    long_id = stack.submit(LONG)
    long_job = stack.wait_epoch(long_id, 1)
    # One worker is busy with the long job: the other one takes the next job meanwhile.
    small = stack.wait_status(stack.submit(SMALL), ("finished", "failed"))
    assert small["status"] == "finished", stack.logs()
    assert small["worker"] != long_job["worker"]
    assert stack.job(long_id)["status"] == "started"
    assert small["model_version"] == 1

    assert stack.client.delete(f"/v1/jobs/{long_id}").status_code == 202
    assert stack.wait_status(long_id, "stopped", timeout=30)["model_version"] is None
    # Both workers are still there and the next job publishes the next number.
    assert all(w.poll() is None for w in stack.workers), tail(stack.workers[0].log_path)
    nxt = stack.wait_status(stack.submit(SMALL), ("finished", "failed"))
    assert nxt["model_version"] == 2
    wait_for(lambda: stack.versions() == [1, 2], 5, what="versions 1 and 2")
