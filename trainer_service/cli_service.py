"""The `worker` and `api` subcommands of `python -m trainer_service`.

`trainer_service/__main__.py` (train/evaluate/download) calls `register_service_commands` with
its argparse subparsers; each command stores its handler as `func` (args -> exit code).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

GUNICORN_CONF = Path(__file__).with_name("gunicorn.conf.py")
APP_SPEC = "trainer_service.api:create_app()"


def register_service_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `worker` and `api` to the `python -m trainer_service` command line."""
    # RQ and Redis: only for the worker command; --help stays light
    from trainer_service.worker import add_worker_arguments

    worker = subparsers.add_parser(
        "worker",
        help="run an RQ training worker on $RQ_QUEUE",
        description="Run a training worker (RQ) on the queue $RQ_QUEUE at $REDIS_URL. "
        "Several workers may share one queue.",
    )
    add_worker_arguments(worker)
    worker.set_defaults(func=worker_command)

    api = subparsers.add_parser(
        "api",
        help="run the trainer HTTP API under gunicorn",
        description="Run the trainer API under gunicorn (trainer_service/gunicorn.conf.py).",
    )
    api.add_argument("--port", type=int, help="port to bind (default: $TRAINER_PORT or 8001)")
    api.add_argument("--host", default=None, help="address to bind (default 0.0.0.0)")
    api.add_argument(
        "--workers", type=int, help="gunicorn workers (default: $WEB_CONCURRENCY or 2)"
    )
    api.set_defaults(func=api_command)


def worker_command(args: argparse.Namespace) -> int:
    # RQ and Redis: only for the worker command; --help stays light
    from trainer_service.worker import worker_command as run

    return run(args)


def api_command(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn, so signals and exit codes are gunicorn's own."""
    env = dict(os.environ)
    if args.port is not None:
        env["TRAINER_PORT"] = str(args.port)
    if args.host:
        env["GUNICORN_BIND"] = f"{args.host}:{env.get('TRAINER_PORT', '8001')}"
    if args.workers is not None:
        env["WEB_CONCURRENCY"] = str(args.workers)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_SPEC]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return
