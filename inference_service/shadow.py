"""Shadow runs: the shadow version answers the default route's requests too, unseen, after the
client has its answer.

Why this shape: the shadow must never sit on the answer's latency path nor be able to fail it.
So the predict route only *schedules* a comparison, from the WSGI response's ``close()``, which
the server calls once the answer is sent (`Pending`); `ShadowRunner` puts it on a bounded queue
that one daemon thread per worker process drains at the lowest CPU priority (NumPy's matrix
products release the GIL, so it overlaps the next request; when the cores are busy with answers,
it waits). A full queue drops the work and counts the drop; an exception in
a shadow run (a version that loaded but fails) is counted and logged, never raised. The figures
(agreement, confusion, confidence) go to `inference_service.telemetry`, multiprocess-safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from inference_service.loading import Served
from inference_service.telemetry import Telemetry
from shared.registry.errors import FirstTime

logger = logging.getLogger(__name__)

#: Comparisons waiting per worker; beyond this, new ones are dropped (and counted): a saturated
#: worker sheds shadow work instead of falling behind on it.
QUEUE_SIZE = 16


class ShadowRunner:
    """The bounded queue of comparisons of one worker process and the thread that runs them."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._pid: int | None = None
        self._queue: queue.Queue[tuple[Served, Served, np.ndarray, np.ndarray]]
        self._thread: threading.Thread | None = None
        self._first_failure = FirstTime()  # each version's failure logged once per error type

    def _started(self) -> None:
        """Queue and thread belong to a process: (re)create them lazily, after a fork too."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._queue = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="digitflow-shadow", daemon=True)
        self._thread.start()

    def submit(self, served: Served, shadow: Served, x: np.ndarray, proba: np.ndarray) -> None:
        """Schedule one comparison; never blocks (a full queue drops it and counts the drop)."""
        self._started()
        try:
            self._queue.put_nowait((served, shadow, x, proba))
        except queue.Full:
            self.telemetry.shadow_drops.labels(served.name).inc()

    def _run(self) -> None:
        # The lowest CPU priority for this thread alone (Linux: a thread id is a process id for
        # setpriority): when the cores are busy with answers, the shadow waits, not the answers.
        with contextlib.suppress(AttributeError, OSError):  # elsewhere: the queue bound alone
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            served, shadow, x, proba = self._queue.get()
            try:
                other = shadow.predict_proba(x)
                self.telemetry.observe_shadow(
                    served.name, shadow.version, proba.argmax(axis=1), other.argmax(axis=1),
                    float(proba.max(axis=1).sum()), float(other.max(axis=1).sum()),
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a failing shadow must never stop the thread
                self.telemetry.observe_shadow_error(shadow.name, shadow.version)
                if self._first_failure((shadow.name, shadow.version, type(exc).__name__)):
                    logger.exception(
                        "shadow version %d of model %r failed", shadow.version, shadow.name
                    )
            finally:
                self._queue.task_done()


class Pending:
    """A WSGI body that calls `after` once the server has sent it (PEP 3333: the server calls
    ``close()`` when the response is complete, whether or not it was sent in full)."""

    def __init__(self, body: Iterable[bytes], after: Callable[[], Any]) -> None:
        self._body = body
        self._after = after

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            self._after()
        except Exception:  # noqa: BLE001 - the answer is already sent; log, never raise
            logger.exception("scheduling a shadow run failed")
