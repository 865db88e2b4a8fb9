"""Redis stopped and restarted under a running stack, on a PRIVATE redis-server (persistence on,
fixed port) so the session's Redis is never touched.

Predictions keep working throughout (inference never needs Redis); the job routes answer 503 with a
clear message and Retry-After while Redis is down and recover by themselves; the worker survives
(its running job goes on, heartbeats resume) and takes the next job; a queued job survives the
restart; an idle worker reconnects after a second outage.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests

from shared.redis_embedded import EmbeddedRedis, free_port
from shared.registry import Registry
from tests.service_support import BATCH, inference_service, publish, trainer_api
from tests.trainer_support import LONG, SMALL, Stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 3.0


class Predictor(threading.Thread):
    """Predictions at the default version every ~20 ms until stopped; records every outcome."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        body = {"instances": BATCH[:1].tolist()}
        while not self.stop.is_set():
            try:
                r = requests.post(f"{self.base}/v1/models/digits/predict", json=body, timeout=10)
                self.statuses.append(r.status_code)
            except requests.RequestException as exc:
                self.errors.append(repr(exc))
            time.sleep(0.02)


def test_redis_restart(tmp_path, mnist_dir):
    port = free_port()
    redis_dir = tmp_path / "redis"
    server = EmbeddedRedis(port=port, data_dir=redis_dir, persist=True).start()
    queue = f"r{uuid.uuid4().hex[:8]}"
    stack = Stack(server.url, queue, tmp_path, mnist_dir)
    # A ~3 s outage must stay well inside the heartbeat grace, or the running job is abandoned.
    stack.env["JOB_HEARTBEAT_GRACE"] = "20"
    registry = Registry(stack.registry_dir)
    assert publish(registry, tmp_path, seed=1) == 1
    predictor = None
    try:
        with (
            inference_service(stack.registry_dir, tmp_path) as inference,
            trainer_api(stack.registry_dir, tmp_path, server.url, queue) as api,
        ):
            worker = stack.start_worker()
            wait_for(lambda: inference.get("/readyz").status_code == 200, 10, what="inference")
            predictor = Predictor(inference.base)
            predictor.start()

            running = api.post("/v1/jobs", json=LONG).json()["job_id"]
            wait_for(
                lambda: (api.get(f"/v1/jobs/{running}").json()["progress"] or {}).get("epoch"),
                60,
                what="the long job to train",
            )
            queued = api.post("/v1/jobs", json=SMALL).json()["job_id"]
            assert api.get(f"/v1/jobs/{queued}").json()["status"] == "queued"

            # ---- Redis goes away ----
            server.stop()
            down_at = time.monotonic()
            r = api.post("/v1/jobs", json=SMALL)
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
            message = r.json()["error"]["message"]
            assert "Redis" in message and "unavailable" in message and "retry" in message
            for resp in (
                api.get(f"/v1/jobs/{queued}"),
                api.get("/v1/jobs"),
                requests.delete(f"{api.base}/v1/jobs/{running}", timeout=10),
                api.get("/readyz"),
            ):
                assert resp.status_code == 503 and "Redis" in resp.json()["error"]["message"]
            assert api.get("/healthz").status_code == 200
            assert api.get("/v1/models").status_code == 200  # the registry needs no Redis
            assert inference.get("/readyz").status_code == 200
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            assert worker.poll() is None, stack.logs()

            # ---- Redis comes back on the same port, with its data ----
            server = EmbeddedRedis(port=port, data_dir=redis_dir, persist=True).start()
            back_at = time.monotonic()
            job = wait_for(
                lambda: _ok_json(api, f"/v1/jobs/{queued}"), 15, what="job routes to recover"
            )
            recovered = time.monotonic() - back_at
            assert job["status"] == "queued", job  # survived the restart
            before = api.get(f"/v1/jobs/{running}").json()
            assert before["status"] == "started", (before, stack.logs())
            wait_for(
                lambda: (
                    api.get(f"/v1/jobs/{running}").json()["progress"]["epoch"]
                    > before["progress"]["epoch"]
                ),
                20,
                what="the running job to report progress again",
            )
            assert api.get("/readyz").json()["workers"] == 1

            # The worker listens again: it takes a stop command, then the queued job.
            wait_for(
                lambda: (
                    requests.delete(f"{api.base}/v1/jobs/{running}", timeout=10).status_code == 202
                ),
                15,
                interval=0.5,
                what="the worker to take the stop command",
            )
            stopped = wait_for(
                lambda: _status(api, running, "stopped"), 30, what="the long job to stop"
            )
            assert stopped["model_version"] is None
            done = wait_for(
                lambda: _status(api, queued, "finished", "failed"), 90, what="the queued job"
            )
            assert done["status"] == "finished" and done["model_version"] == 1, (
                done,
                stack.logs(),
            )
            assert registry.versions("mnist") == [1]
            assert worker.poll() is None

            # A second outage while the worker is idle (blocked waiting for work): it
            # reconnects by itself and takes the next job.
            server.stop()
            time.sleep(2)
            server = EmbeddedRedis(port=port, data_dir=redis_dir, persist=True).start()
            third = wait_for(lambda: _submit(api, SMALL), 15, what="submissions to recover")
            done = wait_for(
                lambda: _status(api, third, "finished", "failed"), 90, what="the third job"
            )
            assert done["status"] == "finished" and done["model_version"] == 2, stack.logs()
            assert worker.poll() is None

            predictor.stop.set()
            predictor.join(15)
            print(
                f"\nRedis outage {OUTAGE_SECONDS:.0f} s: job routes back {recovered:.2f} s after "
                f"restart; {len(predictor.statuses)} predictions, statuses "
                f"{sorted(set(predictor.statuses))}, {len(predictor.errors)} connection errors"
            )
            assert predictor.errors == []
            assert set(predictor.statuses) == {200} and len(predictor.statuses) > 50
    finally:
        if predictor is not None:
            predictor.stop.set()
        stack.close()
        server.stop()


def _ok_json(api, path: str):
    try:
        r = api.get(path)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def _submit(api, body) -> str | None:
    r = api.post("/v1/jobs", json=body)
    return r.json()["job_id"] if r.status_code == 202 else None


def _status(api, job_id: str, *statuses: str):
    job = api.get(f"/v1/jobs/{job_id}").json()
    return job if job["status"] in statuses else None


def test_worker_survives_redis_going_away_as_its_job_ends(tmp_path, mnist_dir):
    """The worst moment: the job publishes while Redis is down and stays down past the grace.
    The version is published (the documented exception: its job then reads failed, abandoned),
    the worker process survives RQ's work loop ending, reconnects and takes the next job."""
    port = free_port()
    redis_dir = tmp_path / "redis"
    server = EmbeddedRedis(port=port, data_dir=redis_dir, persist=True).start()
    stack = Stack(server.url, f"r{uuid.uuid4().hex[:8]}", tmp_path, mnist_dir)
    stack.env["JOB_HEARTBEAT_GRACE"] = "2"
    gate = tmp_path / "gate"
    try:
        worker = stack.start_worker(publish_gate=gate)
        job_id = stack.submit(SMALL)
        model_dir = stack.registry_dir / "mnist"
        wait_for(
            lambda: (
                model_dir.is_dir() and any(p.name.startswith(".tmp-") for p in model_dir.iterdir())
            ),
            90,
            what="the publish to reach the gate",
        )
        server.stop()
        gate.touch()  # the rename happens while Redis is down
        wait_for(lambda: "reconnecting" in stack.logs(), 30, what="RQ's work loop to end")
        assert worker.poll() is None, stack.logs()
        server = EmbeddedRedis(port=port, data_dir=redis_dir, persist=True).start()
        wait_for(lambda: "Redis answers again" in stack.logs(), 30, what="the reconnect")
        assert stack.versions() == [1]
        assert stack.registry.verify("mnist", 1)["job_id"] == job_id  # the manifest names it
        job = stack.wait_status(job_id, ("failed", "finished"), timeout=30)
        # Its outcome could not be recorded, so it reads failed (abandoned), but it says truthfully
        # which version it published.
        assert job["status"] == "failed" and job["model_version"] == 1, job
        assert "published version 1" in job["error"], job
        gate.unlink()
        nxt = stack.submit(SMALL)
        gate.touch()
        done = stack.wait_status(nxt, ("finished", "failed"), timeout=90)
        assert done["status"] == "finished" and done["model_version"] == 2, stack.logs()
        assert worker.poll() is None
    finally:
        stack.close()
        server.stop()
