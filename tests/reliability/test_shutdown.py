"""SIGTERM at any moment of a process's start-up or idle time: it exits within 2 s, cleanly.

`docker compose stop`, a rolling restart or `make up`'s Ctrl+C can come at any instant, often
while a process is still starting. Each try starts the real process (the Procfile's command),
signals it at a random instant, and checks that it is gone within 2 s with exit code 0 (leaving
no registration behind), while a CPU-bound process keeps the machine busy: a loaded machine is
where the races show (RQ's teardown race kept 3 in 20 workers up a full minute).

A signal that lands before the process has installed its handler (the interpreter starting, the
command line's imports) gets Python's default action, death by SIGTERM; that is accepted only
before the process says its handler is in (the worker's first log line, gunicorn's "Listening
at"), i.e. before there is anything to clean up.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.service_support import INFERENCE_APP, INFERENCE_CONF, TRAINER_APP, TRAINER_CONF
from tests.trainer_support import (
    PYTHON,
    delete_queue_keys,
    free_port,
    service_env,
    start_gunicorn,
    start_worker,
    stop_process,
    tail,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.exclusive]

EXIT_WITHIN = 2.0  # seconds from the signal to the process being gone
MAX_DELAY = 1.5  # seconds after the reference instant (spawn, or ready)


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """One CPU-bound process beside the test for its whole duration (bounded to 5 minutes)."""
    burner = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import time\nend = time.monotonic() + 300\nwhile time.monotonic() < end: pass",
        ]
    )
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def signal_at_random_instants(
    what: str,
    tries: int,
    references: tuple[str, ...],
    start: Callable[[Path], subprocess.Popen],
    ready: Callable[[], bool],
    handler_in: Callable[[str], bool],
    ready_mark: str,
    left_behind: Callable[[], str | None],
    tmp_path: Path,
) -> None:
    """`tries` times: start a process, SIGTERM it 0-1.5 s after the try's reference instant
    ("spawn" or "ready", taking turns from `references`), check it is gone within EXIT_WITHIN
    with exit code 0 (or killed by the signal while `handler_in(log)` was still false), no
    traceback, nothing `left_behind()`. Prints the outcomes per phase (from the log)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for i in range(tries):
        log_path = tmp_path / f"{what}{i}.log"
        reference = references[i % len(references)]
        proc = start(log_path)
        try:
            if reference == "ready":
                deadline = time.monotonic() + 60
                while not ready():
                    assert proc.poll() is None, f"{what} exited early:\n{tail(log_path)}"
                    assert time.monotonic() < deadline, f"{what} never ready:\n{tail(log_path)}"
                    time.sleep(0.01)
            delay = rng.uniform(0, MAX_DELAY)
            time.sleep(delay)
            log_before = log_path.read_text(errors="replace")
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                code = proc.wait(timeout=EXIT_WITHIN)
            except subprocess.TimeoutExpired:
                code = None
            took = time.monotonic() - signalled
        finally:
            stop_process(proc, timeout=5)
        log = log_path.read_text(errors="replace")
        if not handler_in(log_before):
            phase = "before its handler"
        elif ready_mark not in log_before:
            phase = "starting"
        else:
            phase = "ready"
        problems = []
        if code is None:
            outcome = "hung"
            problems.append(f"still running {EXIT_WITHIN} s after SIGTERM")
        elif code == 0:
            outcome = "exit 0"
        elif code == -signal.SIGTERM and phase == "before its handler":
            outcome = "default action"
        else:
            outcome = f"exit {code}"
            problems.append(f"exit code {code} after {took:.2f} s")
        if code is not None and "Traceback" in log:
            problems.append("a traceback in its log")
        leftover = left_behind()
        if leftover:
            problems.append(leftover)
        if problems:
            failures.append(
                f"try {i} ({reference} + {delay:.2f} s, {phase}): "
                + "; ".join(problems)
                + f"\n{tail(log_path, 15)}"
            )
        outcomes[f"{phase}: {outcome}"] += 1
    print(
        f"\n{what}: {tries} SIGTERMs (seed {seed}, {time.monotonic() - started:.0f} s): "
        + ", ".join(f"{k} x{n}" for k, n in sorted(outcomes.items()))
    )
    assert not failures, "\n\n".join(failures)


def test_worker_stops_within_2_s_at_any_moment_of_start_up_and_idle_time(
    redis_url: str, unique_name: str, tmp_path: Path, busy_machine: None
) -> None:
    """No dataset preload: it only lengthens each start-up (its decoding is plain Python code,
    like the imports the early signals land in)."""
    env = service_env(
        REDIS_URL=redis_url, RQ_QUEUE=unique_name, WORKER_PRELOAD_DATASETS="none", LOG_LEVEL="INFO"
    )
    conn = redis.Redis.from_url(redis_url)
    workers_key = f"rq:workers:{unique_name}"

    def left_behind() -> str | None:
        if conn.scard(workers_key):
            conn.delete(workers_key)
            return f"left its registration in {workers_key}"
        return None

    try:
        signal_at_random_instants(
            "worker",
            30,
            ("spawn", "ready"),
            start=lambda log_path: start_worker(env, log_path),
            ready=lambda: bool(conn.scard(workers_key)),
            handler_in=lambda log: bool(log.strip()),
            ready_mark="Listening on",
            left_behind=left_behind,
            tmp_path=tmp_path,
        )
    finally:
        conn.close()
        delete_queue_keys(redis_url, unique_name)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


#: The line each gunicorn worker logs once its app is loaded.
APP_READY = {"trainer-api": "trainer API ready", "inference": "inference app created"}
GUNICORN_TRIES = 15  # per service: each start-up costs ~2 s here, the whole file stays ~2 min


@pytest.mark.parametrize("service", ["trainer-api", "inference"])
def test_gunicorn_services_stop_within_2_s_when_idle(
    service: str, redis_url: str, unique_name: str, tmp_path: Path, busy_machine: None
) -> None:
    """The Procfile's gunicorn commands (2 sync workers), SIGTERM on the master as compose sends
    it, 0-1.5 s after both workers have loaded the app and /healthz answers.

    Not covered: a signal while a gunicorn worker still imports the app (gunicorn lets the import
    finish, ~1-2.5 s on this busy machine, before the worker exits)."""
    registry = tmp_path / "models"
    registry.mkdir()
    port = free_port()
    if service == "trainer-api":
        app, conf = TRAINER_APP, TRAINER_CONF
        env = service_env(
            REDIS_URL=redis_url, RQ_QUEUE=unique_name, MODEL_REGISTRY_DIR=str(registry)
        )
    else:
        app, conf = INFERENCE_APP, INFERENCE_CONF
        prom = tmp_path / "prom"
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        env = service_env(
            MODEL_REGISTRY_DIR=str(registry),
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            XDG_RUNTIME_DIR=str(runtime),
        )
    env.update(WEB_CONCURRENCY="2", GUNICORN_THREADS="1", LOG_LEVEL="INFO", API_TOKEN="")
    logs: list[Path] = []

    def start(log_path: Path) -> subprocess.Popen:
        logs.append(log_path)
        return start_gunicorn(app, conf, port, env, log_path)

    def ready() -> bool:
        loaded = logs[-1].read_text(errors="replace").count(APP_READY[service])
        return loaded == 2 and _healthy(f"http://127.0.0.1:{port}/healthz")

    signal_at_random_instants(
        service,
        GUNICORN_TRIES,
        ("ready",),
        start=start,
        ready=ready,
        handler_in=lambda log: "Listening at" in log,
        ready_mark=APP_READY[service],
        left_behind=lambda: None,
        tmp_path=tmp_path,
    )
