"""The registry poller of one worker: runs the model cache's scan every ``poll_seconds``.

A daemon thread calls ``refresh`` at a fixed rate. It is fork-aware: the thread is started lazily
in the process that serves (gunicorn's post_worker_init hook, or the first request), never in the
master, and a poller inherited through fork() re-creates its lock and thread (and calls
``on_fork``, so the cache re-creates its own locks). ``poll_seconds == 0`` means: no thread, one
synchronous scan at the start of every request (a few stat calls) — deterministic for tests.

A poll never raises. A store that cannot be reached (an object store down, an unmounted volume)
leaves everything loaded in place: the worker keeps serving it, `status()` and the metrics say the
store is unreachable, since when and why, and the next poll that reaches it catches up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.registry import RegistryUnavailableError

logger = logging.getLogger(__name__)


class Poller:
    """Calls `refresh` every `poll_seconds` in the serving process, and remembers whether the
    store answered."""

    def __init__(
        self,
        refresh: Callable[[], object],
        poll_seconds: float,
        location: str,
        *,
        on_poll: Callable[[bool, bool], None],
        on_fork: Callable[[], None],
    ) -> None:
        self.poll_seconds = float(poll_seconds)
        self.location = location
        self._refresh = refresh
        self._on_poll = on_poll
        self._on_fork = on_fork
        #: Whether the last poll reached the store, what stopped it, and since when (time.time).
        self.reachable: bool | None = None
        self.error: str | None = None
        self._unreachable_since: float | None = None
        self._last_error: tuple[str, float] = ("", 0.0)
        self._init_process_state()

    def _init_process_state(self) -> None:
        """The lock and thread belong to a process: (re)create them after a fork."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Called on every request (cheap) and from gunicorn's post_worker_init hook."""
        if self._pid != os.getpid():
            self._init_process_state()
            self._on_fork()
        if self.poll_seconds <= 0:
            self.poll_once()
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name="digitflow-registry-poller", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        logger.info(
            "registry poller started in pid %d (every %.3gs, %s)",
            os.getpid(), self.poll_seconds, self.location,
        )  # fmt: skip
        # Fixed rate, not fixed delay: a change is seen at most one poll interval after it
        # happened (plus the load of the new version), however long the scans take.
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.poll_once()
            next_at = max(next_at + self.poll_seconds, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def poll_once(self) -> None:
        """One poll that never raises (see the module's docstring)."""
        try:
            self._refresh()
        except Exception as exc:  # never let the poller die or a request fail because of a scan
            unreachable = isinstance(exc, RegistryUnavailableError | OSError)
            key = f"{type(exc).__name__}: {exc}"
            if unreachable:
                if self.reachable is not False:
                    self._unreachable_since = time.time()
                self.reachable = False
                self.error = str(exc)
            self._on_poll(False, not unreachable)
            # The same failure (say, an unmounted volume) is logged once a minute, not per poll.
            now = time.monotonic()
            if key != self._last_error[0] or now - self._last_error[1] > 60:
                self._last_error = (key, now)
                if unreachable:
                    logger.error("registry unreachable (%s); serving what is loaded", exc)
                else:
                    logger.exception("registry scan failed; keeping the current models")
            return
        if self.reachable is False:
            logger.info("registry reachable again (%s)", self.location)
        self.reachable, self.error, self._unreachable_since = True, None, None
        self._last_error = ("", 0.0)
        self._on_poll(True, True)

    def status(self) -> dict[str, Any]:
        """{"location", "reachable" (None before the first poll), "error"?, "unreachable_since"?,
        "serving"?} as of the last poll."""
        out: dict[str, Any] = {"location": self.location, "reachable": self.reachable}
        if self.reachable is False:
            out["error"] = self.error
            out["unreachable_since"] = self._unreachable_since
            out["serving"] = (
                "the versions loaded before the store became unreachable; "
                "new versions, pins and aliases are picked up when it answers again"
            )
        return out
