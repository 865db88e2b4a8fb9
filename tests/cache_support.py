"""What the inference tests do to a `ModelCache` that the service never does: stop its poller
thread and ask whether it runs. A gunicorn worker's poller is a daemon thread that ends with its
process; only a test, making many apps in one process, needs to stop one."""

from __future__ import annotations

from inference_service.serving import ModelCache


def stop_polling(cache: ModelCache, timeout: float = 5.0) -> None:
    """Stop the cache's poller thread and wait for it (a stopped cache may be started again)."""
    poller = cache.poller
    poller._stop.set()
    thread = poller._thread
    if thread is not None:
        thread.join(timeout)
    poller._thread = None


def is_polling(cache: ModelCache) -> bool:
    thread = cache.poller._thread
    return thread is not None and thread.is_alive()
