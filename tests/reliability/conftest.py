"""The reliability layer: faults, load, fuzzing and security checks, mostly on real processes.
Every test in this folder carries the `reliability` marker, so `pytest -m reliability` runs
exactly this folder. Redis, queues and the trainer stack come from tests/conftest.py; real
services from tests/service_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)
