"""The `worker` subcommand of `python -m trainer_service` (the trainer API runs under gunicorn
directly, as the Procfile starts it). Imported on every invocation (so `--help` lists it): its
top-level imports stay light."""

from __future__ import annotations

import argparse


def register_service_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `worker` to the `python -m trainer_service` command line."""
    # RQ and Redis: only for the worker command; --help stays light
    from trainer_service.worker.process import add_worker_arguments

    worker = subparsers.add_parser(
        "worker",
        help="run an RQ training worker on $RQ_QUEUE",
        description="Run a training worker (RQ) on the queue $RQ_QUEUE at $REDIS_URL. "
        "Several workers may share one queue.",
    )
    add_worker_arguments(worker)
    worker.set_defaults(func=worker_command)


def worker_command(args: argparse.Namespace) -> int:
    # RQ and Redis: only for the worker command; --help stays light
    from trainer_service.worker.process import worker_command as run

    return run(args)
