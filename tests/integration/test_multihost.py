"""digitflow over several hosts: every service in its own network namespace (benchmarks/cluster.py).

Hosts: Redis; the object store (moto's S3 server; the registry is ``s3://digitflow/models``, each
host with a download cache of its own: the hosts share nothing but the bucket and Redis); the
trainer API; two worker hosts; two inference hosts; haproxy in front of the inference replicas
(health checks on /readyz, retries with redispatch); the test process is the client, on the
bridge. (benchmarks/scaling.py runs the same cluster on a shared folder too.) Shown, with the
figures printed (run with -s):

* jobs submitted through the API run on both worker hosts and versions stay a gap-free sequence;
* a worker host that dies mid-job (every process in its namespace SIGKILLed) loses nothing: its
  job is failed within the heartbeat grace, no version appears, the next job gets the next number;
* both replicas serve a newly published version within 2 s of its publication;
* under steady prediction load through the balancer, while a version is published and a replica
  is killed and restarted: zero failed requests, and every answer names a version that was the
  registry's default at some instant of [request start - 2 s (the pickup window above),
  response end];
* the object store unreachable for 10 s (its host's link down): predictions go on with zero
  failures; a job that must publish meanwhile waits and publishes once the store is back, or
  fails saying why; every version ever listed is complete (verifies against its manifest).

Needs root and haproxy (scripts/ensure-system-tools.sh); a namespace that cannot be made is a
failure, never a skip. The cluster is torn down (processes, namespaces, bridge) even when a test
fails. Each test uses its own model name and puts back any host it killed, so the tests of this
module pass in any order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from benchmarks.cluster import Cluster, S3Registry
from shared.registry.errors import ModelNotFoundError
from tests.load_support import Sample, Timeline, prediction_load
from tests.trainer_support import LONG, SMALL, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.exclusive]

HEARTBEAT_SECONDS, HEARTBEAT_GRACE = 1, 3
POLL_SECONDS = 0.5  # the shipped REGISTRY_POLL_SECONDS
#: A replica serves a new version within this much of its publication (asserted on its own, and
#: the window in which an answer may still name the previous default): its next poll, then the
#: download from the store, the sha256 check and the load.
SERVED_WITHIN_SECONDS = 2.0
WATCH_INTERVAL = 0.05  # how often the test looks at the registry (one GET on the store)
LOAD_CLIENTS = 4


STORE_DOWN_SECONDS = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, mnist_dir):
    """The whole deployment, one host per service; torn down whatever happens."""
    workdir = tmp_path_factory.mktemp("cluster")
    registry = S3Registry()
    c = Cluster(
        workdir,
        data_dir=mnist_dir,
        registry=registry,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        heartbeat_grace=HEARTBEAT_GRACE,
        registry_poll_seconds=POLL_SECONDS,
    )
    try:
        c.up(workers=2, replicas=2)
        yield c
    except BaseException:
        print(c.logs_tail())
        raise
    finally:
        c.close()


# --- helpers ------------------------------------------------------------------------------------


def submit(c: Cluster, model: str, config: dict) -> str:
    r = requests.post(f"{c.api_url}/v1/jobs", json={"model": model, **config}, timeout=10)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def job(c: Cluster, job_id: str) -> dict:
    r = requests.get(f"{c.api_url}/v1/jobs/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(c: Cluster, job_id: str, statuses: set[str], timeout: float = 90) -> dict:
    try:
        return wait_for(
            lambda: j if (j := job(c, job_id))["status"] in statuses else None,
            timeout,
            interval=0.1,
            what=f"job {job_id} to be {statuses}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{job(c, job_id)}\n{c.logs_tail()}") from None


def versions(c: Cluster, model: str) -> list[int]:
    """The registry's versions of `model` as the test sees them (one GET on S3)."""
    try:
        return c.observer().versions(model)
    except ModelNotFoundError:
        return []


def start_load(
    url: str, samples: list[Sample], stop: threading.Event, n: int = LOAD_CLIENTS
) -> list:
    """`n` keep-alive clients POSTing one image to `url`, bounded in count and time."""
    threads = [
        threading.Thread(
            target=prediction_load,
            args=(url, stop, samples),
            kwargs={"hard_stop_seconds": 90, "max_requests": 6000},
            daemon=True,
        )
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    return threads


def watch_for_version(c: Cluster, model: str, version: int, timeout: float) -> tuple[float, float]:
    """(last look without it, first look with it): the publication happened in between."""
    before = time.monotonic()
    deadline = before + timeout
    while time.monotonic() < deadline:
        if version in versions(c, model):
            return before, time.monotonic()
        before = time.monotonic()
        time.sleep(WATCH_INTERVAL)
    raise AssertionError(f"{model}:{version} not published in {timeout} s\n{c.logs_tail()}")


# --- the scenarios ------------------------------------------------------------------------------


def test_jobs_run_on_both_worker_hosts_and_versions_stay_gap_free(cluster):
    c, model, n = cluster, "spread", 4
    ids = [submit(c, model, SMALL) for _ in range(n)]
    jobs = [wait_job(c, i, {"finished", "failed"}) for i in ids]
    per_host = Counter(c.worker_host(j["worker"]) for j in jobs)
    numbers = sorted(j["model_version"] for j in jobs)
    print(f"\nmultihost jobs: {n} jobs, per worker host {dict(per_host)}, versions {numbers}")
    assert [j["status"] for j in jobs] == ["finished"] * n, jobs
    assert set(per_host) == set(c.workers), per_host
    assert numbers == list(range(1, n + 1))
    assert versions(c, model) == numbers


def test_both_replicas_serve_a_new_version_within_2_s(cluster):
    c, model = cluster, "fresh"
    lags: dict[str, list[float]] = {r: [] for r in c.replicas}
    floor: dict[str, list[float]] = {r: [] for r in c.replicas}
    for version in (1, 2):  # a new model's first version, then a new version of a served one
        job_id = submit(c, model, SMALL)
        before, seen = watch_for_version(c, model, version, timeout=90)
        # probed every 0.1 s: the probes must not slow down the replicas they time
        served = c.wait_served_everywhere(model, version, timeout=10, interval=0.1)
        for replica, at in served.items():
            lags[replica].append(at - before)  # an upper bound: publication was after `before`
            floor[replica].append(at - seen)  # a lower bound
        assert wait_job(c, job_id, {"finished", "failed"})["status"] == "finished"
    figures = {
        r: [f"{lo:.2f}-{hi:.2f} s" for lo, hi in zip(floor[r], lags[r], strict=True)]
        for r in c.replicas
    }
    print(f"\nmultihost publish-to-served (v1, v2; poll {POLL_SECONDS} s): {figures}")
    assert all(lag <= SERVED_WITHIN_SECONDS for values in lags.values() for lag in values), lags


def test_a_worker_host_dying_mid_job_loses_nothing(cluster):
    c, model = cluster, "crash"
    assert wait_job(c, submit(c, model, SMALL), {"finished", "failed"})["model_version"] == 1

    job_id = submit(c, model, LONG)
    running = wait_for(
        lambda: j if ((j := job(c, job_id))["progress"] or {}).get("epoch", 0) >= 1 else None,
        60,
        what="the long job's first epoch",
    )
    victim = c.worker_host(running["worker"])
    killed_at = time.monotonic()
    killed = c.hosts[victim].kill_all()
    failed = wait_job(c, job_id, {"failed", "finished"}, timeout=30)
    to_failed = time.monotonic() - killed_at
    survivor_job = wait_job(c, submit(c, model, SMALL), {"finished", "failed"})
    print(
        f"\nmultihost worker host lost: {victim} ({killed} processes SIGKILLed) at epoch "
        f"{running['progress']['epoch']}; job failed after {to_failed:.1f} s (heartbeat "
        f"{HEARTBEAT_SECONDS} s + grace {HEARTBEAT_GRACE} s); next job on "
        f"{c.worker_host(survivor_job['worker'])} published version "
        f"{survivor_job['model_version']}"
    )
    try:
        assert failed["status"] == "failed" and "died" in failed["error"], failed
        assert failed["model_version"] is None
        assert to_failed <= HEARTBEAT_SECONDS + HEARTBEAT_GRACE + 3, to_failed
        assert survivor_job["status"] == "finished"
        assert survivor_job["worker"] and c.worker_host(survivor_job["worker"]) != victim
        assert survivor_job["model_version"] == 2
        assert versions(c, model) == [1, 2]  # nothing partial, no gap
        listing = requests.get(f"{c.replica_url(c.replicas[0])}/v1/models/{model}", timeout=5)
        assert [v["version"] for v in listing.json()["versions"]] in ([1, 2], [2, 1])
    finally:
        c.start_worker(victim)  # put the host back for the other tests


def test_steady_load_through_the_balancer_while_publishing_and_restarting_a_replica(cluster):
    c, model = cluster, "served"
    assert wait_job(c, submit(c, model, SMALL), {"finished", "failed"})["model_version"] == 1
    c.wait_served_everywhere(model, 1, timeout=10)
    start_stats = c.balancer_stats()

    samples: list[Sample] = []
    stop = threading.Event()
    timeline = Timeline(first=1)
    victim = c.replicas[0]
    events: dict[str, float] = {}
    threads = start_load(f"{c.balancer_url}/v1/models/{model}/predict", samples, stop)
    try:
        time.sleep(1.0)
        job_id = submit(c, model, SMALL)
        before, seen = watch_for_version(c, model, 2, timeout=90)
        timeline.record(before, seen, 2)
        events["published"] = seen
        time.sleep(1.0)
        events["killed"] = time.monotonic()
        c.hosts[victim].kill_all()
        events["reaped"] = time.monotonic()
        time.sleep(1.5)
        events["restarting"] = time.monotonic()
        c.start_inference(victim)
        wait_for(
            lambda: c.balancer_stats()[f"inference/{victim}"]["status"] == "UP",
            60,
            interval=0.05,
            what=f"the balancer to see {victim} UP again",
        )
        events["back"] = time.monotonic()
        served_before = int(c.balancer_stats()[f"inference/{victim}"]["stot"])
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert wait_job(c, job_id, {"finished", "failed"})["status"] == "finished"
    end_stats = c.balancer_stats()

    # A response the victim had begun to send when it was SIGKILLed cannot be retried by the
    # balancer (its headers went out already): those requests, in flight at the kill, may break,
    # at most one per client. Every other request must succeed.
    in_flight_at_kill = [
        s
        for s in samples
        if s.status is None and s.start <= events["reaped"] and s.end >= events["killed"]
    ]
    failed = [s for s in samples if s.status != 200 and s not in in_flight_at_kill]
    stale = [(timeline.staleness(s), s) for s in samples if s.status == 200]
    late = [(lag, s) for lag, s in stale if lag > SERVED_WITHIN_SECONDS]
    t0 = samples[0].start if samples else 0.0

    def counter(row: str, key: str) -> int:
        return int(end_stats[row][key] or 0) - int(start_stats[row][key] or 0)

    figures = {
        "requests": len(samples),
        "failed": len(failed),
        "cut_at_kill": len(in_flight_at_kill),
        "per_version": dict(Counter(s.version for s in samples)),
        "per_replica": {r: counter(f"inference/{r}", "stot") for r in c.replicas},
        "balancer_retries": counter("inference/BACKEND", "wretr"),
        "balancer_redispatches": counter("inference/BACKEND", "wredis"),
        "events_s": {k: round(v - t0, 2) for k, v in events.items()},
        "max_staleness_s": round(max((lag for lag, _ in stale), default=0.0), 3),
        "p50_ms": round(sorted((s.end - s.start) * 1000 for s in samples)[len(samples) // 2], 1),
    }
    print(f"\nmultihost balancer load: {figures}")
    assert failed == [], failed[:5]
    assert len(in_flight_at_kill) <= LOAD_CLIENTS, in_flight_at_kill
    assert late == [], f"answers from a version no longer the default: {late[:5]}"
    assert len(samples) > 200, figures
    assert int(end_stats[f"inference/{victim}"]["stot"]) > served_before, "no traffic after restart"
    assert figures["per_version"].get(2, 0) > 0, figures


def test_the_object_store_down_for_10_s_loses_and_half_publishes_nothing(cluster):
    c, model = cluster, "outage"
    assert wait_job(c, submit(c, model, SMALL), {"finished", "failed"})["model_version"] == 1
    c.wait_served_everywhere(model, 1, timeout=10)

    samples: list[Sample] = []
    stop = threading.Event()
    threads = start_load(f"{c.balancer_url}/v1/models/{model}/predict", samples, stop, n=2)
    try:
        time.sleep(1.0)
        down_at = time.monotonic()
        c.store_down()
        job_id = submit(c, model, SMALL)  # trains on a worker host; must publish meanwhile
        phases: set[str] = set()
        readyz: list[tuple[float, int, bool | None]] = []  # (time, status, store reachable)
        while time.monotonic() < down_at + STORE_DOWN_SECONDS:
            j = job(c, job_id)
            phases.add(f"{j['status']}/{j.get('phase')}")
            r = requests.get(c.replica_url(c.replicas[0]) + "/readyz", timeout=10)
            reachable = (r.json().get("registry") or {}).get("reachable")
            readyz.append((time.monotonic() - down_at, r.status_code, reachable))
            time.sleep(0.25)
        c.store_up()
        up_at = time.monotonic()
        final = wait_job(c, job_id, {"finished", "failed"})
        appeared = (
            watch_for_version(c, model, 2, timeout=30)[1] if final["model_version"] else up_at
        )
        time.sleep(1.0)
    finally:
        c.store_up()
        stop.set()
        for t in threads:
            t.join(15)

    failed = [s for s in samples if s.status != 200]
    during = [s for s in samples if down_at <= s.start <= up_at]
    registry = c.observer()
    listed = versions(c, model)
    manifests = [registry.verify(model, v)["version"] for v in listed]
    replica_view = requests.get(f"{c.replica_url(c.replicas[1])}/v1/models/{model}", timeout=5)
    stale_after = [s.start - appeared for s in samples if s.version == 1 and s.start > appeared]
    unreachable_at = [t for t, _, reachable in readyz if reachable is False]
    print(
        f"\nmultihost object store down {STORE_DOWN_SECONDS} s: {len(during)} predictions "
        f"during the outage, {len(failed)} failed of {len(samples)}; replica /readyz statuses "
        f"{sorted({status for _, status, _ in readyz})}, store reported unreachable "
        f"{f'from +{min(unreachable_at):.1f} s' if unreachable_at else 'not yet'}; "
        f"job phases seen {sorted(phases)}; "
        f"job {final['status']} (version {final['model_version']}, error {final['error']!r}); "
        f"version 2 listed {appeared - up_at:+.2f} s after the store came back; last answer "
        f"from version 1 {max(stale_after, default=0.0):.2f} s after that"
    )
    assert failed == [], failed[:5]
    assert len(during) > 50, len(during)
    assert {s.version for s in during} == {1}
    # a replica serving what it loaded stays in the balancer's rotation
    assert {status for _, status, _ in readyz} == {200}, readyz
    assert not any(p.startswith("finished") for p in phases)  # nothing claimed meanwhile
    if final["status"] == "finished":  # it waited, and published once the store was back
        assert final["model_version"] == 2 and listed == manifests == [1, 2], (final, listed)
    else:  # or it failed, saying why, and published nothing
        assert "store" in final["error"] and listed == manifests == [1], (final, listed)
    assert [v["version"] for v in replica_view.json()["versions"]] in (listed, listed[::-1])
    assert all(v["status"] == "ok" for v in replica_view.json()["versions"])
