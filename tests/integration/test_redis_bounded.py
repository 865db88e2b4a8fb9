"""Redis stays bounded: every key that jobs and sweeps write expires with them (README,
Guarantees). With TTLs of seconds, on a real Redis with a real worker: a finished job, a job
canceled while queued (with an Idempotency-Key), a finished sweep and a canceled one (its running
trial stopped, its queued one canceled). Once their TTLs have run out, nothing of theirs is left
but the worker's own registration and RQ's registries until RQ's maintenance cleans them."""

from __future__ import annotations

import signal
import time

import redis
from rq import Queue
from rq.registry import clean_registries

from tests.integration.test_sweeps import BASE, start, sweep, wait_done
from tests.trainer_support import wait_for
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.sweeps.coordinator import JOURNAL_GRACE
from trainer_service.worker.process import build_worker

TTLS = {"RESULT_TTL": "4", "FAILURE_TTL": "6", "IDEMPOTENCY_TTL": "3"}


def keys_of(conn: redis.Redis, queue: str, ids: set[str]) -> dict[str, int]:
    """This run's keys (named after its queue, its worker or one of its jobs) and their TTLs."""
    found = {}
    for raw in conn.scan_iter(count=1000):
        key = raw.decode()
        if queue in key or any(i in key for i in ids):
            found[key] = conn.ttl(key)
    return found


def test_every_key_of_jobs_and_sweeps_expires(trainer_stack, redis_url):
    stack = trainer_stack
    stack.client = stack.api(**TTLS)
    q = stack.queue
    conn = redis.Redis.from_url(redis_url)
    ids: set[str] = set()
    written: dict[str, int] = {}

    def look(*new_ids: str) -> None:
        ids.update(new_ids)
        written.update(keys_of(conn, q, ids))

    try:
        kept = stack.submit({**BASE, "epochs": 1})
        r = stack.client.post("/v1/jobs", json=BASE, headers={"Idempotency-Key": "k"})
        canceled = r.json["job_id"]
        assert stack.client.delete(f"/v1/jobs/{canceled}").status_code == 200
        look(kept, canceled)
        stack.start_worker(**TTLS)
        stack.wait_status(kept, "finished")
        look()
        finished = wait_done(stack, start(stack, {"base": BASE, "space": {"seed": [1, 2]}}))
        look(finished["sweep_id"], *(t["job_id"] for t in finished["trials"]))
        body = {
            "base": {**BASE, "hidden_layers": [256, 256], "epochs": 1000, "train_limit": 3000},
            "space": {"seed": [1, 2]},
            "parallelism": 2,
        }
        stopped_id = start(stack, body)
        wait_for(
            lambda: any(t["job_status"] == "started" for t in sweep(stack, stopped_id)["trials"]),
            60,
            what="a running trial",
        )
        r = stack.client.delete(f"/v1/sweeps/{stopped_id}")
        assert r.status_code == 200, r.json
        ended = time.monotonic()
        look(stopped_id, *(t["job_id"] for t in r.json["trials"]))
        for expected in (
            f"digitflow:{q}:jobs",
            f"digitflow:{q}:sweeps",
            f"digitflow:{q}:sweep:{stopped_id}",
            f"digitflow:{q}:optuna:{stopped_id}:log_number",
            f"digitflow:{q}:optuna:{finished['sweep_id']}:log:0",
            f"rq:job:{canceled}",
            f"rq:job:{kept}",
            f"rq:canceled:{q}",
        ):
            assert expected in written, sorted(written)
        assert written[f"digitflow:{q}:sweep:{stopped_id}"] > 0  # ended: it expires

        # Everything expires by FAILURE_TTL + JOURNAL_GRACE (+ 5 s for the journal's lines)
        # after the last end; the workers' reconcile thread drops expired ids from the indexes.
        # RQ's own registries are cleaned by every worker's maintenance (at start, then every
        # 10 minutes): run here as the worker would.
        time.sleep(max(0.0, ended + 6 + JOURNAL_GRACE + 5 - time.monotonic()))
        rq_queue = Queue(q, connection=conn, serializer=queueing.SERIALIZER)

        def only_the_worker_is_left():
            clean_registries(rq_queue)
            left = keys_of(conn, q, ids)
            return left if set(left) <= {*worker_keys(conn, q), f"rq:workers:{q}"} else None

        try:
            left = wait_for(only_the_worker_is_left, 20, interval=1.0, what="every key to expire")
        except AssertionError:
            left = keys_of(conn, q, ids)
            raise AssertionError(f"left: {sorted(left.items())}\n{stack.logs()}") from None
        assert all(ttl > 0 for key, ttl in left.items() if key.startswith("rq:worker:"))
    finally:
        conn.close()


def worker_keys(conn: redis.Redis, queue: str) -> list[str]:
    """The live worker's own key (it expires unless the worker's heartbeat renews it)."""
    return [m.decode() for m in conn.smembers(f"rq:workers:{queue}")]


def test_a_line_written_to_an_ended_sweeps_journal_expires_with_it(redis_url, redis_conn, queue):
    """A stopped trial may report once more after its sweep ended and its journal was given its
    expiry: that line expires with the journal, and the line counter before any line."""
    import optuna

    from trainer_service.sweeps import coordinator as sweeps

    settings = TrainerSettings.load({"REDIS_URL": redis_url, "RQ_QUEUE": queue})
    study = optuna.create_study(storage=sweeps.storage(settings, "s"), study_name="s")
    trial = study.ask()
    prefix = sweeps.journal_prefix(queue, "s")
    sweeps.expire_journal(redis_conn, prefix, 100)
    before = set(redis_conn.scan_iter(match=f"{prefix}:*"))
    trial.report(0.5, 1)
    keys = set(redis_conn.scan_iter(match=f"{prefix}:*"))
    assert len(keys) == len(before) + 1, (before, keys)
    ttls = {k.decode(): redis_conn.ttl(k) for k in keys}
    assert all(0 < ttl <= 105 for ttl in ttls.values()), ttls
    assert ttls[f"{prefix}:log_number"] == min(ttls.values()), ttls


def test_a_heartbeat_as_the_work_horse_exits_leaves_no_execution_behind(redis_url, queue):
    """RQ's monitor loop heartbeats every job_monitoring_interval until the work horse has
    exited; the horse deletes its execution's records before it exits. A heartbeat landing in
    between re-created them (`rq:executions:<job>` for heartbeat TTL + 60 s), once in CI. Here
    the horse stays up two intervals after its clean-up, so the heartbeat lands there for sure:
    once the horse is gone, nothing of the execution is left."""
    settings = TrainerSettings.load(
        {"REDIS_URL": redis_url, "RQ_QUEUE": queue, "JOB_HEARTBEAT_SECONDS": "1"}
    )
    worker = build_worker(settings, name=f"{queue}-w")
    rq_perform_job = worker.perform_job

    def perform_then_linger(job, q):  # runs in the work horse
        done = rq_perform_job(job, q)
        time.sleep(2.5 * worker.job_monitoring_interval)
        return done

    worker.perform_job = perform_then_linger
    job = worker.queues[0].enqueue("os.getpid", job_id=f"{queue}-job", result_ttl=600)
    heartbeats = []
    rq_maintain_heartbeats = worker.maintain_heartbeats

    def counted(j):
        heartbeats.append(time.monotonic())
        rq_maintain_heartbeats(j)

    worker.maintain_heartbeats = counted
    conn = worker.connection
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=True)  # installs the worker's stop handlers in this process
        assert job.get_status(refresh=True) == "finished"
        assert len(heartbeats) >= 2  # the monitor loop did heartbeat while the horse lingered
        assert conn.zcard(job.execution_registry.key) == 0
        assert list(conn.scan_iter(match=f"rq:execution:{job.id}:*")) == []
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        conn.close()
