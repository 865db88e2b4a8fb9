"""Fixtures the unit tests share: a temporary registry and both Flask apps on it, driven through
Flask's test client. No server of any kind: the trainer app points at a Redis address where
nothing listens, which proves that a route refused or answered here never needed Redis (the
routes that do are tested in tests/integration)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference_service.app import create_app as create_inference_app
from shared.registry import Registry
from tests.cache_support import stop_polling
from tests.trainer_support import DEAD_REDIS, trainer_app


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """An empty registry in the test's folder; both apps below serve it."""
    return Registry(tmp_path / "models")


@pytest.fixture
def make_inference_app(registry: Registry) -> Iterator[Callable[..., Flask]]:
    """Build inference apps on `registry` (config overrides as keywords). REGISTRY_POLL_SECONDS=0
    re-reads the registry at the start of every request, so a publish or pin is seen by the very
    next request without sleeping. Every app's model cache is stopped afterwards."""
    apps: list[Flask] = []

    def make(**config) -> Flask:
        app = create_inference_app(
            {"MODEL_REGISTRY_DIR": str(registry.root), "REGISTRY_POLL_SECONDS": 0, **config}
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        stop_polling(app.extensions["digitflow"].cache)


@pytest.fixture
def inference_app(make_inference_app) -> Flask:
    return make_inference_app()


@pytest.fixture
def inference_client(inference_app: Flask) -> FlaskClient:
    return inference_app.test_client()


@pytest.fixture
def make_trainer_client(registry: Registry) -> Callable[..., FlaskClient]:
    """Build trainer API test clients on `registry`, with no token and a dead Redis unless the
    keywords say otherwise; every JSON answer is held to the OpenAPI document
    (tests.trainer_support.DocumentedClient)."""

    def make(**config) -> FlaskClient:
        app = trainer_app(
            {
                "REDIS_URL": DEAD_REDIS,
                "MODEL_REGISTRY_DIR": str(registry.root),
                "API_TOKEN": "",
                **config,
            }
        )
        return app.test_client()

    return make


@pytest.fixture
def trainer_client(make_trainer_client) -> FlaskClient:
    return make_trainer_client()
