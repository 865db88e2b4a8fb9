"""gunicorn settings for the inference service.

    gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"

Binds 0.0.0.0:$INFERENCE_PORT (8000); workers, threads, logs and one BLAS thread per worker as
shared.web.gunicorn_common says (gthread workers share one model cache). The hooks below do the
rest, each in the process it concerns: never the registry poller or a flush thread in the
master; Prometheus multiprocess mode so /metrics aggregates every worker. The access log line
ends with the request time in microseconds; ACCESS_LOG=off drops it. Any setting can still be
overridden on the command line or with GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

from shared.heap import freeze_loaded_heap, reuse_freed_memory
from shared.web.gunicorn_common import settings

globals().update(settings("INFERENCE_PORT", 8000, "digitflow-inference"))

_created_prom_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _created_prom_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digitflow-inference-prom-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

graceful_timeout = 20
max_requests = 0  # never recycle workers: they would reload every model
access_log_format = '%(h)s "%(r)s" %(s)s %(b)sB %(D)sus worker=%(p)s'


def on_starting(server):
    """Start from an empty metrics folder: stale files from an earlier run would be summed in."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def post_worker_init(worker):
    """In the worker, after the app is loaded: pin BLAS to 1 thread (a pool the size of the
    machine in every worker costs far more than it gains for batch-1 work), freeze the loaded
    heap and keep freed memory for the next batch (shared.heap), start the registry poller and
    the live figures' flush thread."""
    try:
        # threadpoolctl: best effort, only in the process that computes
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception as exc:  # pragma: no cover - best effort
        worker.log.warning("threadpoolctl failed: %s", exc)
    # The app is loaded; models are not frozen with it (the poller loads and drops them).
    freeze_loaded_heap()
    reuse_freed_memory()
    state = _state(worker)
    if state is not None:
        state.cache.poller.ensure_started()
        state.telemetry.start_flushing()


def worker_exit(server, worker):
    """A worker's last figures (counted since its last flush) reach /metrics before it goes."""
    state = _state(worker)
    if state is not None:
        state.telemetry.flush()


def _state(worker):
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get("digitflow")


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the aggregated /metrics."""
    # prometheus_client reads PROMETHEUS_MULTIPROC_DIR when imported: not at config load
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _created_prom_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
