"""Settings read from the environment in one place per service (pydantic-settings): one
`ServiceSettings` subclass each, its fields the variables' names in lower case. `load` gives
`create_app(config)` overrides precedence, so ``create_app({"MAX_BATCH_IMAGES": 8})`` in a test
means what ``MAX_BATCH_IMAGES=8`` means in production. A value that cannot be used stops the
service at start with a message naming the variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.registry import DEFAULT_CACHE_MAX_MB, Registry

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
    #: Where the registry is, as a URL: ``s3://bucket/prefix`` (endpoint and credentials from
    #: the standard AWS variables: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or ``file:///path``.
    #: When set it wins and MODEL_REGISTRY_DIR is ignored (the image sets MODEL_REGISTRY_DIR, so
    #: setting both must not be an error); unset, the registry is the folder MODEL_REGISTRY_DIR.
    model_registry_url: str | None = None
    #: Where an object-store registry keeps its verified downloads (weights, report files);
    #: unset: a folder of this user's under the temp dir. Unused by a folder registry.
    registry_cache_dir: Path | None = None
    #: MiB of downloads kept there; the least recently used beyond it are removed, never one a
    #: process holds (loaded, being read or downloaded); 0 keeps only those.
    registry_cache_max_mb: int = Field(DEFAULT_CACHE_MAX_MB, ge=0, le=2**30)

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> str:
        level = str(value).strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"{value!r} is not a logging level")
        return level

    @field_validator("model_registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        if value.startswith("s3://") and not value.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError(f"{value!r} names no bucket: use s3://bucket/prefix")
        if not value.startswith(("s3://", "file:///")):
            raise ValueError(f"{value!r} must be s3://bucket/prefix or file:///absolute/path")
        return value

    @property
    def registry_location(self) -> str:
        """MODEL_REGISTRY_URL when set, else the folder MODEL_REGISTRY_DIR."""
        return self.model_registry_url or str(self.model_registry_dir)

    def open_registry(self, *, read_only: bool = False) -> Registry:
        """The one way a service opens its registry (inference: `read_only=True`)."""
        return Registry(
            self.registry_location,
            read_only=read_only,
            cache_dir=self.registry_cache_dir,
            cache_max_mb=self.registry_cache_max_mb,
        )

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
