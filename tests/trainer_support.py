"""Helpers for the trainer tests: Redis key cleanup, real worker/gunicorn processes, polling.

Tests may share one Redis (REDIS_URL) with other runs, so every test works on its own queue name
and deletes only the keys it created: never FLUSHDB.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.exceptions import HTTPException

from benchmarks.common import stop_process_group
from shared.redis_embedded import free_port
from shared.registry import Registry
from tests import REPO_ROOT
from trainer_service.api.app import create_app
from trainer_service.api.web import api

PYTHON = sys.executable


def delete_queue_keys(url: str, queue: str) -> None:
    """Remove every key this test's queue produced: RQ's queue/registries/jobs and ours."""
    r = redis.Redis.from_url(url)
    try:
        job_ids = [i.decode() for i in r.zrange(f"digitflow:{queue}:jobs", 0, -1)]
        keys: set[bytes | str] = set()
        for pattern in (f"*{queue}*",):
            keys.update(r.scan_iter(match=pattern, count=1000))
        for job_id in job_ids:
            for pattern in (f"rq:*{job_id}*",):
                keys.update(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)
        # RQ's worker set: the entries of this test's workers (named after its queue), live or
        # SIGKILLed (a killed worker's own key expires, its entry in the set stays).
        workers = [m for m in r.smembers("rq:workers") if queue in m.decode()]
        if workers:
            r.srem("rq:workers", *workers)
        r.srem("rq:queues", f"rq:queue:{queue}")
    finally:
        r.close()


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll until predicate() is truthy; return its value or fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def service_env(**overrides: str) -> dict[str, str]:
    """The test process's environment (1 BLAS thread from conftest) plus overrides."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start_worker(
    env: dict[str, str], log_path: Path, name: str | None = None, publish_gate: Path | None = None
) -> subprocess.Popen:
    """`python -m trainer_service worker` as its own process group (so killpg reaches all of it).

    With `publish_gate`, every publish waits for that file to exist (see tests/gated_publish.py).
    """
    gate = ["tests.gated_publish", str(publish_gate)] if publish_gate else ["trainer_service"]
    args = [PYTHON, "-m", *gate, "worker"]
    if name:
        args += ["--name", name]
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by stop_process
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc._digitflow_log = log  # type: ignore[attr-defined]
    return proc


def wait_worker_registered(url: str, queue: str, proc: subprocess.Popen, log_path: Path) -> None:
    """Block until the worker listens on `queue` (it registers itself in rq:workers:<queue>)."""
    r = redis.Redis.from_url(url)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{tail(log_path)}")
            return r.scard(f"rq:workers:{queue}") > 0

        wait_for(ready, timeout=30, what="the RQ worker to register")
    finally:
        r.close()


def start_gunicorn(
    app_spec: str, conf: str, port: int, env: dict[str, str], log_path: Path
) -> subprocess.Popen:
    args = [PYTHON, "-m", "gunicorn", "-c", conf, "--bind", f"127.0.0.1:{port}", app_spec]
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by stop_process
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc._digitflow_log = log  # type: ignore[attr-defined]
    return proc


def wait_http_ok(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    def ok() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: server exited early:\n{tail(log_path)}")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ok, timeout=timeout, interval=0.2, what=f"{url} to answer 200")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process we started (its whole process group), escalating to SIGKILL."""
    stop_process_group(proc, timeout, sig)
    log = getattr(proc, "_digitflow_log", None)
    if log is not None:
        log.close()


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    # A zombie still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


# ---- a trainer stack for integration tests --------------------------------------------------

#: A job that trains in about a second: what every test submits when the config does not matter.
SMALL = {"hidden_layers": [32], "epochs": 2, "train_limit": 2000}
#: Nothing listens on the discard port: a trainer app pointed here answers 503 for any route that
#: needs Redis, which proves that a route answering otherwise never touched it.
DEAD_REDIS = "redis://127.0.0.1:9/0"
#: Long enough to be stopped/killed/timed out mid-run; each epoch still takes well under a second.
LONG = {"hidden_layers": [256, 256], "epochs": 1000, "train_limit": 3000, "val_fraction": 0.1}


def trainer_app(config: Mapping[str, Any]) -> Flask:
    """The trainer app, its test clients `DocumentedClient`s."""
    app = create_app(config)
    app.test_client_class = DocumentedClient
    return app


class DocumentedClient(FlaskClient):
    """A test client that holds every JSON answer to the OpenAPI document: the body must be what
    the schema documented for its route and status describes, with no property the response
    model does not name. So every test that calls a route also checks that its handler answers
    from its documented model."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        request = response.request
        check_documented(self.application, request.method, request.path, response)
        return response


def check_documented(app: Flask, method: str, path: str, response: Any) -> None:
    """AssertionError if `response` has a JSON body its route's documented schema rejects."""
    try:
        rule, _ = app.url_map.bind("localhost").match(path, method=method, return_rule=True)
    except HTTPException:  # not a route (404, 405): no operation to hold the answer to
        return
    template = re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule.rule)
    operation = _document()["paths"].get(template, {}).get(method.lower(), {})
    answer = operation.get("responses", {}).get(str(response.status_code), {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None or not response.is_json:
        return
    validator = Draft202012Validator({**_strict(schema), "components": _strict_components()})
    errors = sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in validator.iter_errors(response.get_json())
    )
    assert not errors, f"{method} {path} {response.status_code}: undocumented body: {errors}"


@functools.cache
def _document() -> dict[str, Any]:
    return api.document()


@functools.cache
def _strict_components() -> dict[str, Any]:
    return _strict(_document()["components"])


def _strict(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every object schema that lists its
    properties and says nothing about others: a property the model does not name is an error
    (a model that allows extras, like the error body's detail, says so and keeps them)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


class Stack:
    """API (in-process Flask client) + worker subprocesses for one test's queue and registry."""

    def __init__(self, redis_url: str, queue: str, tmp: Path, mnist_dir: Path) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.tmp = tmp
        self.registry_dir = tmp / "models"
        self.registry = Registry(self.registry_dir)
        self.env = service_env(
            REDIS_URL=redis_url,
            RQ_QUEUE=queue,
            MODEL_REGISTRY_DIR=str(self.registry_dir),
            MNIST_DATA_DIR=str(mnist_dir),
            JOB_HEARTBEAT_SECONDS="1",
            JOB_HEARTBEAT_GRACE="3",
            SWEEP_RECONCILE_SECONDS="1",
            # The one dataset these tests' jobs use: by default a worker also decodes
            # Fashion-MNIST as it starts (~1.3 s of CPU each time, ~60 starts a suite).
            WORKER_PRELOAD_DATASETS="mnist",
            LOG_LEVEL="INFO",
        )
        self.workers: list = []
        self.client = self.api()

    def api(self, **config):
        app = trainer_app(
            {
                "REDIS_URL": self.redis_url,
                "RQ_QUEUE": self.queue,
                "MODEL_REGISTRY_DIR": str(self.registry_dir),
                "API_TOKEN": "",
                **config,
            }
        )
        return app.test_client()

    def start_worker(self, publish_gate: Path | None = None, **env):
        log = self.tmp / f"worker{len(self.workers)}.log"
        proc = start_worker(
            {**self.env, **env},
            log,
            name=f"{self.queue}-w{len(self.workers)}-{uuid.uuid4().hex[:4]}",
            publish_gate=publish_gate,
        )
        proc.log_path = log
        self.workers.append(proc)
        wait_worker_registered(self.redis_url, self.queue, proc, log)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{tail(w.log_path)}" for w in self.workers)

    def submit(self, body, client=None) -> str:
        r = (client or self.client).post("/v1/jobs", json=body)
        assert r.status_code == 202, r.json
        return r.json["job_id"]

    def job(self, job_id: str) -> dict:
        r = self.client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.json
        return r.json

    def wait_status(self, job_id: str, statuses, timeout: float = 60) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)

        def done():
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        try:
            return wait_for(done, timeout, interval=0.1, what=f"job {job_id} in {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.job(job_id)}\n{self.logs()}") from None

    def wait_epoch(self, job_id: str, epoch: int, timeout: float = 60) -> dict:
        def reached():
            job = self.job(job_id)
            assert job["status"] in ("queued", "started"), (job, self.logs())
            return job if (job["progress"] or {}).get("epoch", 0) >= epoch else None

        return wait_for(reached, timeout, interval=0.1, what=f"job {job_id} epoch {epoch}")

    def versions(self, model: str = "mnist") -> list[int]:
        return self.registry.versions(model) if model in self.registry.model_names() else []

    def close(self) -> None:
        for proc in self.workers:
            stop_process(proc)


def horse_pids(worker_pid: int) -> list[int]:
    """Children of the worker process (its work horse while a job runs)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker_pid:
            children.append(int(entry.name))
    return children


__all__ = [
    "LONG",
    "SMALL",
    "Stack",
    "horse_pids",
    "delete_queue_keys",
    "free_port",
    "pid_alive",
    "service_env",
    "start_gunicorn",
    "start_worker",
    "stop_process",
    "tail",
    "wait_for",
    "wait_http_ok",
    "wait_worker_registered",
]
