"""Helpers the benchmarks share: where the data is, what machine we are on, where results go.

Benchmarks are run by hand (`make bench`, `python -m benchmarks.accuracy`), never by the test
suite: speed goals live here, not in assertions.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def default_data_dir(dataset: str = "mnist") -> Path:
    """$MNIST_DATA_DIR (or $FASHION_MNIST_DATA_DIR), else ../shared/data/<dataset> beside the
    repository (as the tests do)."""
    configured = os.environ.get(dataset.upper().replace("-", "_") + "_DATA_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / dataset


def load_average() -> tuple[float, float, float]:
    """1/5/15-minute load averages: how busy the machine was while we measured."""
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux/macOS
        return (float("nan"),) * 3


def cpu_model() -> str:
    """The CPU model name as lscpu reports it (falls back to /proc/cpuinfo, then platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def total_ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def blas_info() -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded into this process (threadpoolctl's view)."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the engine/config had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "uncommitted_engine_changes": bool(
            git("status", "--porcelain", "--", "shared/nn", "shared/config.py")
        ),
    }


def machine_info() -> dict[str, Any]:
    """Everything BENCHMARKS.md reports about the machine, as one JSON-able dict."""
    import numpy as np

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": total_ram_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "load_average": [round(v, 2) for v in load_average()],
        "code": code_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def stop_process_group(
    popen: subprocess.Popen, timeout: float = 20.0, sig: int = signal.SIGTERM
) -> None:
    """Stop a process started with `start_new_session=True` and everything in its group.

    `sig` (SIGTERM: a warm shutdown) to the group, wait up to `timeout`, then SIGKILL. Whatever
    is left of the group afterwards (an RQ work horse, gunicorn workers whose master died first)
    is SIGKILLed too, so nothing we started outlives a benchmark or a test.
    """
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)


def today() -> str:
    return _dt.date.today().isoformat()


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_result(name: str, payload: dict[str, Any], folder: Path | None = None) -> Path:
    """Write <folder>/<name>-<date>.json (pretty, small; folder: benchmarks/results) and return its
    path. A second run the same day goes to <name>-<date>-run2.json and so on: results quoted in
    BENCHMARKS.md are never overwritten by a later run."""
    folder = RESULTS_DIR if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{today()}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-run{n}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def save_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """`out` when the caller named a file (tests, CI artefacts), else `write_result(name, ...)`."""
    if out is None:
        return write_result(name, payload)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return out


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (what BENCHMARKS.md pastes)."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -----------------------------------------------------------------------------------------------
# how busy the machine is


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks over all CPUs since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user/nice
    return (total - idle, total)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, its threads included (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Interference:
    """Share of the machine's CPU used by OTHER processes while a block runs.

    Busy ticks of every CPU (/proc/stat) minus this process's own CPU time, over the wall time
    times the CPU count. On a shared 2-core box this is what makes a run trustworthy or not:
    multi-threaded BLAS degrades badly as soon as anything else wants a core.
    """

    def __init__(self, *, children: bool = False, pids: Sequence[int] = ()) -> None:
        #: count finished child processes (a subprocess run) as "ours" instead of this process
        self.children = children
        #: live processes whose CPU time is "ours" too (a helper process that does the work)
        self.pids = tuple(pids)

    def _own_cpu(self) -> float:
        if self.children:
            t = os.times()
            return t.children_user + t.children_system
        return time.process_time() + sum(process_cpu_seconds(pid) for pid in self.pids)

    def __enter__(self) -> Interference:
        self.ticks = cpu_busy_ticks()
        self.own = self._own_cpu()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, total0 = self.ticks
        busy1, total1 = cpu_busy_ticks()
        own = self.cpu = self._own_cpu() - self.own
        if total1 > total0:
            hz = os.sysconf("SC_CLK_TCK")
            ncpu = os.cpu_count() or 1
            wall = time.perf_counter() - self.wall
            others = (busy1 - busy0) / hz - own
            self.share = max(0.0, others / (wall * ncpu))
        else:  # pragma: no cover - no /proc/stat
            self.share = float("nan")


def wait_until_quiet(max_share: float, max_wait: float) -> float:
    """Sample 1-second windows until other processes use at most `max_share` of the CPUs (or
    `max_wait` seconds have passed); return the last measured share."""
    deadline = time.monotonic() + max_wait
    while True:
        with Interference() as probe:
            time.sleep(1.0)
        if probe.share <= max_share or time.monotonic() >= deadline:
            return probe.share
