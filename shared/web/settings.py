"""Settings read from the environment in one place per service (pydantic-settings).

Each service declares one `ServiceSettings` subclass; its field names are the environment
variables' names in lower case (``MAX_BATCH_IMAGES`` → ``max_batch_images``). `load` gives
`create_app(config)` overrides precedence over the environment, so ``create_app({"MAX_BATCH_IMAGES":
8})`` in a test means exactly what ``MAX_BATCH_IMAGES=8`` means in production. A value that
cannot be used stops the service at start with a message naming the variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where models live when MODEL_REGISTRY_DIR is not set (``make up``, the CLI, the tests).
DEFAULT_REGISTRY_DIR = Path("./var/models")
#: Where datasets live when DATA_DIR is not set (``./var/data/<name>``).
DEFAULT_DATA_DIR = Path("./var/data")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


class ServiceSettings(BaseSettings):
    """What every service reads: its log level and where the model registry is."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True
    )

    log_level: str = "INFO"
    model_registry_dir: Path = DEFAULT_REGISTRY_DIR

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> str:
        level = str(value).strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"{value!r} is not a logging level")
        return level

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Self:
        """The environment, with `overrides` (keys named like the variables) taking precedence.
        Keys that are not settings (e.g. Flask's TESTING) are ignored here; None or an empty
        string means "not given", as an empty variable does (``env_ignore_empty``)."""
        given = {
            key.lower(): value
            for key, value in (overrides or {}).items()
            if key.lower() in cls.model_fields and value is not None and value != ""
        }
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise SettingsError(f"invalid setting: {problems}") from None
