"""Taking turns between the pytest-xdist workers of one run: an `exclusive` test runs alone in
any xdist run (`make test` gives them a run of their own; `pytest -n 2 tests/integration` mixes
them in)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def taking_turns(folder: Path, alone: bool) -> Iterator[None]:
    """A readers-writer lock between the xdist workers of one run, on two flock files: tests
    share `tests.lock`; an `alone` test takes it exclusively. Everyone passes `gate.lock` first,
    and an `alone` test keeps the gate while it waits, so no new test starts in the meantime
    (without the gate, the other worker could keep a shared lock forever)."""
    with (folder / "gate.lock").open("a") as gate, (folder / "tests.lock").open("a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing `tests` releases it
