"""The per-app service objects and how a Flask view reaches them (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from inference_service.serving import ModelCache
from inference_service.settings import Settings
from inference_service.shadow import ShadowRunner
from inference_service.telemetry import Telemetry
from shared.registry import Registry
from shared.web.app import app_state


@dataclass
class ServiceState:
    """What the routes use; one per app, hence one per gunicorn worker."""

    settings: Settings
    registry: Registry
    cache: ModelCache
    telemetry: Telemetry
    shadows: ShadowRunner


def service() -> ServiceState:
    """The ServiceState of the app handling the current Flask request."""
    return app_state()
