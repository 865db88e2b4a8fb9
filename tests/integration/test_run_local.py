"""`make up` (scripts/run_local.py): the whole stack as real local processes.

Started as a subprocess on free ports, it must print its URLs once everything is healthy, serve
both /healthz, stop on SIGINT with exit 0 leaving no process behind (not even a gunicorn worker
or an embedded redis-server), and fail loudly (non-zero) when a service dies under it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from shared.redis_embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "run_local.py"


class RunLocal:
    """scripts/run_local.py as a child, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--env-file", "", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # like a terminal session of its own
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """The first output line (from now on, or already seen) matching pattern."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(
                    f"run_local exited ({self.process.wait()}) before {pattern!r}:\n{self.output()}"
                )
            self.lines.append(line)
            if match := regex.search(line):
                return match
        pytest.fail(f"no line matching {pattern!r} after {timeout}s:\n{self.output()}")

    def finish(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run_local did not exit within {timeout}s:\n{self.output()}")
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def pids_line(run: RunLocal) -> dict[str, int]:
    match = run.wait_for(r"\|\s*pids (.+)$")
    return {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (process group, state) of every process on the machine, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[2]), fields[0])
    return table


def family(leaders: set[int]) -> set[int]:
    """The leaders and every live process in their process groups (gunicorn workers, horses)."""
    return {pid for pid, (pgid, state) in processes().items() if pgid in leaders and state != "Z"}


def survivors(pids: set[int], leaders: set[int]) -> set[int]:
    table = processes()
    return {
        pid
        for pid, (pgid, state) in table.items()
        if state != "Z" and (pid in pids or pgid in leaders)
    }


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def stack_env(tmp_path: Path, mnist_dir: Path, queue_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MODEL_REGISTRY_DIR=str(tmp_path / "models"),
        DATA_DIR=str(tmp_path / "data"),
        MNIST_DATA_DIR=str(mnist_dir),
        RQ_QUEUE=queue_name,
        WEB_CONCURRENCY="1",
    )
    for var in ("TRAINER_PORT", "INFERENCE_PORT"):
        env.pop(var, None)
    return env


def run_until_sigint(run: RunLocal, trainer_port: int, inference_port: int) -> set[int]:
    """Wait for the banner, hit both services, SIGINT; returns every pid that was part of it."""
    pids = pids_line(run)
    run.wait_for(r"digitflow is up")
    run.wait_for(rf"http://127\.0\.0\.1:{trainer_port}\b")
    run.wait_for(rf"http://127\.0\.0\.1:{inference_port}\b")
    run.wait_for(r"curl ")
    assert get(f"http://127.0.0.1:{trainer_port}/healthz") == 200
    assert get(f"http://127.0.0.1:{inference_port}/healthz") == 200
    leaders = set(pids.values())
    everything = family(leaders)
    assert len(everything) > len(leaders), "gunicorn workers should be in the families"
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.output()
    left = survivors(everything, leaders)
    assert not left, f"processes left behind: {left}\n{run.output()}"
    return leaders


def test_make_up_with_redis_url(
    redis_url: str, mnist_dir: Path, unique_name: str, tmp_path: Path
) -> None:
    trainer_port, inference_port = free_port(), free_port()
    env = stack_env(tmp_path, mnist_dir, unique_name)
    env["REDIS_URL"] = redis_url
    run = RunLocal(
        ["--trainer-port", str(trainer_port), "--inference-port", str(inference_port)], env
    )
    try:
        run_until_sigint(run, trainer_port, inference_port)
        assert "embedded" not in run.output().split("digitflow is up")[0]
        assert (tmp_path / "models").is_dir() and (tmp_path / "data").is_dir()
    finally:
        run.kill()


def test_make_up_without_redis_url_embeds_redis_and_honours_port_env(
    mnist_dir: Path, unique_name: str, tmp_path: Path
) -> None:
    trainer_port, inference_port = free_port(), free_port()
    env = stack_env(tmp_path, mnist_dir, unique_name)
    env.pop("REDIS_URL", None)
    env["TRAINER_PORT"], env["INFERENCE_PORT"] = str(trainer_port), str(inference_port)
    redis_dir = tmp_path / "redis"
    run = RunLocal(["--workers", "2", "--redis-dir", str(redis_dir)], env)
    try:
        pids = pids_line(run)
        assert "redis" in pids and {"trainer-worker-1", "trainer-worker-2"} <= set(pids)
        run.wait_for(r"2 trainer worker\(s\) registered")
        run_until_sigint(run, trainer_port, inference_port)
        assert "embedded Redis stopped" in run.output()
        assert any(redis_dir.iterdir()), "the embedded Redis persists into --redis-dir"
    finally:
        run.kill()


def test_a_dying_service_stops_everything_with_an_error(
    redis_url: str, mnist_dir: Path, unique_name: str, tmp_path: Path
) -> None:
    trainer_port, inference_port = free_port(), free_port()
    env = stack_env(tmp_path, mnist_dir, unique_name)
    env["REDIS_URL"] = redis_url
    run = RunLocal(
        ["--trainer-port", str(trainer_port), "--inference-port", str(inference_port)], env
    )
    try:
        pids = pids_line(run)
        run.wait_for(r"digitflow is up")
        leaders = set(pids.values())
        everything = family(leaders)
        os.kill(pids["inference"], signal.SIGKILL)
        code = run.finish()
        assert code != 0, run.output()
        assert re.search(r"inference .*exited unexpectedly", run.output()), run.output()
        # including the inference's orphaned gunicorn workers: its whole group is killed
        assert not survivors(everything, leaders), run.output()
    finally:
        run.kill()


def test_a_busy_port_is_reported_before_anything_starts(tmp_path: Path, mnist_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = stack_env(tmp_path, mnist_dir, "unused")
        run = RunLocal(["--trainer-port", str(port), "--inference-port", str(free_port())], env)
        try:
            assert run.finish(timeout=30) == 1
            assert f"port {port}" in run.output() and "TRAINER_PORT" in run.output()
            assert "pids" not in run.output()
        finally:
            run.kill()
