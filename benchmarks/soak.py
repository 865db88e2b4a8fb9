"""Soak: does Redis return to its baseline once a stack's jobs and sweeps have expired?

    python -m benchmarks.soak [--jobs 300] [--sweeps 30] [--result-ttl 20] [--failure-ttl 30]

The real stack as the Procfile starts it (the trainer API under gunicorn, 2 workers: `python -m
trainer_service worker`) on a queue of this run's own, with short RESULT_TTL / FAILURE_TTL /
IDEMPOTENCY_TTL. Submitted at once: `jobs` tiny jobs (every 10th canceled while queued, every 5th
with an Idempotency-Key) and `sweeps` tiny 2-trial sweeps (every 6th canceled at once). Then, once
all have ended, wait for the TTLs (+ the sweep journals' grace) to run out.

Redis is sampled every 2 s: `INFO memory` used_memory (the whole server: other databases and
clients move it too), the key count of the database (DBSIZE) and this run's keys (named after its
queue, its workers or its jobs; their bytes by MEMORY USAGE). Reported at baseline (before the
stack starts), peak, after expiry, and after RQ's registry maintenance (which every worker runs
at start and then every 10 minutes; run here as a worker would), with every key of the run still
there and why. Only this run's keys are deleted at the end.

Results: a markdown table on stdout, raw data in benchmarks/results/soak-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.registry import clean_registries

from benchmarks.common import (
    default_data_dir,
    load_average,
    machine_info,
    markdown_table,
    now_iso,
    save_result,
)
from benchmarks.lifecycle import (
    PYTHON,
    TRAINER_APP,
    TRAINER_CONF,
    base_env,
    delete_queue_keys,
    redis_url,
    request,
    start,
    start_gunicorn,
    stop,
    wait_until,
)
from shared.blas import BLAS_THREAD_VARIABLES
from trainer_service import queueing
from trainer_service.sweeps.coordinator import JOURNAL_GRACE

JOB = {"model": "soak", "hidden_layers": [16], "epochs": 1, "train_limit": 200, "augment": False}
SWEEP = {
    "base": {**JOB, "model": "soak-sweep"},
    "space": {"learning_rate": [0.01, 0.003]},
    "keep": 1,
}
ID = re.compile(r"[0-9a-f]{32}")

#: Why a key of the run may outlive its jobs and sweeps (matched in order, first wins).
EXPLAINED = (
    (r"^rq:worker:", "a live worker's registration (expires unless its heartbeat renews it)"),
    (r"^rq:workers:", "the queue's set of live workers (RQ drops dead ones in its maintenance)"),
    (r"^rq:clean_registries:", "RQ's maintenance lock (expires)"),
    (r"^rq:(finished|failed|wip):", "an RQ registry: expired entries go in RQ's maintenance"),
)


def run_keys(conn: redis.Redis, queue: str, ids: set[str]) -> list[str]:
    """The keys of this run: named after its queue, one of its workers or jobs or sweeps."""
    workers = {m.decode() for m in conn.smembers(f"rq:workers:{queue}")}
    out = []
    for raw in conn.scan_iter(count=1000):
        key = raw.decode()
        found = ID.search(key)
        if queue in key or key in workers or (found and found.group() in ids):
            out.append(key)
    return out


def sample(conn: redis.Redis, queue: str, ids: set[str]) -> dict[str, Any]:
    keys = run_keys(conn, queue, ids)
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = pipe.execute()
    return {
        "t": time.time(),
        "used_memory": int(conn.info("memory")["used_memory"]),
        "db_keys": int(conn.dbsize()),
        "run_keys": len(keys),
        "run_bytes": sum(s or 0 for s in sizes),
    }


def leftovers(conn: redis.Redis, queue: str, ids: set[str]) -> list[dict[str, Any]]:
    """Every key of the run still there: its type, TTL, size and why it is there; then RQ's
    sets of all workers and all queues, with the number of this run's entries in them."""
    out = []
    for key in sorted(run_keys(conn, queue, ids)):
        kind = conn.type(key).decode()
        size = conn.zcard(key) if kind == "zset" else conn.scard(key) if kind == "set" else None
        why = next((w for pattern, w in EXPLAINED if re.search(pattern, key)), "UNEXPLAINED")
        pattern = ID.sub("<id>", key.replace(queue, "<queue>"))
        out.append({"key": pattern, "type": kind, "ttl": conn.ttl(key), "size": size, "why": why})
    workers = {m.decode() for m in conn.smembers(f"rq:workers:{queue}")}
    for key, ours, why in (
        (
            "rq:workers",
            workers,
            "RQ's set of every live worker: this run's (dropped at their death)",
        ),
        ("rq:queues", {f"rq:queue:{queue}"}, "RQ's set of queue names: one entry per queue used"),
    ):
        size = sum(m.decode() in ours for m in conn.smembers(key))
        if size:
            out.append({"key": key, "type": "set", "ttl": -1, "size": size, "why": why})
    return out


class Sampler(threading.Thread):
    """Samples Redis every `every` seconds into `samples` until stopped."""

    def __init__(self, url: str, queue: str, ids: set[str], every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.conn, self.queue, self.ids, self.every = redis.Redis.from_url(url), queue, ids, every
        self.samples: list[dict[str, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(sample(self.conn, self.queue, set(self.ids)))
            self.done.wait(self.every)


def post(port: int, path: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else None
    status, _, data = request("POST", port, path, json.dumps(body).encode(), headers=headers)
    if status != 202:
        raise RuntimeError(f"POST {path}: HTTP {status}: {data[:300]!r}")
    return json.loads(data)


def get(port: int, path: str) -> dict[str, Any]:
    status, _, data = request("GET", port, path)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {data[:300]!r}")
    return json.loads(data)


def soak(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    queue = f"bench-soak-{uuid.uuid4().hex[:10]}"
    conn = redis.Redis.from_url(url)
    ids: set[str] = set()
    env = base_env(tmp)
    env.update(
        REDIS_URL=url,
        RQ_QUEUE=queue,
        MODEL_REGISTRY_DIR=str(tmp / "models"),
        MNIST_DATA_DIR=str(args.data_dir),
        WORKER_PRELOAD_DATASETS="mnist",
        API_TOKEN="",
        RESULT_TTL=str(args.result_ttl),
        FAILURE_TTL=str(args.failure_ttl),
        IDEMPOTENCY_TTL=str(args.result_ttl),
        MAX_QUEUED_JOBS_PER_MODEL="0",
        SWEEP_RECONCILE_SECONDS="1",
        **dict.fromkeys(BLAS_THREAD_VARIABLES, "1"),
    )
    baseline = sample(conn, queue, ids)
    sampler = Sampler(url, queue, ids)
    procs = []
    figures: dict[str, Any] = {"baseline": baseline}
    try:
        api, port = start_gunicorn("trainer-api", TRAINER_APP, TRAINER_CONF, env, tmp)
        procs.append(api)
        for i in range(2):
            procs.append(
                start(f"worker-{i}", [PYTHON, "-m", "trainer_service", "worker"], env, tmp)
            )
        wait_until(lambda: conn.scard(f"rq:workers:{queue}") == 2, 120, "2 workers", 0.2, procs[-1])
        sampler.start()
        started = time.monotonic()
        sweep_ids, canceled = [], {"jobs": 0, "sweeps": 0}
        for i in range(max(args.jobs, args.sweeps)):
            if i < args.jobs:
                job_id = post(port, "/v1/jobs", JOB, f"soak-{i}" if i % 5 == 0 else None)["job_id"]
                ids.add(job_id)
                if i % 10 == 9:
                    canceled["jobs"] += request("DELETE", port, f"/v1/jobs/{job_id}")[0] == 200
            if i < args.sweeps:
                sweep_ids.append(post(port, "/v1/sweeps", SWEEP)["sweep_id"])
                ids.add(sweep_ids[-1])
                if i % 6 == 5:
                    path = f"/v1/sweeps/{sweep_ids[-1]}"
                    canceled["sweeps"] += request("DELETE", port, path)[0] == 200
        ended: dict[str, dict[str, Any]] = {}  # the last view of each ended sweep

        def all_ended() -> bool:
            for proc in procs:
                proc.check()
            for sweep_id in set(sweep_ids) - set(ended):  # an ended sweep may have expired
                view = get(port, f"/v1/sweeps/{sweep_id}")
                ids.update(t["job_id"] for t in view["trials"])
                if view["status"] != "running":
                    ended[sweep_id] = view
            active = get(port, "/v1/jobs?status=queued,started&limit=1")["count"]
            return not active and len(ended) == len(sweep_ids)

        wait_until(all_ended, args.timeout, "every job and sweep to end", 2.0)
        figures["all_ended_after_seconds"] = round(time.monotonic() - started, 1)
        figures["canceled"] = canceled
        figures["trials"] = sum(len(v["trials"]) for v in ended.values())
        # Everything has a TTL now: the longest is FAILURE_TTL, + the journal's grace (+5 s for
        # its lines), + a reconcile round to drop expired ids from the indexes.
        time.sleep(args.failure_ttl + JOURNAL_GRACE + 5 + 3)
        sampler.done.set()
        sampler.join()
        figures["peak"] = max(sampler.samples, key=lambda s: s["run_keys"])
        figures["after_expiry"] = sample(conn, queue, ids)
        figures["left_after_expiry"] = leftovers(conn, queue, ids)
        clean_registries(Queue(queue, connection=conn, serializer=queueing.SERIALIZER))
        figures["after_rq_maintenance"] = sample(conn, queue, ids)
        figures["left_after_rq_maintenance"] = leftovers(conn, queue, ids)
        figures["samples"] = sampler.samples
        return figures
    finally:
        sampler.done.set()
        workers = [
            m.decode().removeprefix("rq:worker:") for m in conn.smembers(f"rq:workers:{queue}")
        ]
        for proc in reversed(procs):
            stop(proc)
        figures["keys_deleted"] = delete_queue_keys(url, queue, sorted(ids), workers)
        conn.close()


def report(results: dict[str, Any]) -> str:
    rows = [
        [
            label,
            f"{results[name]['used_memory'] / 2**20:.2f}",
            results[name]["db_keys"],
            results[name]["run_keys"],
            f"{results[name]['run_bytes'] / 1024:.1f}",
        ]
        for label, name in (
            ("baseline", "baseline"),
            ("peak", "peak"),
            ("after expiry", "after_expiry"),
            ("after RQ maintenance", "after_rq_maintenance"),
        )
    ]
    table = markdown_table(
        ["moment", "used_memory (MiB)", "keys in db", "keys of the run", "their size (KiB)"], rows
    )
    left = markdown_table(
        ["key", "type", "ttl", "size", "why"],
        [[f"`{k['key']}`", k["type"], k["ttl"], k["size"] or "", k["why"]]
         for k in results["left_after_rq_maintenance"]],
    )  # fmt: skip
    return (
        f"{table}\n\n{results['jobs']} jobs ({results['canceled']['jobs']} canceled while "
        f"queued), {results['sweeps']} sweeps ({results['canceled']['sweeps']} canceled; "
        f"{results['trials']} trials); all ended {results['all_ended_after_seconds']} s after "
        f"the first submission.\n\nkeys of the run left after RQ's maintenance:\n\n{left}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--sweeps", type=int, default=30)
    p.add_argument("--result-ttl", type=int, default=20, help="RESULT_TTL, IDEMPOTENCY_TTL (s)")
    p.add_argument("--failure-ttl", type=int, default=30, help="FAILURE_TTL (s)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds for all to end")
    p.add_argument("--out", type=Path, help="write the results here (default: benchmarks/results)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="digitflow-bench-soak-"))
    url, embedded = redis_url()
    results: dict[str, Any] = {
        "benchmark": "soak",
        "command": "python -m benchmarks.soak "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": now_iso(),
        "machine": machine_info(),
        "jobs": args.jobs,
        "sweeps": args.sweeps,
        "result_ttl": args.result_ttl,
        "failure_ttl": args.failure_ttl,
    }
    try:
        results.update(soak(args, url, tmp))
    finally:
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    results["finished"] = now_iso()
    results["load_average_end"] = [round(v, 2) for v in load_average()]
    text = report(results)
    print("\n" + text)
    results["report_markdown"] = text
    print(f"\nresults: {save_result('soak', results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
