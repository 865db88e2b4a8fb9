"""SIGTERM at any moment of a process's start-up or idle time: it exits within 2 s, cleanly.

`docker compose stop`, a rolling restart or `make up`'s Ctrl+C can come at any instant, often
while a process is still starting. Each try starts the real process (the Procfile's command),
signals it at a random instant, and checks that it is gone within 2 s with exit code 0, leaving
no registration behind, while a CPU-bound process keeps the machine busy (a loaded machine is
where the races show: RQ's teardown race kept 3 in 20 workers up a full minute).

A signal that lands before the process has installed its handler (the interpreter starting, the
command line's imports: ~0.5 s on a quiet machine) gets Python's default action, death by
SIGTERM; that is accepted only while the process has logged nothing yet (each process's first
line comes once its handler is in), i.e. before there is anything to clean up.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.trainer_support import (
    PYTHON,
    delete_queue_keys,
    service_env,
    start_worker,
    stop_process,
    tail,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.exclusive]

TRIES = 30
EXIT_WITHIN = 2.0  # seconds from the signal to the process being gone
MAX_DELAY = 1.5  # seconds after the reference instant (spawn, or listening)


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


def _phase(log: str) -> str:
    """How far the worker had got, from its log: what the signal interrupted."""
    if not log.strip():
        return "before its handler"
    if "Listening on" not in log:
        return "warm-up/bootstrap"
    return "listening"


def test_worker_stops_within_2_s_at_any_moment_of_start_up_and_idle_time(
    redis_url: str, unique_name: str, tmp_path: Path, busy_machine: None
) -> None:
    """Half the tries signal 0-1.5 s after spawn (imports, warm-up, bootstrap), half 0-1.5 s
    after the worker registered (the rest of bootstrap, the idle work loop). No dataset preload:
    it only lengthens each start-up (its decoding is plain Python code like the imports)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = service_env(
        REDIS_URL=redis_url, RQ_QUEUE=unique_name, WORKER_PRELOAD_DATASETS="none", LOG_LEVEL="INFO"
    )
    conn = redis.Redis.from_url(redis_url)
    workers_key = f"rq:workers:{unique_name}"
    outcomes: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    try:
        for i in range(TRIES):
            log_path = tmp_path / f"worker{i}.log"
            reference = "spawn" if i % 2 == 0 else "listening"
            proc = start_worker(env, log_path)
            try:
                if reference == "listening":
                    deadline = time.monotonic() + 60
                    while not conn.scard(workers_key):
                        assert proc.poll() is None, f"worker exited early:\n{tail(log_path)}"
                        assert time.monotonic() < deadline, f"never registered:\n{tail(log_path)}"
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
            phase = _phase(log_before)
            problems = []
            if code is None:
                outcome = "hung"
                problems.append(f"still running {EXIT_WITHIN} s after SIGTERM")
            elif code == 0:
                outcome = "exit 0"
            elif code == -signal.SIGTERM and not log_before.strip():
                outcome = "default action"
            else:
                outcome = f"exit {code}"
                problems.append(f"exit code {code} after {took:.2f} s")
            if code is not None and "Traceback" in log:
                problems.append("a traceback in its log")
            if conn.scard(workers_key):
                problems.append(f"left its registration in {workers_key}")
                conn.delete(workers_key)
            if problems:
                failures.append(
                    f"try {i} ({reference} + {delay:.2f} s, in {phase}): "
                    + "; ".join(problems)
                    + f"\n{tail(log_path, 15)}"
                )
            outcomes[(phase, outcome)] += 1
        print(
            f"\nworker SIGTERM tries (seed {seed}, {time.monotonic() - started:.0f} s): "
            + ", ".join(
                f"{phase}: {outcome} x{n}" for (phase, outcome), n in sorted(outcomes.items())
            )
        )
        assert not failures, "\n\n".join(failures)
    finally:
        conn.close()
        delete_queue_keys(redis_url, unique_name)
