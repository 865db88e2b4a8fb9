"""The integration layer: the services' pieces against real Redis, RQ workers, gunicorn, CLI
subprocesses and local servers. Every test in this folder carries the `integration` marker. The
fixtures these tests use are shared with tests/reliability and live in tests/conftest.py (Redis,
a queue of the test's own, a trainer stack); plain helpers are in tests/*_support.py. The compose
test (test_compose_podman.py) is moved to the end of the session, and its image caches are warmed
in the background from the start."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent


COMPOSE_TEST = HERE / "test_compose_podman.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
    # The compose test runs last, its images prepared in the background meanwhile (CachePrewarm).
    compose = [item for item in items if item.path == COMPOSE_TEST]
    if compose and not config.option.collectonly:
        items[:] = [item for item in items if item.path != COMPOSE_TEST] + compose
        if os.geteuid() == 0 and shutil.which("podman") and shutil.which("docker-compose"):
            from tests.integration.test_compose_podman import PREWARM_KEY, CachePrewarm

            workdir = Path(tempfile.mkdtemp(prefix="digitflow-prewarm-"))
            config.stash[PREWARM_KEY] = CachePrewarm(workdir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.integration.test_compose_podman import PREWARM_KEY

    prewarm = session.config.stash.get(PREWARM_KEY, None)
    if prewarm is not None:
        prewarm.stop()
        shutil.rmtree(prewarm.workdir, ignore_errors=True)
