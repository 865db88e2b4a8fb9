"""The end-to-end layer: the whole stack as it is deployed (both services under gunicorn, a
worker, Redis), driven over HTTP, by the CLI and in a real browser. Every test here is marked
`integration` and `slow`. Each module starts its stack once (module scope); a test that changes
the stack's state (a model, a pin, a stopped process) uses names of its own or puts the state back,
so the tests of a module pass in any order."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
