"""Model lifecycle and queue: how fast a new version reaches every worker, and what the queue costs.

    python -m benchmarks.lifecycle [--quick] [--switches N] [--latency-jobs N] [--pairs N]
                                   [--baseline-tree DIR] [--no-save]

Everything runs on loopback, in a temporary folder, with real processes: the inference service
and the trainer API under gunicorn (their own gunicorn.conf.py, default settings), a real RQ
worker (`python -m trainer_service worker`) and Redis ($REDIS_URL, else
redis://127.0.0.1:6379/13, else an embedded redis-server). Only keys of this run's own queue
(`bench-lifecycle-<random>`) are written and deleted; nothing is flushed.

1. Model switch. A steady predict load (single images, fixed rate, fresh connection per request
   as a sync gunicorn worker wants) runs for the whole section, together with a /readyz prober
   (every response names the worker pid and the version it serves by default). Every few
   seconds (random phase against the poll) the default version changes, alternately by
   publishing a new version into the registry and, after that, by pinning through the trainer
   API (PUT /v1/models/<name>/pin), always to a version no worker has loaded. Figure: seconds
   from the publish returning / the PUT being sent until a probe *sent after* that instant got
   the new version from EVERY worker (an upper bound; the lower bound, from the last probe that
   still saw the old version, is kept in the JSON). Predict latency and errors are split into
   "during a switch" (from the change until every worker switched, +0.25 s) and "steady" (the
   rest), same load, same run.
2. Queue. An idle worker; `POST /v1/jobs` through the trainer API, then the job view
   (`GET /v1/jobs/<id>`, polled every 10 ms) gives the time until the worker starts the job
   (RQ's started_at), until the data is loaded (the phase turns to "training": an upper bound by
   one poll), until the first epoch begins (its history entry seen, minus its own duration). Then the default job run by the worker (POST until RQ's
   ended_at) against the same config trained by the command line (`python -m trainer_service
   train --report DIR`: the job also writes the report), interleaved, alternating who goes first.
   `--baseline-tree DIR` adds a worker running another checkout (e.g. a git worktree of the
   commit before a change) on its own queue, measured interleaved with the current one.

Results: markdown tables on stdout, raw data in benchmarks/results/lifecycle-<date>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    Interference,
    cpu_busy_ticks,
    default_data_dir,
    machine_info,
    markdown_table,
    now_iso,
    stop_process_group,
    write_result,
)
from shared.blas import BLAS_THREAD_VARIABLES
from shared.redis_embedded import free_port

PYTHON = sys.executable
INFERENCE_APP = "inference_service.app:create_app()"
INFERENCE_CONF = "inference_service/gunicorn.conf.py"
TRAINER_APP = "trainer_service.api.app:create_app()"
TRAINER_CONF = "trainer_service/api/gunicorn.conf.py"
MODEL = "digits"
#: Settings whose defaults are measured: removed from the services' environment.
DEFAULTED = (
    "REGISTRY_POLL_SECONDS",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "MODEL_CACHE_SIZE",
    "GUNICORN_CMD_ARGS",
    "WORKER_PRELOAD_DATASETS",
    "JOB_HEARTBEAT_SECONDS",
    "JOB_HEARTBEAT_GRACE",
)
SWITCH_TARGET_S = 1.0
QUEUE_START_TARGET_S = 0.100
OVERHEAD_TARGET = 0.05
#: A tiny job for the start-latency series: the data is still loaded in full (train_limit
#: applies after loading), so the time until training begins is the default job's.
TINY_JOB = {"hidden_layers": [32], "epochs": 1, "train_limit": 1000}


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    log_file: Any

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited early ({self.popen.returncode}):\n{self.tail()}"
            )


def start(
    name: str, args: list[str], env: dict[str, str], tmp: Path, cwd: Path = REPO_ROOT
) -> Proc:
    log_path = tmp / f"{name}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
    popen = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Proc(name, popen, log_path, log_file)


def stop(proc: Proc, timeout: float = 20.0) -> None:
    """Stop a process we started and its whole process group (own session)."""
    stop_process_group(proc.popen, timeout)
    proc.log_file.close()


def wait_until(
    predicate, timeout: float, what: str, interval: float = 0.05, proc: Proc | None = None
):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.check()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def request(
    method: str,
    port: int,
    path: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_ok(port: int, path: str) -> bool:
    try:
        return request("GET", port, path, timeout=2)[0] == 200
    except OSError:
        return False


def children_of(pid: int) -> set[int]:
    """Direct children of `pid` (gunicorn's workers), from /proc."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTED}
    env["PYTHONUNBUFFERED"] = "1"
    env["XDG_RUNTIME_DIR"] = str(tmp)  # gunicorn's control socket folder (disabled anyway)
    env.setdefault("LOG_LEVEL", "INFO")
    return env


def start_gunicorn(
    name: str, app: str, conf: str, env: dict[str, str], tmp: Path
) -> tuple[Proc, int]:
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "-c", conf, "--bind", f"127.0.0.1:{port}", app]
    proc = start(name, args, env, tmp)
    wait_until(lambda: http_ok(port, "/healthz"), 60, f"{name} /healthz", 0.1, proc)
    return proc, port


class TreeCPU:
    """Share of the machine's CPU used by processes other than `pids` (ours) over a block.

    `reaped_children`: count the finished children our processes waited for as ours too (RQ's
    work horses, one forked per job: their time lands in the worker's cutime/cstime)."""

    def __init__(self, pids: list[int], *, reaped_children: bool = False) -> None:
        self.pids = pids
        self.fields = 4 if reaped_children else 2

    def _ours(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                # utime, stime (+ cutime, cstime), in ticks
                total += sum(int(v) for v in fields[11 : 11 + self.fields])
            except (OSError, IndexError, ValueError):
                pass
        return total

    def __enter__(self) -> TreeCPU:
        self.busy0, self.total0 = cpu_busy_ticks()
        self.ours0 = self._ours()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1, _ = cpu_busy_ticks()
        ours = self._ours() - self.ours0
        wall = time.perf_counter() - self.wall0
        ncpu = os.cpu_count() or 1
        hz = os.sysconf("SC_CLK_TCK")
        self.ours_cores = ours / hz / wall
        self.share = max(0.0, (busy1 - self.busy0 - ours) / hz / (wall * ncpu))


# ---------------------------------------------------------------------------------------------
# statistics


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 1000:.{digits}f}"


def sec(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# 1. model switch


def model_file(tmp: Path, seed: int, hidden: list[int]) -> tuple[Path, dict[str, Any]]:
    """An untrained model of the given architecture saved in `tmp`, and its manifest extras
    (size is what uploading and loading cost; the seed makes each one's weights differ)."""
    import numpy as np

    from shared.config import TrainConfig
    from shared.modelfile import save_model

    config = TrainConfig(model=MODEL, hidden_layers=hidden, seed=seed)
    model = config.build_model(mean=np.full(784, 0.01 * seed, dtype=np.float32))
    path = tmp / f"w-{uuid.uuid4().hex}.npz"
    save_model(path, model)
    return path, {"config": config.public_dict(), "metrics": {}}


def publish_version(registry: Any, tmp: Path, seed: int, hidden: list[int]) -> int:
    """Publish an untrained model of the default architecture (size is what loading costs)."""
    path, meta = model_file(tmp, seed, hidden)
    try:
        return registry.publish(MODEL, path, meta)
    finally:
        path.unlink(missing_ok=True)


def _load_main(
    port: int, rate: float, threads: int, stop_at: float, stop_event: Any, out_path: str
) -> None:
    """Load generator (own process): `threads` threads, each sending single-image predicts at
    `rate`/threads per second on a fixed schedule. Records (t_send, seconds, status, version)."""
    import random as _random

    rng = _random.Random(1)
    body = json.dumps({"instances": [[rng.random() for _ in range(784)]]}).encode()
    records: list[tuple[float, float, int, int, str]] = []
    lock = threading.Lock()
    interval = threads / rate

    def run(offset: float) -> None:
        local = []
        next_at = time.monotonic() + offset
        while True:
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            if time.time() >= stop_at or stop_event.is_set():
                break
            next_at += interval
            t_send = time.time()
            t0 = time.perf_counter()
            try:
                status, headers, _ = request("POST", port, f"/v1/models/{MODEL}/predict", body)
                version = int(headers.get("x-model-version", -1))
                err = ""
            except Exception as exc:  # any failure is recorded, never fatal
                status, version, err = 0, -1, f"{type(exc).__name__}: {exc}"
            local.append((t_send, time.perf_counter() - t0, status, version, err))
        with lock:
            records.extend(local)

    pool = [threading.Thread(target=run, args=(i * interval / threads,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    Path(out_path).write_text(json.dumps(records))


class Prober:
    """Threads asking /readyz on fresh connections: which worker (pid) serves which version."""

    def __init__(self, port: int, threads: int = 2, pause: float = 0.01) -> None:
        self.port = port
        self.pause = pause
        self.records: list[tuple[float, float, int, int | None]] = []  # t_send, t_recv, pid, v
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Prober:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t_send = time.time()
            try:
                _, _, data = request("GET", self.port, "/readyz", timeout=5)
                info = json.loads(data)
                serving = (info.get("models", {}).get(MODEL) or {}).get("serving")
                self.records.append((t_send, time.time(), int(info["pid"]), serving))
            except Exception:
                self.errors += 1
            self._stop.wait(self.pause)

    def switched(
        self, t0: float, target: int, pids: set[int]
    ) -> dict[int, tuple[float, float]] | None:
        """pid → (lower, upper) seconds after t0 at which that worker served `target`, once
        every pid has answered a probe sent after t0 with it; None until then."""
        recs = list(self.records)
        out: dict[int, tuple[float, float]] = {}
        for pid in pids:
            mine = sorted((r for r in recs if r[2] == pid), key=lambda r: r[0])
            first_new = next((r for r in mine if r[0] >= t0 and r[3] == target), None)
            if first_new is None:
                return None
            last_old = [r for r in mine if r[0] < first_new[0] and r[3] != target]
            lower = max(0.0, last_old[-1][0] - t0) if last_old else 0.0
            out[pid] = (lower, first_new[1] - t0)
        return out


def bench_switch(
    args: argparse.Namespace, tmp: Path, base: dict[str, str], registry: Any
) -> dict[str, Any]:
    """The switch section on its own registry, with its own trainer API (for the pins)."""
    env = {**base, "MODEL_REGISTRY_DIR": str(registry.root)}
    trainer, trainer_port = start_gunicorn("trainer-api", TRAINER_APP, TRAINER_CONF, env, tmp)
    try:
        return _bench_switch(args, tmp, trainer_port, registry)
    finally:
        stop(trainer)


def _bench_switch(
    args: argparse.Namespace, tmp: Path, trainer_port: int, registry: Any
) -> dict[str, Any]:
    hidden = [512, 256]
    registry.root.mkdir(parents=True, exist_ok=True)
    first = publish_version(registry, tmp, 1, hidden)
    env = base_env(tmp)
    env.update(
        MODEL_REGISTRY_DIR=str(registry.root),
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "prom"),
    )
    if args.poll_seconds is not None:
        env["REGISTRY_POLL_SECONDS"] = str(args.poll_seconds)
    (tmp / "prom").mkdir(exist_ok=True)
    proc, port = start_gunicorn("inference", INFERENCE_APP, INFERENCE_CONF, env, tmp)
    try:
        pids = wait_until(lambda: children_of(proc.popen.pid), 30, "gunicorn workers", 0.1, proc)
        time.sleep(0.5)
        pids = children_of(proc.popen.pid)

        def all_ready() -> bool:
            seen = {}
            for _ in range(4 * len(pids)):
                status, _, data = request("GET", port, "/readyz")
                info = json.loads(data)
                seen[info["pid"]] = status == 200
            return set(seen) >= pids and all(seen.values())

        wait_until(all_ready, 60, "every inference worker ready", 0.2, proc)
        load_out = tmp / "load.json"
        kinds = ["publish"] * args.switches + ["pin"] * args.switches
        budget = 5.0 + len(kinds) * (args.gap + 0.5 + 3.0)
        stop_at = time.time() + budget
        ctx = mp.get_context("spawn")
        stop_event = ctx.Event()
        loader = ctx.Process(
            target=_load_main,
            args=(port, args.rate, 2, stop_at, stop_event, str(load_out)),
            daemon=True,
        )
        switches: list[dict[str, Any]] = []
        poll = args.poll_seconds if args.poll_seconds is not None else 0.5
        rng = random.Random(6)
        loader.start()
        ours = [os.getpid(), proc.popen.pid, loader.pid, *pids]
        with Prober(port) as prober, TreeCPU(ours) as busy:
            time.sleep(2.0)  # steady state before the first switch
            started_at = time.time()
            next_pin = first
            for kind in kinds:
                time.sleep(args.gap + rng.uniform(0, poll))
                if kind == "publish":
                    path_tmp = tmp / "w"
                    path_tmp.mkdir(exist_ok=True)
                    # Build the file first, so t0 is the publication itself.
                    target = _publish_timed(registry, path_tmp, len(switches) + 2, hidden)
                    target, t0 = target
                    extra = {}
                else:
                    target = next_pin
                    next_pin += 1
                    t0 = time.time()
                    status, _, _ = request(
                        "PUT",
                        trainer_port,
                        f"/v1/models/{MODEL}/pin",
                        json.dumps({"version": target}).encode(),
                    )
                    extra = {"api_seconds": time.time() - t0, "api_status": status}
                    if status != 200:
                        raise RuntimeError(f"pin to {target}: HTTP {status}")
                per_worker = wait_until(
                    lambda t0=t0, target=target: prober.switched(t0, target, pids),
                    15,
                    f"every worker to serve version {target}",
                    0.01,
                    proc,
                )
                upper = max(v[1] for v in per_worker.values())
                lower = max(v[0] for v in per_worker.values())
                switches.append(
                    {
                        "kind": kind,
                        "version": target,
                        "t0": t0,
                        "seconds": upper,
                        "lower_bound_seconds": lower,
                        "per_worker": {str(p): list(v) for p, v in per_worker.items()},
                        **extra,
                    }
                )
                print(
                    f"  switch {len(switches):2d} ({kind:7s} -> v{target}): every worker in "
                    f"{upper * 1000:.0f} ms (>= {lower * 1000:.0f} ms)",
                    flush=True,
                )
            finished_at = time.time()
            time.sleep(1.0)
            stop_event.set()
            loader.join(30)
        loader.join(budget + 30)
        if loader.is_alive():
            loader.terminate()
        if not load_out.exists():
            raise RuntimeError("the load generator wrote no results")
        records = json.loads(load_out.read_text())
        request("DELETE", trainer_port, f"/v1/models/{MODEL}/pin")
    finally:
        stop(proc)

    return summarize_switch(switches, records, prober, started_at, finished_at, busy, args, pids)


def poll_cost(tmp: Path, versions: int = 10) -> dict[str, Any]:
    """In-process: CPU of one registry poll that finds no change, and of loading one version,
    for one model with `versions` versions (what a faster REGISTRY_POLL_SECONDS costs)."""
    from inference_service.serving import ModelCache
    from inference_service.telemetry import Telemetry
    from shared.registry import Registry

    registry = Registry(tmp / "poll-cost")
    registry.root.mkdir(parents=True)
    for seed in range(versions):
        publish_version(registry, tmp, seed, [512, 256])
    cache = ModelCache(registry, telemetry=Telemetry(), poll_seconds=0)
    cache.refresh()
    n = 2000
    t = time.process_time()
    for _ in range(n):
        cache.refresh()
    per_poll = (time.process_time() - t) / n
    t = time.perf_counter()
    cache.versions.load(MODEL, 1)
    load = time.perf_counter() - t
    shutil.rmtree(registry.root, ignore_errors=True)
    return {
        "versions": versions,
        "cpu_per_unchanged_poll_s": per_poll,
        "cpu_share_of_a_core_at": {str(p): per_poll / p for p in (0.5, 0.25, 0.1)},
        "load_one_version_s": load,
    }


def _publish_timed(registry: Any, tmp: Path, seed: int, hidden: list[int]) -> tuple[int, float]:
    """Publish, returning (version, time the registry call returned)."""
    version = publish_version(registry, tmp, seed, hidden)
    return version, time.time()


def summarize_switch(
    switches: list[dict[str, Any]],
    records: list[list[Any]],
    prober: Prober,
    started_at: float,
    finished_at: float,
    busy: Interference,
    args: argparse.Namespace,
    pids: set[int],
) -> dict[str, Any]:
    windows = [(s["t0"], s["t0"] + s["seconds"] + 0.25) for s in switches]

    def in_switch(t: float) -> bool:
        return any(a <= t < b for a, b in windows)

    during = [r for r in records if started_at <= r[0] <= finished_at and in_switch(r[0])]
    steady = [r for r in records if started_at <= r[0] <= finished_at and not in_switch(r[0])]

    def figures(rs: list[list[Any]]) -> dict[str, Any]:
        lat = [r[1] for r in rs if r[2] == 200]
        errors = [r for r in rs if r[2] != 200]
        return {
            "requests": len(rs),
            "errors": len(errors),
            "error_examples": sorted({f"{r[2]} {r[4]}" for r in errors})[:5],
            "p50_s": pct(lat, 50),
            "p99_s": pct(lat, 99),
            "max_s": max(lat) if lat else None,
        }

    # A predict answered with a version older than the current target, although it was sent
    # after every worker had switched, would mean a worker went back: must be 0.
    stale = 0
    for i, s in enumerate(switches):
        done = s["t0"] + s["seconds"]
        end = switches[i + 1]["t0"] if i + 1 < len(switches) else finished_at
        stale += sum(
            1 for r in records if done < r[0] < end and r[2] == 200 and r[3] != s["version"]
        )

    def kind_stats(kind: str) -> dict[str, Any]:
        vals = [s["seconds"] for s in switches if s["kind"] == kind]
        return {
            "n": len(vals),
            "p50_s": med(vals),
            "max_s": max(vals) if vals else None,
            "lower_bound_p50_s": med(
                [s["lower_bound_seconds"] for s in switches if s["kind"] == kind]
            ),
        }

    return {
        "settings": {
            "registry_poll_seconds": args.poll_seconds
            if args.poll_seconds is not None
            else "default (0.5)",
            "gunicorn_workers": len(pids),
            "model": "784-512-256-10 float32 (default architecture), untrained",
            "predict_rate_per_s": args.rate,
            "readyz_probe": "2 threads, 10 ms pause",
            "gap_s": args.gap,
        },
        "publish": kind_stats("publish"),
        "pin": kind_stats("pin"),
        "switches": switches,
        "predict_steady": figures(steady),
        "predict_during_switch": figures(during),
        "stale_after_switch": stale,
        "probe_errors": prober.errors,
        "other_processes_cpu_share": round(busy.share, 3),
        "benchmark_and_service_cores": round(busy.ours_cores, 2),
    }


# ---------------------------------------------------------------------------------------------
# 2. queue


@dataclass
class Variant:
    name: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)
    queue: str = ""
    api: Proc | None = None
    api_port: int = 0
    worker: Proc | None = None
    registry_dir: Path | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)


def redis_url() -> tuple[str, Any]:
    """$REDIS_URL, else db 13 of a local Redis, else an embedded one: (url, embedded or None)."""
    import redis

    for url in (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/13"):
        if not url:
            continue
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url, None
        except redis.exceptions.RedisError:
            continue
    from shared.redis_embedded import EmbeddedRedis

    embedded = EmbeddedRedis().start()
    return embedded.url, embedded


def delete_queue_keys(url: str, queue: str, job_ids: list[str], worker_names: list[str]) -> int:
    """Delete exactly what this run's queue produced (RQ's keys for our jobs/queue/workers)."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        keys: set[bytes] = set(r.scan_iter(match=f"*{queue}*", count=1000))
        for job_id in job_ids:
            keys.update(r.scan_iter(match=f"rq:*{job_id}*", count=1000))
        for name in worker_names:
            keys.update(r.scan_iter(match=f"rq:worker:{name}*", count=1000))
        if keys:
            r.delete(*keys)
        for name in worker_names:
            r.srem("rq:workers", f"rq:worker:{name}")
        r.srem("rq:queues", f"rq:queue:{queue}")
        return len(keys)
    finally:
        r.close()


def ts(iso: str | None) -> float | None:
    """Unix seconds from the API's ISO 8601 times (``2026-01-01T12:00:00.123456Z``)."""
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def train_seconds(variant: Variant, job: dict[str, Any]) -> float | None:
    """The training time the published version's manifest records (as the CLI reports it)."""
    if job["status"] != "finished" or variant.registry_dir is None:
        return None
    from shared.registry import Registry

    manifest = Registry(variant.registry_dir).manifest(job["model"], job["model_version"])
    return manifest["train_seconds"]


def run_job(variant: Variant, config: dict[str, Any], kind: str) -> dict[str, Any]:
    """POST a job, follow it through the API to the end, return its timings (seconds after the
    POST was sent). RQ's enqueued/started/ended times come from the job view; when the data was
    loaded (phase "training") and when the first epoch ended (its history) are seen by polling
    the job view every 10 ms, so they are upper bounds by up to one poll."""
    body = json.dumps(config).encode()
    t_post = time.time()
    status, _, data = request("POST", variant.api_port, "/v1/jobs", body)
    t_accepted = time.time()
    if status != 202:
        raise RuntimeError(f"POST /v1/jobs: HTTP {status}: {data[:300]!r}")
    location = json.loads(data)["location"]
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 900
    while True:
        status, _, data = request("GET", variant.api_port, location)
        now = time.time()
        if status != 200:
            raise RuntimeError(f"GET {location}: HTTP {status}: {data[:300]!r}")
        job = json.loads(data)
        if job["phase"] in ("training", "publishing", "published") or job["history"]:
            seen.setdefault("data_loaded", now)
        if job["history"]:
            seen.setdefault("first_epoch_done", now)
        if job["status"] in ("finished", "failed", "stopped", "canceled"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['job_id']} did not finish in time")
        variant.worker.check()
        time.sleep(0.01 if "first_epoch_done" not in seen else 0.1)

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t_post

    first_done = seen.get("first_epoch_done")
    history = job["history"]
    return {
        "variant": variant.name,
        "kind": kind,
        "job_id": job["job_id"],
        "status": job["status"],
        "config": config,
        "api_seconds": t_accepted - t_post,
        "enqueued": rel(ts(job["enqueued_at"])),
        "started": rel(ts(job["started_at"])),
        "data_loaded": rel(seen.get("data_loaded")),
        "first_epoch_begins": rel(first_done - history[0]["seconds"] if first_done else None),
        "ended": rel(ts(job["ended_at"])),
        "train_seconds": train_seconds(variant, job),
        "model_version": job["model_version"],
        "error": job["error"],
    }


def run_cli(
    variant: Variant, config: dict[str, Any], tmp: Path, env: dict[str, str]
) -> dict[str, Any]:
    out = tmp / f"cli-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    args = [PYTHON, "-m", "trainer_service", "train", "--out", str(out / "model.npz")]
    args += ["--report", str(out / "report"), "--json"]
    for key, value in config.items():
        flag = {"hidden_layers": "--hidden", "train_limit": "--train-limit"}.get(key, f"--{key}")
        args += [flag, *map(str, value if isinstance(value, list) else [value])]
    t0 = time.perf_counter()
    done = subprocess.run(
        args, cwd=variant.tree, env=env, capture_output=True, text=True, timeout=900
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"CLI train failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return {
        "kind": "cli",
        "config": config,
        "wall_seconds": wall,
        "train_seconds": summary["train_seconds"],
    }


def wait_worker_idle(url: str, variant: Variant) -> None:
    import redis

    conn = redis.Redis.from_url(url)
    try:

        def idle() -> bool:
            names = [n.decode() for n in conn.smembers(f"rq:workers:{variant.queue}")]
            return bool(names) and all(
                (conn.hget(n, "state") or b"").decode() == "idle" for n in names
            )

        wait_until(idle, 120, f"worker {variant.name} registered and idle", 0.05, variant.worker)
    finally:
        conn.close()


def bench_queue(
    args: argparse.Namespace, tmp: Path, url: str, variants: list[Variant]
) -> dict[str, Any]:
    data_dir = args.data_dir
    env = base_env(tmp)
    for var in BLAS_THREAD_VARIABLES:  # CLI and worker both train on every core, their own default
        env.pop(var, None)
    env.update(MNIST_DATA_DIR=str(data_dir), REDIS_URL=url, API_TOKEN="")
    worker_names = []
    try:
        for v in variants:
            v.queue = f"bench-lifecycle-{uuid.uuid4().hex[:10]}"
            v.registry_dir = tmp / f"models-{v.name}"
            venv = {
                **env,
                **v.env,
                "RQ_QUEUE": v.queue,
                "MODEL_REGISTRY_DIR": str(v.registry_dir),
            }
            venv["PYTHONPATH"] = str(v.tree)
            v.api, v.api_port = start_gunicorn(
                f"api-{v.name}", TRAINER_APP, TRAINER_CONF, venv, tmp
            )
            name = f"{v.queue}-w"
            worker_names.append(name)
            v.worker = start(
                f"worker-{v.name}",
                [PYTHON, "-m", "trainer_service", "worker", "--name", name],
                venv,
                tmp,
                cwd=v.tree,
            )
        t_ready = {}
        for v in variants:
            t0 = time.monotonic()
            wait_worker_idle(url, v)
            t_ready[v.name] = time.monotonic() - t0
        time.sleep(1.0)
        rss = {v.name: rss_mib(v.worker.popen.pid) for v in variants}

        cli_env = {**env, "MODEL_REGISTRY_DIR": str(tmp / "models-cli")}
        latency_config = dict(TINY_JOB)
        pair_config = dict(TINY_JOB) if args.quick else {}
        for i in range(args.latency_jobs):
            order = variants[i % len(variants) :] + variants[: i % len(variants)]
            for v in order:
                wait_worker_idle(url, v)
                time.sleep(0.3)
                rec = run_job(v, latency_config, "tiny")
                v.jobs.append(rec)
                print(
                    f"  {v.name:>10} tiny job: started {ms(rec['started'])} ms, "
                    f"first epoch begins {ms(rec['first_epoch_begins'])} ms ({rec['status']})",
                    flush=True,
                )
        main = variants[0]
        cli_runs = []
        with Interference(children=True) as busy_pairs:
            for i in range(args.pairs):
                steps = ["cli", "worker"] if i % 2 == 0 else ["worker", "cli"]
                for step in steps:
                    if step == "cli":
                        rec = run_cli(
                            main, pair_config, tmp, {**cli_env, "PYTHONPATH": str(main.tree)}
                        )
                        cli_runs.append(rec)
                        print(f"  CLI train: {rec['wall_seconds']:.2f} s", flush=True)
                    else:
                        wait_worker_idle(url, main)
                        time.sleep(0.3)
                        rec = run_job(main, pair_config, "pair")
                        main.jobs.append(rec)
                        print(
                            f"  worker job: {sec(rec['ended'])} s ({rec['status']}), "
                            f"started {ms(rec['started'])} ms",
                            flush=True,
                        )
    finally:
        job_ids = [j["job_id"] for v in variants for j in v.jobs]
        for v in variants:
            if v.worker is not None:
                stop(v.worker)
            if v.api is not None:
                stop(v.api)
        deleted = sum(
            delete_queue_keys(url, v.queue, [j["job_id"] for j in v.jobs], [f"{v.queue}-w"])
            for v in variants
            if v.queue
        )
    bad = [j for v in variants for j in v.jobs if j["status"] != "finished"]
    if bad:
        raise RuntimeError(f"{len(bad)} job(s) did not finish: {bad[0]['error']}")
    return summarize_queue(
        variants, cli_runs, pair_config, latency_config, t_ready, rss, busy_pairs, deleted, job_ids
    )


def summarize_queue(
    variants, cli_runs, pair_config, latency_config, t_ready, rss, busy, deleted, job_ids
):
    per_variant = {}
    for v in variants:
        jobs = v.jobs

        def stat(key: str, jobs=jobs) -> dict[str, Any]:
            vals = [j[key] for j in jobs if j.get(key) is not None]
            return {"p50_s": med(vals), "max_s": max(vals) if vals else None, "n": len(vals)}

        loading = [
            j["data_loaded"] - j["started"]
            for j in jobs
            if j.get("data_loaded") is not None and j.get("started") is not None
        ]
        per_variant[v.name] = {
            "tree": str(v.tree),
            "env": v.env,
            "worker_ready_seconds": t_ready.get(v.name),
            "worker_idle_rss_mib": rss.get(v.name),
            "api_seconds": stat("api_seconds"),
            "to_started": stat("started"),
            "to_data_loaded": stat("data_loaded"),
            "data_loading": {"p50_s": med(loading), "max_s": max(loading) if loading else None},
            "to_first_epoch": stat("first_epoch_begins"),
        }
    pairs = [j for j in variants[0].jobs if j["kind"] == "pair"]
    worker_total = [j["ended"] for j in pairs]
    cli_total = [c["wall_seconds"] for c in cli_runs]
    overhead = None
    if worker_total and cli_total:
        overhead = med(worker_total) / med(cli_total) - 1
    return {
        "latency_job_config": latency_config,
        "pair_config": pair_config or "TrainConfig defaults (the default job)",
        "variants": per_variant,
        "jobs": [j for v in variants for j in v.jobs],
        "cli_runs": cli_runs,
        "worker_total_p50_s": med(worker_total),
        "cli_total_p50_s": med(cli_total),
        "worker_train_seconds_p50": med([j["train_seconds"] for j in pairs if j["train_seconds"]]),
        "cli_train_seconds_p50": med([c["train_seconds"] for c in cli_runs]),
        "overhead": overhead,
        "other_processes_cpu_share_pairs": round(busy.share, 3)
        if busy.share == busy.share
        else None,
        "redis_keys_deleted": deleted,
    }


# ---------------------------------------------------------------------------------------------
# report


def report(results: dict[str, Any]) -> str:
    lines = []
    sw = results.get("switch")
    if sw:
        rows = []
        for kind in ("publish", "pin"):
            k = sw[kind]
            ok = k["max_s"] is not None and k["max_s"] < SWITCH_TARGET_S
            rows.append(
                [f"{kind} → every worker", k["n"], ms(k["p50_s"], 0), ms(k["max_s"], 0),
                 ms(k["lower_bound_p50_s"], 0), "met" if ok else "NOT met"]
            )  # fmt: skip
        lines += ["### Model switch (default poll; ms)", ""]
        lines.append(
            markdown_table(["switch", "n", "p50", "max", "p50 lower bound", "target < 1 s"], rows)
        )
        rows = []
        for label, key in (
            ("steady", "predict_steady"),
            ("during switches", "predict_during_switch"),
        ):
            f = sw[key]
            rows.append(
                [
                    label,
                    f["requests"],
                    f["errors"],
                    ms(f["p50_s"], 2),
                    ms(f["p99_s"], 2),
                    ms(f["max_s"], 1),
                ]
            )
        lines += [
            "",
            f"Predict load {sw['settings']['predict_rate_per_s']} req/s (single image):",
            "",
        ]
        lines.append(
            markdown_table(["window", "requests", "errors", "p50 ms", "p99 ms", "max ms"], rows)
        )
        lines.append(f"\nstale answers after a switch: {sw['stale_after_switch']}; "
                     f"other processes' CPU share: {sw['other_processes_cpu_share']:.0%}")  # fmt: skip
    for key, other in results.items():
        if key.startswith("switch_poll_"):
            poll = key.removeprefix("switch_poll_")
            rows = [
                [kind, other[kind]["n"], ms(other[kind]["p50_s"], 0), ms(other[kind]["max_s"], 0)]
                for kind in ("publish", "pin")
            ]
            st, du = other["predict_steady"], other["predict_during_switch"]
            lines += ["", f"### Model switch with REGISTRY_POLL_SECONDS={poll} (ms)", ""]
            lines.append(markdown_table(["switch", "n", "p50", "max"], rows))
            lines.append(
                f"\npredict p50/p99 steady {ms(st['p50_s'], 2)}/{ms(st['p99_s'], 2)} ms, during "
                f"{ms(du['p50_s'], 2)}/{ms(du['p99_s'], 2)} ms; errors {st['errors'] + du['errors']}"
            )
    pc = results.get("poll_cost")
    if pc:
        lines.append(
            f"\nregistry poll without change: {pc['cpu_per_unchanged_poll_s'] * 1e6:.0f} us CPU "
            f"({pc['versions']} versions); loading one version: {ms(pc['load_one_version_s'])} ms"
        )
    q = results.get("queue")
    if q:
        rows = []
        for name, v in q["variants"].items():
            started_ok = (
                v["to_started"]["max_s"] is not None
                and v["to_started"]["max_s"] < QUEUE_START_TARGET_S
            )
            rows.append(
                [name, v["to_started"]["n"], ms(v["api_seconds"]["p50_s"]),
                 f"{ms(v['to_started']['p50_s'])} / {ms(v['to_started']['max_s'])}",
                 f"{ms(v['data_loading']['p50_s'])} / {ms(v['data_loading']['max_s'])}",
                 f"{ms(v['to_first_epoch']['p50_s'])} / {ms(v['to_first_epoch']['max_s'])}",
                 "met" if started_ok else "NOT met", v["worker_idle_rss_mib"]]
            )  # fmt: skip
        lines += ["", "### Queue: POST /v1/jobs → idle worker (ms, p50 / max)", ""]
        lines.append(
            markdown_table(
                ["worker", "jobs", "POST answered", "job started (RQ)", "data loading",
                 "first epoch begins", "start < 100 ms", "idle RSS MiB"],
                rows,
            )
        )  # fmt: skip
        if q["overhead"] is not None:
            ok = q["overhead"] < OVERHEAD_TARGET
            lines += ["", f"### Queue: worker job vs command line ({q['pair_config']})", ""]
            lines.append(
                markdown_table(
                    ["run", "n", "total s (p50)", "train s (p50)"],
                    [["CLI train --report", len(q["cli_runs"]), sec(q["cli_total_p50_s"]), sec(q["cli_train_seconds_p50"])],
                     ["worker (POST → ended)", len([j for j in q["jobs"] if j["kind"] == "pair"]),
                      sec(q["worker_total_p50_s"]), sec(q["worker_train_seconds_p50"])]],
                )
            )  # fmt: skip
            lines.append(f"\nworker overhead vs CLI: {q['overhead']:+.1%} (target < 5%: "
                         f"{'met' if ok else 'NOT met'})")  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.lifecycle", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--quick", action="store_true", help="a short smoke run (tiny jobs, few switches)"
    )
    p.add_argument("--switches", type=int, help="switches of each kind (default 8, quick 2)")
    p.add_argument(
        "--latency-jobs", type=int, help="tiny jobs per worker variant (default 6, quick 1)"
    )
    p.add_argument(
        "--pairs", type=int, help="CLI/worker pairs of the default job (default 3, quick 1)"
    )
    p.add_argument("--gap", type=float, help="seconds between switches (default 2.5, quick 1)")
    p.add_argument(
        "--rate", type=float, default=100.0, help="predict requests/s during the switch section"
    )
    p.add_argument(
        "--poll-seconds", type=float, help="REGISTRY_POLL_SECONDS (default: the service's)"
    )
    p.add_argument("--also-poll", type=float, action="append",
                   help="repeat the switch section with this REGISTRY_POLL_SECONDS (repeatable)")  # fmt: skip
    p.add_argument(
        "--data-dir", type=Path, default=None, help="MNIST folder (default as benchmarks)"
    )
    p.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout whose worker is measured side by side (queue start figures)",
    )
    p.add_argument("--no-preload-variant", action="store_true",
                   help="also measure a worker with WORKER_PRELOAD_DATASETS=none")  # fmt: skip
    p.add_argument("--skip-switch", action="store_true")
    p.add_argument("--skip-queue", action="store_true")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    p.add_argument("--json-out", type=Path, help="also write the raw results here")
    args = p.parse_args(argv)
    q = args.quick
    args.switches = args.switches if args.switches is not None else (2 if q else 8)
    args.latency_jobs = args.latency_jobs if args.latency_jobs is not None else (1 if q else 6)
    args.pairs = args.pairs if args.pairs is not None else (1 if q else 3)
    args.gap = args.gap if args.gap is not None else (1.0 if q else 2.5)
    args.data_dir = args.data_dir or default_data_dir()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from shared.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="digitflow-bench-lifecycle-"))
    results: dict[str, Any] = {
        "benchmark": "lifecycle",
        "command": "python -m benchmarks.lifecycle "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": now_iso(),
        "machine": machine_info(),
        "quick": args.quick,
    }
    url, embedded = redis_url()
    results["redis"] = "embedded redis-server" if embedded else url.rsplit("@", 1)[-1]
    try:
        env = base_env(tmp)
        env.update(
            REDIS_URL=url,
            RQ_QUEUE=f"bench-lifecycle-{uuid.uuid4().hex[:10]}",
            MODEL_REGISTRY_DIR=str(tmp / "models"),
            API_TOKEN="",
        )
        if not args.skip_switch:
            print("model switch:", flush=True)
            results["switch"] = bench_switch(args, tmp, env, Registry(tmp / "models"))
            for poll in args.also_poll or []:
                print(f"model switch, REGISTRY_POLL_SECONDS={poll}:", flush=True)
                other = argparse.Namespace(**{**vars(args), "poll_seconds": poll})
                results[f"switch_poll_{poll}"] = bench_switch(
                    other, tmp, env, Registry(tmp / f"models-poll-{poll}")
                )
            results["poll_cost"] = poll_cost(tmp)
        if not args.skip_queue:
            print("queue:", flush=True)
            variants = [Variant("current", REPO_ROOT)]
            if args.no_preload_variant:
                variants.append(
                    Variant("no-preload", REPO_ROOT, {"WORKER_PRELOAD_DATASETS": "none"})
                )
            if args.baseline_tree:
                variants.append(Variant("baseline", args.baseline_tree.resolve()))
            results["queue"] = bench_queue(args, tmp, url, variants)
    finally:
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["finished"] = now_iso()
    text = report(results)
    print("\n" + text)
    results["report_markdown"] = text
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.no_save:
        print(f"\nresults: {write_result('lifecycle', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
