"""Configuration of the inference service: environment variables, overridable per app.

Every knob has one name (the environment variable's, see the coordination contract), so
``create_app({"MAX_BATCH_IMAGES": 8})`` in a test means exactly what ``MAX_BATCH_IMAGES=8`` means in
production. Values are parsed and checked once at startup: a typo fails fast with a clear message
instead of surfacing as a 500 on the first request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The keys create_app() understands (also read from the environment).
SETTING_NAMES = (
    "MODEL_REGISTRY_DIR",
    "REGISTRY_POLL_SECONDS",
    "MODEL_CACHE_SIZE",
    "MAX_BATCH_IMAGES",
    "MAX_CONTENT_LENGTH",
    "LOG_LEVEL",
    "PREDICT_FAST_PATH",
)


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Parsed configuration of one app instance."""

    model_registry_dir: Path
    #: Seconds between registry change checks in the background thread; 0 = check synchronously
    #: at the start of every request (no thread: used by tests, and handy for debugging).
    registry_poll_seconds: float = 0.5
    #: Model versions kept loaded per worker (LRU); the current defaults are never evicted.
    model_cache_size: int = 4
    #: Images per request (JSON instances, V2 batch, uploaded files); more is a 413.
    max_batch_images: int = 1024
    #: Request bodies larger than this are a 413 (Flask's MAX_CONTENT_LENGTH).
    max_content_length: int = 16 * 1024 * 1024
    log_level: str = "INFO"
    #: Answer well-formed predict / V2 infer requests in the WSGI fast path
    #: (inference_service/fastpath.py); off sends every request through Flask (same answers,
    #: ~0.15 ms slower each).
    predict_fast_path: bool = True

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from `overrides` first, then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        overrides = dict(overrides or {})

        def raw(name: str, default: Any) -> Any:
            if name in overrides and overrides[name] is not None:
                return overrides[name]
            value = env.get(name)
            return default if value is None or value == "" else value

        log_level = str(raw("LOG_LEVEL", "INFO")).upper()
        if not isinstance(logging.getLevelName(log_level), int):
            raise SettingsError(f"LOG_LEVEL={log_level!r} is not a logging level")
        return cls(
            model_registry_dir=Path(raw("MODEL_REGISTRY_DIR", "./var/models")),
            registry_poll_seconds=_number("REGISTRY_POLL_SECONDS", raw("REGISTRY_POLL_SECONDS", 0.5), float, 0, 3600),
            model_cache_size=_number("MODEL_CACHE_SIZE", raw("MODEL_CACHE_SIZE", 4), int, 1, 10_000),
            max_batch_images=_number("MAX_BATCH_IMAGES", raw("MAX_BATCH_IMAGES", 1024), int, 1, 10_000_000),
            max_content_length=_number(
                "MAX_CONTENT_LENGTH", raw("MAX_CONTENT_LENGTH", 16 * 1024 * 1024), int, 1024, 2**40
            ),
            log_level=log_level,
            predict_fast_path=_flag("PREDICT_FAST_PATH", raw("PREDICT_FAST_PATH", True)),
        )  # fmt: skip


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r} must be on or off (1/0, true/false, yes/no)")


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool):
        raise SettingsError(f"{name}={value!r} is not a number")
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={value!r} is not a valid {kind.__name__}") from None
    if kind is float and parsed != parsed:  # NaN
        raise SettingsError(f"{name}={value!r} is not a number")
    if not low <= parsed <= high:
        raise SettingsError(f"{name}={value!r} must be between {low} and {high}")
    return parsed
