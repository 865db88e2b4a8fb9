"""The per-app service objects and how a request reaches them (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from inference_service.serving import ModelCache
from inference_service.settings import Settings
from inference_service.telemetry import Telemetry
from shared.registry import Registry

EXTENSION_KEY = "digitflow"


@dataclass
class ServiceState:
    """What the blueprints use; one per app, hence one per gunicorn worker."""

    settings: Settings
    registry: Registry
    cache: ModelCache
    telemetry: Telemetry


def service() -> ServiceState:
    """The ServiceState of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
