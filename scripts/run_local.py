#!/usr/bin/env python3
"""Run the whole digitflow stack on this machine, without Docker (this is what `make up` runs).

It starts the same processes, with the same commands, as docker-compose.yml:

- Redis: the one at REDIS_URL when that answers, else an embedded real redis-server
  (shared.redis_embedded, persisted with AOF in ./var/redis so queued jobs survive a restart);
- the trainer API (gunicorn), one or more trainer workers (`python -m trainer_service worker`),
  and the inference service (gunicorn, without REDIS_URL: it serves from the registry alone).

Each child runs in its own process group, so that stopping it also stops what it forked (gunicorn
workers, RQ work horses). Their output is streamed here with a name prefix. Ctrl-C (SIGINT),
SIGTERM or SIGHUP stop everything and exit 0; a second Ctrl-C kills at once. If a child dies on
its own, everything is stopped and the exit status is 1, so a broken stack never looks healthy.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `shared` importable
    sys.path.insert(0, str(REPO_ROOT))

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
COLOURS = ("36", "35", "33", "32", "34", "31")


class StartupError(RuntimeError):
    """The stack could not be brought up; the message says why and what to do."""


# ---- configuration ------------------------------------------------------------------------------


def load_env_file(path: Path) -> dict[str, str]:
    """Parse a docker-compose style .env file (KEY=VALUE, # comments, optional quotes).

    The same .env drives `docker compose` and `make up`, so a setting means one thing everywhere.
    """
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def parse_args(argv: list[str] | None, env: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start Redis (or an embedded one), the trainer API, trainer worker(s) and "
        "the inference service locally. Ctrl-C stops them all."
    )
    parser.add_argument(
        "--trainer-port",
        type=int,
        default=int(env.get("TRAINER_PORT") or 8001),
        help="trainer API port (default: $TRAINER_PORT or 8001)",
    )
    parser.add_argument(
        "--inference-port",
        type=int,
        default=int(env.get("INFERENCE_PORT") or 8000),
        help="inference port (default: $INFERENCE_PORT or 8000)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the services listen on (default 127.0.0.1; 0.0.0.0 exposes them)",
    )
    parser.add_argument("--workers", type=int, default=1, help="trainer workers (default 1)")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for every service to become healthy (default 90)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds each child gets to stop on SIGTERM before it is killed (default 10)",
    )
    parser.add_argument(
        "--redis-dir",
        default=str(REPO_ROOT / "var" / "redis"),
        help="where the embedded Redis keeps its data (default ./var/redis)",
    )
    parser.add_argument(
        "--env-file",
        default=None,
        help="settings file read before starting (default: .env in the repository when it "
        "exists; '' reads none). Variables already set in the environment win.",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for name in ("trainer_port", "inference_port"):
        if not 0 < getattr(args, name) < 65536:
            parser.error(f"--{name.replace('_', '-')} must be a TCP port")
    if args.trainer_port == args.inference_port:
        parser.error("the trainer and inference ports must differ")
    return args


def redacted(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def redis_answers(url: str) -> str | None:
    """None when a Redis at `url` answers PING, else the reason it does not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def port_free(host: str, port: int) -> bool:
    """Whether a listening socket could be bound to host:port right now (as gunicorn will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# ---- children -----------------------------------------------------------------------------------


class Output:
    """Serialises lines from all children and from this script onto our stdout."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.width = 16

    def line(self, prefix: str, text: str, colour: str = "1") -> None:
        label = f"{prefix:<{self.width}}|"
        if self.colour:
            label = f"\033[{colour}m{label}\033[0m"
        with self.lock:
            sys.stdout.write(f"{label} {text}\n")
            sys.stdout.flush()

    def say(self, text: str) -> None:
        self.line("run_local", text)


@dataclass
class Child:
    """One service process, leader of its own process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    colour: str
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, out: Output) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C is ours to relay
        )
        self.reader = threading.Thread(
            target=self._stream, args=(out,), name=f"log-{self.name}", daemon=True
        )
        self.reader.start()

    def _stream(self, out: Output) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            out.line(self.name, raw.decode("utf-8", "replace").rstrip("\r\n"), self.colour)
        self.process.stdout.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """Send signum to the child's whole process group (what it forked too)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def terminate(self) -> None:
        """Ask the leader to stop: gunicorn and RQ both shut down their own children cleanly."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]


# ---- the stack ----------------------------------------------------------------------------------


class Stack:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], out: Output) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.children: list[Child] = []
        self.embedded = None  # shared.redis_embedded.EmbeddedRedis when we started one
        self.redis_url = ""
        self.runtime_dir: Path | None = None
        self.stop_requested = threading.Event()
        self.kill_now = threading.Event()
        self.signals = 0

    # signals ----------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals > 1:
            self.kill_now.set()
        self.stop_requested.set()

    # start ------------------------------------------------------------------------------------

    def resolve_redis(self) -> None:
        url = self.env.get("REDIS_URL", "").strip()
        if url:
            problem = redis_answers(url)
            if problem is None:
                self.redis_url = url
                self.out.say(f"using Redis at {redacted(url)}")
                return
            self.out.say(
                f"REDIS_URL={redacted(url)} does not answer ({problem}); "
                "starting an embedded Redis instead"
            )
        from shared.redis_embedded import EmbeddedRedis

        data_dir = Path(self.args.redis_dir).expanduser().resolve()
        self.embedded = EmbeddedRedis(data_dir=data_dir, persist=True).start()
        self.redis_url = self.embedded.url
        self.out.say(
            f"started embedded Redis at {self.redis_url} (pid {self.embedded.process.pid}, "
            f"data in {data_dir})"
        )

    def child_env(self) -> dict[str, str]:
        env = dict(self.env)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", os.defpath)])
        env["PYTHONUNBUFFERED"] = "1"
        env["REDIS_URL"] = self.redis_url
        env["MODEL_REGISTRY_DIR"] = str(self.registry_dir)
        env["DATA_DIR"] = str(self.data_dir)
        env["TRAINER_PORT"] = str(self.args.trainer_port)
        env["INFERENCE_PORT"] = str(self.args.inference_port)
        env.setdefault("TRAINER_URL", self.url(self.args.trainer_port))
        env.setdefault("INFERENCE_URL", self.url(self.args.inference_port))
        # The web page (served by inference) drives training from the browser: allow its origin.
        page = self.url(self.args.inference_port)
        env.setdefault("CORS_ORIGINS", f"{page},http://localhost:{self.args.inference_port}")
        return env

    def url(self, port: int) -> str:
        host = self.args.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def gunicorn_env(self, env: dict[str, str], name: str) -> dict[str, str]:
        """Each gunicorn master gets its own runtime dir: gunicorn >= 25 puts its control socket
        at $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/), and two masters sharing one path
        would unlink each other's socket."""
        runtime = self.runtime_dir / name
        runtime.mkdir(mode=0o700)
        return {**env, "XDG_RUNTIME_DIR": str(runtime)}

    def build_children(self) -> None:
        base = self.child_env()
        py = sys.executable
        bind = self.args.host
        # The compose commands, with the address bound explicitly (gunicorn's -b overrides the
        # config file's 0.0.0.0: a laptop should not expose an unauthenticated trainer by default).
        web_env = dict(base)
        for var in BLAS_VARS:  # several gunicorn workers share the cores: one BLAS thread each
            web_env.setdefault(var, "1")
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="digitflow-run-"))
        trainer = Child(
            "trainer-api",
            [py, "-m", "gunicorn", "-c", "trainer_service/gunicorn.conf.py",
             "-b", f"{bind}:{self.args.trainer_port}", "trainer_service.api:create_app()"],
            self.gunicorn_env(web_env, "trainer-api"),
            COLOURS[0],
        )  # fmt: skip
        inference_env = self.gunicorn_env(web_env, "inference")
        inference_env.pop("REDIS_URL")  # as in compose: inference must not need Redis
        inference = Child(
            "inference",
            [py, "-m", "gunicorn", "-c", "inference_service/gunicorn.conf.py",
             "-b", f"{bind}:{self.args.inference_port}", "inference_service.app:create_app()"],
            inference_env,
            COLOURS[1],
        )  # fmt: skip
        worker_env = dict(base)
        if self.args.workers > 1 and not worker_env.get("OMP_NUM_THREADS"):
            # One worker trains on every core (its own default); several split them.
            share = max(1, available_cores() // self.args.workers)
            for var in BLAS_VARS:
                worker_env[var] = str(share)
        workers = [
            Child(
                "trainer-worker" if self.args.workers == 1 else f"trainer-worker-{i}",
                [py, "-m", "trainer_service", "worker"],
                dict(worker_env),
                COLOURS[2 + (i - 1) % (len(COLOURS) - 2)],
            )
            for i in range(1, self.args.workers + 1)
        ]
        self.children = [trainer, *workers, inference]

    def start(self) -> None:
        registry = self.env.get("MODEL_REGISTRY_DIR") or str(REPO_ROOT / "var" / "models")
        data = self.env.get("DATA_DIR") or str(REPO_ROOT / "var" / "data")
        self.registry_dir = Path(registry).expanduser().resolve()
        self.data_dir = Path(data).expanduser().resolve()
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

        for label, var, port in (
            ("trainer API", "TRAINER_PORT", self.args.trainer_port),
            ("inference", "INFERENCE_PORT", self.args.inference_port),
        ):
            if not port_free(self.args.host, port):
                raise StartupError(
                    f"port {port} ({label}) is already in use on {self.args.host}: stop what uses "
                    f"it, or pick another with {var}=... or --{var.split('_')[0].lower()}-port"
                )

        self.resolve_redis()
        known_workers = self.worker_names()
        self.build_children()
        for child in self.children:
            if self.stop_requested.is_set():
                return
            child.start(self.out)
        self.out.say(
            "pids "
            + " ".join(
                ([f"redis={self.embedded.process.pid}"] if self.embedded else [])
                + [f"{c.name}={c.pid}" for c in self.children]
            )
        )
        self.wait_ready(known_workers)

    def worker_names(self) -> set[str]:
        """Names of the RQ workers currently registered on our queue."""
        from redis import Redis
        from rq import Queue, Worker

        queue_name = self.env.get("RQ_QUEUE") or "training"
        connection = Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            queue = Queue(queue_name, connection=connection)
            return {w.name for w in Worker.all(connection=connection, queue=queue)}
        finally:
            connection.close()

    def wait_ready(self, known_workers: set[str]) -> None:
        """Block until both APIs answer /healthz and every worker registered in Redis."""
        pending_http = {
            "trainer-api": self.url(self.args.trainer_port) + "/healthz",
            "inference": self.url(self.args.inference_port) + "/healthz",
        }
        workers_ready = False
        deadline = time.monotonic() + self.args.startup_timeout
        while not self.stop_requested.is_set():
            self.check_children()
            for name, url in list(pending_http.items()):
                if http_ok(url):
                    self.out.say(f"{name} is healthy ({url})")
                    del pending_http[name]
            if not workers_ready:
                new = self.worker_names() - known_workers
                if len(new) >= self.args.workers:
                    workers_ready = True
                    self.out.say(f"{len(new)} trainer worker(s) registered with Redis")
            if not pending_http and workers_ready:
                return
            if time.monotonic() > deadline:
                waiting = [*pending_http] + ([] if workers_ready else ["trainer workers"])
                raise StartupError(
                    f"not healthy after {self.args.startup_timeout:.0f}s: {', '.join(waiting)} "
                    "(see the log lines above)"
                )
            self.stop_requested.wait(0.25)

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll() if child.process else None
            if code is not None:
                raise StartupError(
                    f"{child.name} (pid {child.pid}) exited unexpectedly with {code}"
                )
        if self.embedded and self.embedded.process.poll() is not None:
            raise StartupError(
                f"embedded Redis exited unexpectedly with {self.embedded.process.returncode}"
            )

    def banner(self) -> None:
        trainer, inference = self.url(self.args.trainer_port), self.url(self.args.inference_port)
        lines = [
            "digitflow is up",
            f"  web page      {inference}/   (draw a digit, models and reports, training)",
            f"  trainer API   {trainer}   (GET /healthz, POST /v1/jobs)",
            f"  inference     {inference}   (GET /v1/models, /v2/health/ready)",
            f"  workers       {self.args.workers} on queue '{self.env.get('RQ_QUEUE') or 'training'}'",
            f"  redis         {redacted(self.redis_url)}"
            + ("  (embedded)" if self.embedded else ""),
            f"  models        {self.registry_dir}",
            f"  data          {self.data_dir}",
            "try:",
            f"  curl -s -X POST {trainer}/v1/jobs -H 'Content-Type: application/json' "
            """-d '{"dataset": "mnist", "preset": "seed-deep", "epochs": 2}'""",
            f"  curl -s {inference}/v1/models",
        ]
        if self.args.trainer_port != 8001 or self.args.inference_port != 8000:
            lines.append(
                f"  export TRAINER_URL={trainer} INFERENCE_URL={inference}  # for digitflow"
            )
        lines.append("Press Ctrl-C to stop everything.")
        for line in lines:
            self.out.say(line)

    # run / stop -------------------------------------------------------------------------------

    def supervise(self) -> None:
        """Until a signal: watch the children; any exit is a failure (StartupError)."""
        while not self.stop_requested.wait(0.25):
            self.check_children()

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the grace period), then Redis."""
        started = [c for c in self.children if c.process is not None]
        if started:
            self.out.say(
                f"stopping {len(started)} process(es) (up to {self.args.grace:.0f}s; "
                "Ctrl-C again to kill at once)"
            )
        for child in started:
            child.terminate()
        deadline = time.monotonic() + self.args.grace
        while any(c.alive() for c in started):
            if self.kill_now.is_set() or time.monotonic() > deadline:
                why = "asked again" if self.kill_now.is_set() else "did not stop in time"
                for child in started:
                    if child.alive():
                        self.out.say(f"{child.name} {why}: killing it")
                        child.signal_group(signal.SIGKILL)
                break
            time.sleep(0.05)
        for child in started:
            child.process.wait()  # type: ignore[union-attr]
            # Anything the child left behind in its group (an orphaned work horse, say) goes too.
            child.signal_group(signal.SIGKILL)
        for child in started:
            if child.reader is not None:
                child.reader.join(timeout=2)
        if self.embedded is not None:
            self.embedded.stop()
            self.out.say("embedded Redis stopped")
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self.out.say("all stopped")


def main(argv: list[str] | None = None) -> int:
    env = dict(os.environ)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env-file", default=None)
    env_file_arg = pre.parse_known_args(argv)[0].env_file
    if env_file_arg is None:  # default: the repository's .env, when there is one
        default = REPO_ROOT / ".env"
        env_file = default if default.is_file() else None
    else:
        env_file = Path(env_file_arg) if env_file_arg else None
    out = Output()
    if env_file is not None:
        out.say(f"reading settings from {env_file}")
        try:
            for key, value in load_env_file(env_file).items():
                env.setdefault(key, value)
        except OSError as exc:
            out.say(f"cannot read {env_file}: {exc}")
            return 2
    args = parse_args(argv, env)

    stack = Stack(args, env, out)
    stack.install_signal_handlers()
    status = 0
    try:
        stack.start()
        if not stack.stop_requested.is_set():
            stack.banner()
            stack.supervise()
    except StartupError as exc:
        out.say(f"error: {exc}")
        status = 1
    except Exception as exc:  # whatever broke, the children must not be orphaned
        out.say(f"error: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        stack.stop()
    if status == 0:
        out.say("stopped on request")
    return status


if __name__ == "__main__":
    sys.exit(main())
