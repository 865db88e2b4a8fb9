"""Redis paused (SIGSTOP) for 30 s in the middle of a sweep, on a PRIVATE redis-server (never the
session's: other runs use it). Nothing waits on the frozen Redis: the API answers 503 within
REDIS_SOCKET_TIMEOUT, the workers' reconcile threads time out and retry; once Redis is back the
sweep finishes with every trial run exactly once, one version published per trial, and both
workers still up. JOB_HEARTBEAT_GRACE is above the pause: a longer outage makes the running
trial abandoned (and retried), by design."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import redis
import requests

from shared.redis_embedded import EmbeddedRedis
from tests.service_support import trainer_api
from tests.trainer_support import Stack, wait_for
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.worker.process import build_worker, requeue_stranded

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.exclusive]

PAUSE_SECONDS = 30
SOCKET_TIMEOUT = 5.0  # the default REDIS_SOCKET_TIMEOUT
MARGIN = 2.0
SEEDS = list(range(1, 9))


def test_redis_paused_mid_sweep(tmp_path, mnist_dir):
    server = EmbeddedRedis(data_dir=tmp_path / "redis").start()
    queue = f"pause{uuid.uuid4().hex[:8]}"
    stack = Stack(server.url, queue, tmp_path, mnist_dir)
    stack.env["JOB_HEARTBEAT_GRACE"] = str(PAUSE_SECONDS * 2)
    body = {
        "base": {"model": "paused", "hidden_layers": [16], "epochs": 1, "train_limit": 300},
        "space": {"seed": SEEDS},
        "parallelism": 1,  # the other worker waits in its dequeue when Redis stops
        "keep": len(SEEDS),
    }
    try:
        with trainer_api(stack.registry_dir, tmp_path, server.url, queue) as api:
            workers = [stack.start_worker(), stack.start_worker()]
            conn = redis.Redis.from_url(server.url)
            registered = f"rq:workers:{queue}"
            wait_for(lambda: conn.scard(registered) == 2, 60, what="both workers to register")
            r = api.post("/v1/sweeps", json=body)
            assert r.status_code == 202, r.text
            sweep_id = r.json()["sweep_id"]
            url = f"/v1/sweeps/{sweep_id}"

            def some_trial_finished() -> bool:
                return any(t["status"] == "finished" for t in api.get(url).json()["trials"])

            wait_for(some_trial_finished, 60, interval=0.05, what="a first finished trial")
            job_id = api.get(url).json()["trials"][0]["job_id"]

            os.kill(server.process.pid, signal.SIGSTOP)
            paused = time.monotonic()
            answers = []
            try:
                paths = [url, "/v1/sweeps", f"/v1/jobs/{job_id}", "/v1/jobs", "/readyz"]
                while time.monotonic() - paused < PAUSE_SECONDS - SOCKET_TIMEOUT - MARGIN:
                    for path in paths:
                        started = time.monotonic()
                        status = requests.get(api.base + path, timeout=60).status_code
                        answers.append((path, status, time.monotonic() - started))
            finally:
                time.sleep(max(0.0, PAUSE_SECONDS - (time.monotonic() - paused)))
                os.kill(server.process.pid, signal.SIGCONT)

            assert {status for _, status, _ in answers} == {503}, answers
            slowest = max(seconds for _, _, seconds in answers)
            assert slowest <= SOCKET_TIMEOUT + MARGIN, answers
            print(f"{len(answers)} answers during the pause, all 503, slowest {slowest:.2f} s")

            def ended() -> dict | None:
                view = api.get(url).json()
                return view if view["status"] != "running" else None

            resumed = time.monotonic()
            try:
                view = wait_for(ended, 180, interval=0.3, what="the sweep to end")
            except AssertionError:  # what the sweep, the queue and the workers were doing
                q = queueing.make_queue(queue, conn)
                seen = {
                    "sweep": api.get(url).json(),
                    "queued": q.job_ids,
                    "intermediate": conn.lrange(q.intermediate_queue_key, 0, -1),
                    "started": q.started_job_registry.get_job_ids(),
                }
                raise AssertionError(
                    f"the sweep did not end within 180 s of Redis resuming: {seen}\n{stack.logs()}"
                ) from None
            print(f"the sweep ended {time.monotonic() - resumed:.1f} s after Redis resumed")
            trials = view["trials"]
            assert view["status"] == "finished", (view, stack.logs())
            assert [t["status"] for t in trials] == ["finished"] * len(SEEDS), trials
            assert [t["job_status"] for t in trials] == ["finished"] * len(SEEDS), trials
            assert sorted(t["number"] for t in trials) == list(range(len(SEEDS))), trials
            assert sorted(t["params"]["seed"] for t in trials) == SEEDS, trials
            assert not any(t["retry_of"] is not None for t in trials), trials
            job_ids = {t["job_id"] for t in trials}
            assert len(job_ids) == len(SEEDS), trials
            enqueued = {i.decode() for i in conn.zrange(f"digitflow:{queue}:jobs", 0, -1)}
            assert enqueued == job_ids  # no job beyond the sweep's trials
            versions = sorted(t["model_version"] for t in trials)
            assert stack.versions("paused") == versions
            published_by = {stack.registry.manifest("paused", v)["job_id"] for v in versions}
            assert published_by == job_ids
            assert all(w.poll() is None for w in workers), stack.logs()
            # A worker whose dequeue timed out reconnects (back off to 5 s): listening again soon.
            wait_for(lambda: conn.scard(registered) == 2, 30, what=f"both workers\n{stack.logs()}")
            # The reconcile threads' calls timed out (a call without a timeout would just wait).
            logs = "".join(w.log_path.read_text() for w in workers)
            assert "sweep reconcile: Redis unreachable" in logs, stack.logs()
            conn.close()
    finally:
        stack.close()
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()  # private: its keys go with it


def test_a_job_stranded_by_a_lost_dequeue_goes_back_to_its_queue(redis_url, queue):
    """What a BLMOVE that timed out client-side but ran when Redis resumed leaves behind."""
    conn = redis.Redis.from_url(redis_url)
    q = queueing.make_queue(queue, conn)
    job = q.enqueue("os.getpid", job_id=f"{queue}-stranded")
    assert conn.lmove(q.key, q.intermediate_queue_key) == job.id.encode()
    requeue_stranded(q)
    assert (q.job_ids, conn.llen(q.intermediate_queue_key)) == ([job.id], 0)
    conn.close()


def test_a_job_taken_as_redis_was_lost_goes_back_to_its_queue(redis_url, queue):
    """A worker took a job (BLMOVE) and RQ's `prepare_execution` registered its execution (its
    reply lost to a hung Redis that ran it on resuming); no work horse started it. Left alone,
    the job looks started and RQ would fail it as abandoned, a job that never ran; the
    reconnecting worker puts it back. A job a horse did start stays where it is."""
    settings = TrainerSettings.load({"REDIS_URL": redis_url, "RQ_QUEUE": queue})
    worker = build_worker(settings, name=f"{queue}-taker")
    q = worker.queues[0]
    conn = q.connection
    never_started, started = (q.enqueue("os.getpid", job_id=f"{queue}-{i}") for i in (1, 2))
    for job in (never_started, started):
        assert conn.lmove(q.key, q.intermediate_queue_key) == job.id.encode()
        worker.prepare_execution(job)  # the main process's step: the execution is registered
    # The second one's work horse started it: out of the intermediate list, status started.
    worker.prepare_job_execution(started, remove_from_intermediate_queue=True)
    registry = q.started_job_registry
    assert sorted(registry.get_job_ids(cleanup=False)) == sorted([never_started.id, started.id])
    requeue_stranded(q)  # a lost dequeue only: both are in the started registry, neither moves
    assert q.job_ids == []

    taken = never_started.get_executions()[0]
    requeue_stranded(q, taken=taken)
    assert q.job_ids == [never_started.id]
    assert conn.lrange(q.intermediate_queue_key, 0, -1) == []
    assert registry.get_job_ids(cleanup=False) == [started.id]
    assert never_started.get_executions() == [] and not conn.exists(taken.key)
    assert never_started.get_status(refresh=True) == "queued"

    requeue_stranded(q, taken=worker.execution)  # the started one's execution: it stays
    assert (q.job_ids, registry.get_job_ids(cleanup=False)) == ([never_started.id], [started.id])
    assert started.get_status(refresh=True) == "started"
    for job in (never_started, started):
        job.delete()
    conn.delete(worker.key, registry.key)
    conn.close()


def test_a_reconnecting_worker_retires_its_own_earlier_registration(redis_url, queue):
    """After an outage the worker registers again under its name (`_reconnect`); a registration
    of this very process that still looks alive is retired, not refused (the worker once died
    of RQ's "There exists an active worker named ... already"). Another process's is refused."""
    settings = TrainerSettings.load({"REDIS_URL": redis_url, "RQ_QUEUE": queue})
    name = f"{queue}-again"
    before = build_worker(settings, name=name)
    before.register_birth()
    conn = before.connection
    again = build_worker(settings, name=name)
    again.register_birth()  # the old registration is alive: RQ alone raises ValueError here
    assert conn.hget(again.key, "death") is None
    assert conn.hget(again.key, "birth").decode() == again.birth_date.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    conn.hset(again.key, "pid", str(os.getpid() + 1))  # the name taken by another process
    other = build_worker(settings, name=name)
    with pytest.raises(ValueError, match="active worker named"):
        other.register_birth()
    again.register_death()
    conn.delete(again.key)
    conn.close()
