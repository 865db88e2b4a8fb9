"""Configuration of the inference service: the only place it reads the environment (how, and
why values are checked once at start: `shared.web.settings`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from shared.web.settings import ServiceSettings


class Settings(ServiceSettings):
    """LOG_LEVEL and MODEL_REGISTRY_DIR (from the base), plus what inference alone reads."""

    #: Seconds between registry change checks in the background thread; 0 = check synchronously
    #: at the start of every request (no thread: used by tests, and handy for debugging).
    registry_poll_seconds: float = Field(0.5, ge=0, le=3600, allow_inf_nan=False)
    #: Model versions kept loaded per worker (LRU); the current defaults are never evicted.
    model_cache_size: int = Field(4, ge=1, le=10_000)
    #: Images per request (JSON instances, V2 batch, uploaded files); more is a 413.
    max_batch_images: int = Field(1024, ge=1, le=10_000_000)
    #: Images per explain request (each costs ~steps forward and backward passes), and per feature
    #: maps request (each answers channels x height x width numbers); more is a 413.
    max_explain_images: int = Field(16, ge=1, le=10_000)
    #: Request bodies larger than this are a 413.
    max_content_length: int = Field(16 * 1024 * 1024, ge=1024, le=2**40)
    #: The trainer's address as the browser sees it (the web page's training view); empty = the
    #: page's own host on TRAINER_PORT.
    trainer_public_url: str = ""
    trainer_port: int = Field(8001, ge=1, le=65535)
    #: Prometheus multiprocess folder (gunicorn.conf.py creates one): /metrics sums every worker.
    prometheus_multiproc_dir: str | None = None
    #: How often each worker adds its request figures to /metrics (they are counted in the
    #: worker's memory in between; a scrape or live read is exact for the worker answering it).
    live_figures_flush_seconds: float = Field(1.0, gt=0, le=3600, allow_inf_nan=False)

    @field_validator("trainer_public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ValueError(f"{value!r} must be an http(s) URL such as https://trainer.example")
        return value.rstrip("/")
