"""`make up` (scripts/run_local.py: the Procfile under honcho): the whole stack as real processes.

Started as a subprocess on free ports, it must run the Procfile's processes with compose's
environment, print its URLs once everything is healthy, serve both /healthz, stop on SIGINT with
exit 0 leaving no process behind (not even a gunicorn worker or an embedded redis-server), and
fail loudly (exit 1, everything stopped) when a service dies under it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from shared.redis_embedded import free_port
from tests.run_local_support import RunLocal, stack_env

pytestmark = [pytest.mark.slow]


def started_pids(run: RunLocal) -> dict[str, int]:
    """Once the stack is up: name -> pid of each process honcho started (a group leader)."""
    run.wait_for(r"digitflow is up")
    return run.started()


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
    """The leaders and every live process in their process groups (gunicorn, its workers)."""
    return {pid for pid, (pgid, state) in processes().items() if pgid in leaders and state != "Z"}


def survivors(pids: set[int], leaders: set[int], wait: float = 0.0) -> set[int]:
    """What is still alive of `pids` and the leaders' groups after up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        table = processes()
        alive = {
            pid
            for pid, (pgid, state) in table.items()
            if state != "Z" and (pid in pids or pgid in leaders)
        }
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def run_until_sigint(run: RunLocal, trainer_port: int, inference_port: int) -> dict[str, int]:
    """Wait for the banner, hit both services, SIGINT; returns the pids honcho started."""
    pids = started_pids(run)
    run.wait_for(rf"web page +http://127\.0\.0\.1:{inference_port}/")
    run.wait_for(rf"trainer API +http://127\.0\.0\.1:{trainer_port}\b")
    run.wait_for(r"Press Ctrl-C")
    assert get(f"http://127.0.0.1:{trainer_port}/healthz") == 200
    assert get(f"http://127.0.0.1:{inference_port}/healthz") == 200
    leaders = set(pids.values())
    everything = family(leaders)
    assert len(everything) > len(leaders), "gunicorn and its workers should be in the groups"
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.output()
    assert "all stopped" in run.output()
    left = survivors(everything, leaders)
    assert not left, f"processes left behind: {left}\n{run.output()}"
    return pids


def test_make_up_with_redis_url_runs_the_procfile(
    redis_url: str, mnist_dir: Path, unique_name: str, tmp_path: Path
) -> None:
    trainer_port, inference_port = free_port(), free_port()
    env = stack_env(tmp_path, mnist_dir, unique_name)
    env["REDIS_URL"] = redis_url
    env.pop("FASHION_MNIST_DATA_DIR", None)  # so it comes from DATA_DIR
    env_file = tmp_path / "env"  # the shell wins over the file; what only the file sets is used
    env_file.write_text(
        f"RQ_QUEUE=not-{unique_name}\nDIGITFLOW_PROBE=from-file\nAPI_TOKEN=tok-{unique_name}\n"
    )
    run = RunLocal(
        ["--env-file", str(env_file), "--trainer-port", str(trainer_port),
         "--inference-port", str(inference_port)],
        env,
    )  # fmt: skip
    try:
        pids = started_pids(run)
        assert set(pids) == {"trainer-api.1", "trainer-worker.1", "inference.1"}, run.output()
        api, worker, inference = (
            environment(pids[n]) for n in ("trainer-api.1", "trainer-worker.1", "inference.1")
        )
        assert api["REDIS_URL"] == worker["REDIS_URL"] == redis_url
        assert "REDIS_URL" not in inference, "as in compose, inference gets no Redis"
        assert api["RQ_QUEUE"] == worker["RQ_QUEUE"] == unique_name
        assert api["DIGITFLOW_PROBE"] == "from-file"
        assert (
            api["MODEL_REGISTRY_DIR"] == inference["MODEL_REGISTRY_DIR"] == str(tmp_path / "models")
        )
        # The banner names the folder each dataset is read from, as the workers find it.
        run.wait_for(rf"data +mnist +{re.escape(str(mnist_dir))}$")
        fashion = re.escape(str(tmp_path / "data" / "fashion-mnist"))
        run.wait_for(rf"^\S+ make up +\| +fashion-mnist +{fashion} +\(downloaded here if missing\)")
        # The token (from the env file) is needed by the example POST: named, never shown.
        curl = run.wait_for(r"curl -s -X POST .*").group(0)
        assert 'Authorization: Bearer $API_TOKEN"' in curl, curl
        run.wait_for(r"API_TOKEN is set in the env file: export it")
        run_until_sigint(run, trainer_port, inference_port)
        assert "embedded" not in run.output()
        assert f"tok-{unique_name}" not in run.output()
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
        redis_pid = int(run.wait_for(r"started an embedded Redis at \S+ \(pid (\d+)").group(1))
        pids = started_pids(run)
        assert {"trainer-worker.1", "trainer-worker.2"} <= set(pids), run.output()
        run.wait_for(r"2 trainer worker\(s\) registered")
        curl = run.wait_for(r"curl -s -X POST .*").group(0)
        assert "Authorization" not in curl, "no token, no header"
        run_until_sigint(run, trainer_port, inference_port)
        assert "embedded Redis stopped" in run.output()
        assert not survivors({redis_pid}, set()), "the embedded Redis is stopped last"
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
        pids = started_pids(run)
        leaders = set(pids.values())
        everything = family(leaders)
        os.killpg(pids["inference.1"], signal.SIGKILL)  # the service crashes, workers and all
        code = run.finish()
        assert code == 1, run.output()
        assert re.search(r"inference\.1 stopped \(rc=-9\)", run.output()), run.output()
        assert "everything was stopped after a failure" in run.output()
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
            assert "started" not in run.output()
        finally:
            run.kill()
