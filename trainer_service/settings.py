"""Everything the trainer reads from the environment: the API, the worker, the job and the CLI.

One `TrainerSettings` per process (``TrainerSettings.load(overrides)``); nothing else in
`trainer_service` reads ``os.environ``, except what must happen before any import (the BLAS
thread variables in `worker.configure_blas_threads`, and gunicorn.conf.py, which is gunicorn's).
Field names are the variables' names in lower case; a value that cannot be used stops the
process at start with a message naming the variable (`shared.web.settings.SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from shared.config import DatasetName
from shared.web.settings import DEFAULT_DATA_DIR, ServiceSettings
from trainer_service.api.cors import parse_origins

if TYPE_CHECKING:
    from shared.datasets import DataLocations

SECONDS_PER_DAY = 86400


class TrainerSettings(ServiceSettings):
    """The trainer's settings (README, "Environment variables"); the token is never shown."""

    redis_url: str = "redis://localhost:6379/0"
    rq_queue: str = "training"
    #: Connecting to Redis, or a Redis call, that hangs longer than this fails (the API answers
    #: 503; workers, jobs and sweep steps wait or retry): every client (queueing.connect, and
    #: Optuna's, sweeps.coordinator.storage) uses it.
    redis_socket_timeout: float = Field(default=5.0, gt=0)
    job_timeout: int = 7200
    #: Seconds a finished job or sweep is kept; FAILURE_TTL: a failed, stopped or canceled one.
    result_ttl: int = Field(default=7 * SECONDS_PER_DAY, gt=0)
    failure_ttl: int = Field(default=30 * SECONDS_PER_DAY, gt=0)
    #: More queued jobs than this for one model → 429 (0: no limit).
    max_queued_jobs_per_model: int = 10
    idempotency_ttl: int = SECONDS_PER_DAY
    api_token: SecretStr | None = None
    cors_origins: Annotated[frozenset[str], NoDecode] = frozenset()
    job_heartbeat_seconds: int = Field(default=5, ge=1)
    job_heartbeat_grace: int = Field(default=25, ge=1)
    #: How often each worker moves the running sweeps on (sweeps.coordinator.reconcile).
    sweep_reconcile_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Seconds before each retry of a job that hit a transient error (comma separated).
    job_retry_delays: Annotated[tuple[int, ...], NoDecode] = (5, 30, 120)
    #: How many retries (default: one per delay; the last delay repeats when there are more).
    job_retries: int | None = Field(default=None, ge=0)
    #: Datasets live in ``<data_dir>/<name>`` (downloaded there when missing) unless a dataset's
    #: own folder is set; DATASET_MIRRORS replaces the built-in download mirrors.
    data_dir: Path = DEFAULT_DATA_DIR
    mnist_data_dir: Path | None = None
    fashion_mnist_data_dir: Path | None = None
    dataset_mirrors: Annotated[tuple[str, ...], NoDecode] = ()
    #: Datasets the worker loads before forking jobs (comma separated, ``none``; unset: all).
    worker_preload_datasets: Annotated[tuple[str, ...], NoDecode] = get_args(DatasetName)

    @field_validator("api_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        return None if value is None or not str(value).strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> frozenset[str]:
        return value if isinstance(value, frozenset) else parse_origins(str(value or ""))

    @field_validator("job_retry_delays", "dataset_mirrors", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if info.field_name == "job_retry_delays" and any(int(d) < 0 for d in value):
            raise ValueError("delays must be >= 0 seconds")
        return value

    @field_validator("worker_preload_datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "none":
            return ()
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        known = get_args(DatasetName)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"unknown dataset(s) {', '.join(unknown)} (known: {', '.join(known)}, or 'none')"
            )
        return names

    def token(self) -> str | None:
        """The bearer token mutating routes require, if any (for the comparison only)."""
        return self.api_token.get_secret_value() if self.api_token is not None else None

    def retry_delays(self) -> list[int]:
        """The wait before each retry; as many entries as retries (JOB_RETRIES caps or pads)."""
        delays = list(self.job_retry_delays)
        retries = len(delays) if self.job_retries is None else self.job_retries
        delays += [delays[-1] if delays else 0] * (retries - len(delays))
        return delays[:retries]

    def data_locations(self) -> DataLocations:
        """Where each named dataset lives and where it is downloaded from."""
        # the datasets (NumPy): settings are read by light processes too
        from shared.datasets import DataLocations

        folders = {"mnist": self.mnist_data_dir, "fashion-mnist": self.fashion_mnist_data_dir}
        return DataLocations(
            data_dir=self.data_dir,
            folders={name: path for name, path in folders.items() if path is not None},
            mirrors=self.dataset_mirrors,
        )
