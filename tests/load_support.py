"""Prediction load and its checks, shared by the load tests (tests/reliability/test_load.py on one
host, tests/integration/test_multihost.py through a balancer): a bounded load loop that records
every answer, and the registry's default over time to judge each answer's version against."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import requests

from tests.service_support import BATCH


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    status: int | None  # None: connection error
    version: int | None
    error: str = ""


def prediction_load(
    url: str,
    stop: threading.Event,
    out: list[Sample],
    hard_stop_seconds: float,
    max_requests: int = 1_000_000,
) -> None:
    """POST one image to `url` over a keep-alive session until `stop` is set, `hard_stop_seconds`
    have passed or `max_requests` were sent (bounded even if the test body fails)."""
    body = {"instances": BATCH[:1].tolist()}
    deadline = time.monotonic() + hard_stop_seconds
    with requests.Session() as session:
        for _ in range(max_requests):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            t0 = time.monotonic()
            try:
                r = session.post(url, json=body, timeout=10)
                version = r.headers.get("X-Model-Version")
                out.append(
                    Sample(t0, time.monotonic(), r.status_code, int(version) if version else None)
                )
            except requests.RequestException as exc:
                out.append(Sample(t0, time.monotonic(), None, None, repr(exc)))


class Timeline:
    """The registry's default over time. Change k is recorded as (before, after, new default):
    the old default holds until `after`, the new one from `before`."""

    def __init__(self, first: int) -> None:
        self.changes: list[tuple[float, float, int]] = [(-math.inf, -math.inf, first)]

    def change(self, action) -> int:
        before = time.monotonic()
        new_default = action()
        self.record(before, time.monotonic(), new_default)
        return new_default

    def record(self, before: float, after: float, new_default: int) -> None:
        """The default became `new_default` at some instant of [before, after] (an observer
        that did not see it at `before` and saw it at `after`)."""
        self.changes.append((before, after, new_default))

    def segments(self) -> list[tuple[float, float, int]]:
        """(from, to, version): when each default may have been in effect."""
        out = []
        for k, (before, _after, version) in enumerate(self.changes):
            until = self.changes[k + 1][1] if k + 1 < len(self.changes) else math.inf
            out.append((before, until, version))
        return out

    def staleness(self, sample: Sample) -> float:
        """0 if sample.version was a default during the request, else how long before the
        request started it stopped being one (inf if it never was)."""
        best = math.inf
        for start, end, version in self.segments():
            if version != sample.version:
                continue
            if start <= sample.end and end >= sample.start:
                return 0.0
            if end < sample.start:
                best = min(best, sample.start - end)
        return best
