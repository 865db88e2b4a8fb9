"""One logging setup for every process we start (gunicorn apps, the worker, the CLI)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"

#: The loggers that are ours: everything under these names follows LOG_LEVEL.
OUR_LOGGERS = ("shared", "trainer_service", "inference_service")


def configure_logging(level: str | int = "INFO", fmt: str = FORMAT) -> None:
    """Our loggers at `level`; a stderr handler when the host process has none (gunicorn's
    master configures only its own loggers, so our lines would otherwise vanish)."""
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.basicConfig(format=fmt)  # a no-op when the root logger has a handler already
