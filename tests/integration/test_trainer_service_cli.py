"""The trainer API under gunicorn as the Procfile starts it, `python -m trainer_service worker`
as a real process, and several workers on one queue."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import requests

from tests import REPO_ROOT
from tests.service_support import trainer_api
from tests.trainer_support import (
    LONG,
    SMALL,
    tail,
    wait_for,
    wait_http_ok,
)

pytestmark = [pytest.mark.slow]


def test_the_api_serves_under_gunicorn_as_the_procfile_starts_it(trainer_stack, tmp_path):
    token = "t0k3n-" + uuid.uuid4().hex
    with trainer_api(
        trainer_stack.registry_dir,
        tmp_path,
        trainer_stack.redis_url,
        trainer_stack.queue,
        API_TOKEN=token,
        WEB_CONCURRENCY="1",
    ) as api:
        wait_http_ok(api.base + "/readyz", api.proc, api.log_path)
        assert (
            requests.get(api.base + "/openapi.json", timeout=5).json()["openapi"].startswith("3.")
        )
        r = requests.post(api.base + "/v1/jobs", json=SMALL, timeout=5)
        assert r.status_code == 401
        r = requests.post(
            api.base + "/v1/jobs",
            json=SMALL,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert r.status_code == 202, r.text
        job = requests.get(api.base + r.headers["Location"], timeout=5).json()
        assert job["status"] == "queued"
    text = api.log_path.read_text()
    assert "gunicorn" in text.lower(), text
    assert token not in text  # the token is never logged


def test_worker_burst_mode_drains_the_queue_and_exits(trainer_stack, tmp_path):
    job_id = trainer_stack.submit(SMALL)
    proc = subprocess.run(
        [sys.executable, "-m", "trainer_service", "worker", "--burst",
         "--name", f"{trainer_stack.queue}-burst"],
        cwd=REPO_ROOT, env=trainer_stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = trainer_stack.job(job_id)
    assert job["status"] == "finished" and job["model_version"] == 1
    assert "BLAS threads" in proc.stderr + proc.stdout


def test_several_workers_share_one_queue(trainer_stack):
    trainer_stack.start_worker()
    trainer_stack.start_worker()
    long_id = trainer_stack.submit(LONG)
    long_job = trainer_stack.wait_epoch(long_id, 1)
    # One worker is busy with the long job: the other one takes the next job meanwhile.
    small = trainer_stack.wait_status(trainer_stack.submit(SMALL), ("finished", "failed"))
    assert small["status"] == "finished", trainer_stack.logs()
    assert small["worker"] != long_job["worker"]
    assert trainer_stack.job(long_id)["status"] == "started"
    assert small["model_version"] == 1

    assert trainer_stack.client.delete(f"/v1/jobs/{long_id}").status_code == 202
    assert trainer_stack.wait_status(long_id, "stopped", timeout=30)["model_version"] is None
    # Both workers are still there and the next job publishes the next number.
    assert all(w.poll() is None for w in trainer_stack.workers), tail(
        trainer_stack.workers[0].log_path
    )
    nxt = trainer_stack.wait_status(trainer_stack.submit(SMALL), ("finished", "failed"))
    assert nxt["model_version"] == 2
    wait_for(lambda: trainer_stack.versions() == [1, 2], 5, what="versions 1 and 2")
