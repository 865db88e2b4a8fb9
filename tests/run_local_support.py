"""`make up` as the tests start it: the Makefile's command for it as a child process (its own
session, like a terminal), its output collected line by line, with an environment of the test's
own (registry, data and queue in the test's folders, no port or token from the caller's shell).
Used by tests/integration/test_run_local.py and the README test."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import REPO_ROOT


def make_up_command() -> list[str]:
    """The Makefile's `up` recipe, with this interpreter for `$(BIN)/python` and without
    `$(ARGS)`: the tests start the runner (scripts/run_local.py) exactly as `make up` does, flags
    and all (they matter for a Ctrl-C early in its start-up)."""
    lines = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    recipe = lines[next(n for n, line in enumerate(lines) if line.startswith("up:")) + 1]
    words = shlex.split(recipe)
    assert words[0] == "$(BIN)/python" and words[-1] == "$(ARGS)", recipe
    return [sys.executable, *words[1:-1]]


UP_COMMAND = make_up_command()
_STARTED = re.compile(r"\| (\S+) started \(pid=(\d+)\)")  # honcho's line for each process


class RunLocal:
    """`make up`'s runner as a child, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [*UP_COMMAND, "--env-file", "", *args],
            cwd=REPO_ROOT,
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

    def latest_output(self) -> str:
        """The last lines printed so far, read without waiting (for a failure's message)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)  # the end stays visible to wait_for and finish
                break
            self.lines.append(line)
        return self.output()

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

    def started(self) -> dict[str, int]:
        """name -> pid of each process honcho started so far (each leads a process group)."""
        self.latest_output()
        return {m[1]: int(m[2]) for line in self.lines if (m := _STARTED.search(line))}

    def kill(self) -> None:
        """SIGKILL run_local and every process group honcho started: those are groups of their
        own, so after a failed test killing run_local's alone would leave the stack running."""
        leaders = set(self.started().values())
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for leader in leaders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader, signal.SIGKILL)


def stack_env(tmp_path: Path, mnist_dir: Path, queue_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MODEL_REGISTRY_DIR=str(tmp_path / "models"),
        DATA_DIR=str(tmp_path / "data"),
        MNIST_DATA_DIR=str(mnist_dir),
        RQ_QUEUE=queue_name,
        WEB_CONCURRENCY="1",
    )
    for var in ("TRAINER_PORT", "INFERENCE_PORT", "API_TOKEN"):
        env.pop(var, None)
    return env
