"""The integration layer: the services' pieces against real Redis, RQ workers, gunicorn, CLI
subprocesses and local servers. Every test in this folder carries the `integration` marker. The
fixtures these tests use are shared with tests/reliability and live in tests/conftest.py (Redis,
a queue of the test's own, a trainer stack); plain helpers are in tests/*_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
