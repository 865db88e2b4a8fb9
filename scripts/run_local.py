"""Run the whole digitflow stack on this machine, without Docker: `make up` runs this module.

The processes are the `Procfile`'s (docker-compose.yml's service commands word for word), run by
honcho, which prefixes each output line with the process's name, stops every process on Ctrl-C or
SIGTERM (SIGKILL 5 s later), and stops the rest when one exits. Around that, this script starts an
embedded redis-server when REDIS_URL does not answer (persisted in ./var/redis so queued jobs
survive a restart), gives each process the environment compose gives its container (with local
paths, 127.0.0.1, the web page's origin in CORS_ORIGINS, no REDIS_URL for inference, the cores
shared out between workers), and waits until every service and worker is up before the URLs.

Exit status: 0 when stopped by Ctrl-C, SIGTERM or SIGHUP; 1 when a process stopped on its own or
the stack did not become healthy in time (after stopping everything else).
"""

# ruff: noqa: E402 - the imports follow site.main() below
from __future__ import annotations

import signal
import sys

# A Ctrl-C at any instant of start-up stops everything. `make up` starts this module with `python
# -S -c`, whose first statement blocks the stop signals (STOP_SIGNALS) before Python imports
# anything; main() unblocks them once its handlers are in, and one that came in the meantime
# runs then. Without the mask a Ctrl-C can be lost: before our handlers are in, CPython 3.11
# turns it into a KeyboardInterrupt, and some places of its start-up print that and carry on:
# - the check whether a script's path is a zip archive ("Failed checking if argv[0] is an import
#   path entry"; then the script runs anyway);
# - site.py's .pth files (the editable install's imports pathlib; an interrupt in a class body's
#   __set_name__ becomes a RuntimeError, which site prints and skips);
# - the weakref callback that drops each import's module lock ("Exception ignored in: <function
#   _get_module_lock.<locals>.cb ...>").
# -S leaves site out of the interpreter's start-up: it runs here, inside the mask.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
if sys.flags.no_site:
    import site

    site.main()

import argparse
import datetime
import errno
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from honcho import manager as honcho
from honcho.environ import expand_processes, parse, parse_procfile
from honcho.printer import Message, Printer
from redis import Redis, RedisError
from rq import Queue, Worker

from shared.blas import BLAS_THREAD_VARIABLES
from trainer_service import queueing
from trainer_service.settings import TrainerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent

NAME = "make up"  # the prefix of this script's own lines
STOPPED_BY_SIGNAL = (130, 143)  # honcho's return code after SIGINT / SIGTERM


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make up",
        description="Start Redis (or an embedded one), the trainer API, trainer worker(s) and "
        "the inference service locally, from the Procfile. Ctrl-C stops them all. Options go "
        'in ARGS: make up ARGS="--workers 3".',
    )
    parser.add_argument("--trainer-port", type=int, help="default: $TRAINER_PORT or 8001")
    parser.add_argument("--inference-port", type=int, help="default: $INFERENCE_PORT or 8000")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the services listen on (default 127.0.0.1; 0.0.0.0 exposes them)",
    )
    parser.add_argument("--workers", type=int, default=1, help="trainer workers (default 1)")
    parser.add_argument(
        "--startup-timeout", type=float, default=90.0, help="seconds to become healthy (90)"
    )
    parser.add_argument(
        "--redis-dir",
        default=str(REPO_ROOT / "var" / "redis"),
        help="where the embedded Redis keeps its data (default ./var/redis)",
    )
    parser.add_argument(
        "--env-file",
        default=str(REPO_ROOT / ".env"),
        help="settings read when the file exists (default: the repository's .env; '' reads "
        "none). Variables already set in the shell win over the file.",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def redacted(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, env: dict[str, str]) -> Redis:
    """A client of `url` with the timeouts of the trainer's own clients (REDIS_SOCKET_TIMEOUT)."""
    return queueing.connect(TrainerSettings.load({**env, "REDIS_URL": url}))


def redis_problem(url: str, env: dict[str, str]) -> str | None:
    """None when a Redis at `url` answers PING, else the reason it does not."""
    try:
        with connect(url, env) as client:
            client.ping()
    except (RedisError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def port_in_use(host: str, port: int) -> bool:
    """Whether gunicorn would fail to bind host:port right now (checked before starting)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):  # URLError is an OSError
        return False


def worker_names(redis_url: str, queue_name: str, env: dict[str, str]) -> set[str]:
    """Names of the RQ workers registered on our queue."""
    with connect(redis_url, env) as connection:
        queue = Queue(queue_name, connection=connection)
        return {w.name for w in Worker.all(connection=connection, queue=queue)}


class Manager(honcho.Manager):
    """honcho's Manager, stoppable at any moment of its start-up.

    honcho stops the processes by the pids their helper processes report as they start: a stop
    signal before every pid had arrived raised KeyError out of its handler, which left the
    started processes running and this script stuck. Here such a stop waits for the last pid
    (honcho's loop asks `_all_started` at every turn, at least every 0.1 s). The same holds for
    a stop recorded before the loop began (`request_stop`)."""

    stop_pending = False

    def request_stop(self, signum: int, frame: object) -> None:
        """The stop signals' handler until honcho's loop installs its own."""
        self.returncode = honcho.SIGNALS[signum]["rc"]
        self.stop_pending = True

    def terminate(self) -> None:
        if super()._all_started():
            super().terminate()
        else:
            self.stop_pending = True

    def _all_started(self) -> bool:
        started = super()._all_started()
        if started and self.stop_pending:
            self.stop_pending = False
            super().terminate()
        return started


class Stack:
    """The settings of one `make up`, and what it prints around honcho's output."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.trainer_port = args.trainer_port or int(env.get("TRAINER_PORT") or 8001)
        self.inference_port = args.inference_port or int(env.get("INFERENCE_PORT") or 8000)
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
        self.trainer_url = f"http://{shown}:{self.trainer_port}"
        self.inference_url = f"http://{shown}:{self.inference_port}"
        self.queue = env.get("RQ_QUEUE") or "training"
        self.printer = Printer(sys.stdout, colour=not env.get("NO_COLOR"))
        self.manager = Manager(self.printer)
        self.failed = threading.Event()
        self.running = False  # honcho's loop prints every line while it runs

    def say(self, text: str) -> None:
        """One line of ours, through honcho's event queue while it runs (so lines never mix)."""
        message = Message("line", text + "\n", datetime.datetime.now(), NAME, None)
        if self.running:
            self.manager.events.put(message)
        else:
            self.printer.write(message)

    def run(self) -> None:
        """honcho's loop: until Ctrl-C, SIGTERM or a process exits (see Manager.returncode)."""
        self.running = True
        try:
            self.manager.loop()
        finally:
            self.running = False

    def check_ports(self) -> str | None:
        if self.trainer_port == self.inference_port:
            return "the trainer and inference ports must differ"
        for label, var, port in (
            ("trainer API", "TRAINER_PORT", self.trainer_port),
            ("inference", "INFERENCE_PORT", self.inference_port),
        ):
            if not 0 < port < 65536:
                return f"{var}={port} is not a TCP port"
            if port_in_use(self.args.host, port):
                flag = f"--{var.split('_')[0].lower()}-port"
                return (
                    f"port {port} ({label}) is already in use on {self.args.host}: stop what "
                    f"uses it, or pick another with {var}=... or {flag}"
                )
        return None

    def add_processes(self, redis_url: str) -> None:
        """The Procfile's processes (trainer-worker --workers times) with their environment."""
        env = dict(self.env)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(
            PYTHONUNBUFFERED="1",
            REDIS_URL=redis_url,
            TRAINER_PORT=str(self.trainer_port),
            INFERENCE_PORT=str(self.inference_port),
        )
        # The web page (served by inference) drives training from the browser: allow its origin.
        env.setdefault(
            "CORS_ORIGINS", f"{self.inference_url},http://localhost:{self.inference_port}"
        )
        procfile = parse_procfile((REPO_ROOT / "Procfile").read_text(encoding="utf-8"))
        workers = self.args.workers
        for process in expand_processes(
            procfile.processes, concurrency={"trainer-worker": workers}, env=env
        ):
            kind = process.name.split(".")[0]
            own = dict(process.env)
            if kind in ("trainer-api", "inference"):
                # gunicorn: GUNICORN_CMD_ARGS wins over the config file's 0.0.0.0 (a laptop should
                # not expose an unauthenticated trainer by default).
                port = self.trainer_port if kind == "trainer-api" else self.inference_port
                own["GUNICORN_CMD_ARGS"] = (
                    f"{own.get('GUNICORN_CMD_ARGS', '')} --bind {self.args.host}:{port}".strip()
                )
            if kind == "inference":
                own.pop("REDIS_URL")  # as in compose: inference must not need Redis
            if kind == "trainer-worker" and workers > 1 and not own.get("OMP_NUM_THREADS"):
                # One worker trains on every core (its own default); several share them out.
                share = str(max(1, len(os.sched_getaffinity(0)) // workers))
                own.update(dict.fromkeys(BLAS_THREAD_VARIABLES, share))
            self.manager.add_process(process.name, process.cmd, env=own, cwd=str(REPO_ROOT))

    def wait_until_ready(self, redis_url: str, known_workers: set[str]) -> None:
        """In a thread while honcho runs: wait for health, print the URLs; on timeout, stop."""
        pending = {
            "trainer-api": f"{self.trainer_url}/healthz",
            "inference": f"{self.inference_url}/healthz",
        }
        deadline = time.monotonic() + self.args.startup_timeout
        workers_ready = False
        while pending or not workers_ready:
            if time.monotonic() > deadline:
                late = ", ".join([*pending] + ([] if workers_ready else ["trainer workers"]))
                self.say(f"error: not healthy after {self.args.startup_timeout:g}s: {late}")
                self.failed.set()
                os.kill(os.getpid(), signal.SIGTERM)  # honcho's own way to stop everything
                return
            for name, url in list(pending.items()):
                if http_ok(url):
                    self.say(f"{name} is healthy ({url})")
                    del pending[name]
            if not workers_ready:
                try:
                    registered = worker_names(redis_url, self.queue, self.env) - known_workers
                except (RedisError, OSError):
                    registered = set()  # Redis is restarting: the deadline still holds
                if len(registered) >= self.args.workers:
                    workers_ready = True
                    self.say(f"{len(registered)} trainer worker(s) registered with Redis")
            time.sleep(0.25)
        self.banner(redis_url)

    def data_lines(self) -> list[str]:
        """Where the workers find each dataset: the trainer's own rule (a dataset's variable,
        e.g. MNIST_DATA_DIR, else DATA_DIR/<name>), so the banner names the folder jobs read."""
        from shared.datasets import DATASET_NAMES

        locations = TrainerSettings.load(self.env).data_locations()
        lines = []
        for name in DATASET_NAMES:
            # Relative to the processes' cwd, made absolute as written: a folder reached through a
            # symlink is shown as the user named it (resolve() would print the link's target).
            folder = os.path.normpath(REPO_ROOT / locations.folder(name))
            where = "" if name in locations.folders else "   (downloaded here if missing)"
            lines.append(f"{name:<14}{folder}{where}")
        return lines

    def banner(self, redis_url: str) -> None:
        trainer, inference = self.trainer_url, self.inference_url
        # With a token the example must send it; the banner names the variable, never the value.
        token_set = bool(self.env.get("API_TOKEN", "").strip())
        auth = ' -H "Authorization: Bearer $API_TOKEN"' if token_set else ""
        data = self.data_lines()
        lines = [
            "digitflow is up",
            f"  web page      {inference}/   (draw a digit, models and reports, training)",
            f"  trainer API   {trainer}   (GET /healthz, POST /v1/jobs)",
            f"  inference     {inference}   (GET /v1/models, /v2/health/ready)",
            f"  workers       {self.args.workers} on queue '{self.queue}'",
            f"  redis         {redacted(redis_url)}",
            f"  models        {self.env['MODEL_REGISTRY_DIR']}",
            f"  data          {data[0]}",
            *(f"                {line}" for line in data[1:]),
            "try:",
            f"  curl -s -X POST {trainer}/v1/jobs -H 'Content-Type: application/json'{auth} "
            """-d '{"dataset": "mnist", "preset": "seed-deep", "epochs": 2}'""",
            f"  curl -s {inference}/v1/models",
        ]
        if token_set and not os.environ.get("API_TOKEN", "").strip():
            lines.append("  (API_TOKEN is set in the env file: export it in your shell first)")
        if (self.trainer_port, self.inference_port) != (8001, 8000):
            lines.append(f"  export TRAINER_URL={trainer} INFERENCE_URL={inference}  # digitflow")
        lines.append("Press Ctrl-C to stop everything.")
        for line in lines:
            self.say(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    if args.env_file and Path(args.env_file).is_file():
        for key, value in parse(Path(args.env_file).read_text(encoding="utf-8")).items():
            env.setdefault(key, value)  # the shell wins over .env, as with docker compose
    stack = Stack(args, env)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stack.manager.request_stop)
    # A closed terminal (SIGHUP) stops everything too, as Ctrl-C and SIGTERM do.
    signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # one that came already runs now
    if problem := stack.check_ports():
        stack.say(f"error: {problem}")
        return 1

    from shared.web.settings import DEFAULT_DATA_DIR, DEFAULT_REGISTRY_DIR

    for var, default in (
        ("MODEL_REGISTRY_DIR", DEFAULT_REGISTRY_DIR),
        ("DATA_DIR", DEFAULT_DATA_DIR),
    ):
        path = Path(env.get(var) or REPO_ROOT / default).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)  # absolute: the same folder for every process

    embedded = None
    redis_url = env.get("REDIS_URL", "").strip()
    problem = redis_problem(redis_url, env) if redis_url else "REDIS_URL is not set"
    if problem is None:
        stack.say(f"using Redis at {redacted(redis_url)}")
    else:
        from shared.redis_embedded import EmbeddedRedis

        data_dir = Path(args.redis_dir).expanduser().resolve()
        try:
            embedded = EmbeddedRedis(data_dir=data_dir, persist=True).start()
        except RuntimeError:
            # Ctrl-C signals our whole process group, and redis-server leaves it (setsid) only an
            # instant after the fork: a Ctrl-C in that instant ends it as it asks us to stop.
            if not stack.manager.stop_pending:
                raise
            stack.say("stopped while the embedded Redis was starting")
            return 0
        redis_url = embedded.url
        stack.say(
            f"{problem}: started an embedded Redis at {redis_url} "
            f"(pid {embedded.process.pid}, data in {data_dir})"
        )
    try:
        stack.add_processes(redis_url)
        known = worker_names(redis_url, stack.queue, env)
        threading.Thread(
            target=stack.wait_until_ready, args=(redis_url, known), daemon=True
        ).start()
        if not stack.manager.stop_pending:  # else stopped before anything ran but Redis
            stack.run()
    finally:
        if embedded is not None:
            embedded.stop()
            stack.say("embedded Redis stopped")
    returncode = stack.manager.returncode
    if stack.failed.is_set() or returncode not in STOPPED_BY_SIGNAL:
        stack.say(f"error: everything was stopped after a failure (return code {returncode})")
        return 1
    stack.say("all stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
