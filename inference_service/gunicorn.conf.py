"""gunicorn settings for the inference service.

    gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"

* binds 0.0.0.0:$INFERENCE_PORT (8000), $WEB_CONCURRENCY workers (2); $GUNICORN_THREADS > 1 picks
  the gthread worker (keep-alive, threads share one model cache), else the sync worker;
* BLAS is limited to one thread per worker (env set here, before any worker imports NumPy, plus
  threadpoolctl after the app loads): two workers on two cores must not each start a BLAS pool
  the size of the machine — that oversubscription costs far more than it gains for batch-1 work;
* the registry poller (hot reload) starts in ``post_worker_init`` — in each worker after the app
  is loaded, never in the master;
* Prometheus multiprocess mode: PROMETHEUS_MULTIPROC_DIR is created (or emptied) before workers
  start so /metrics aggregates every worker; dead workers are marked in ``child_exit``;
* the access log line ends with the request time in microseconds; ACCESS_LOG=off drops it.

Any setting can still be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")

_created_prom_dir = False
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="digitflow-inference-prom-")
    _created_prom_dir = True
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = f"0.0.0.0:{int(os.environ.get('INFERENCE_PORT', '8000'))}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 20
keepalive = 5
# gunicorn's largest request line (its default is 4094): longer URLs are answered by the app,
# with a JSON error like every other bad request, instead of by gunicorn with an HTML 414.
limit_request_line = 8190
max_requests = 0  # never recycle workers: they would reload every model
proc_name = "digitflow-inference"
# gunicorn >= 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/); two
# masters on one machine (inference + trainer, parallel tests) would unlink each other's. Unused here.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
errorlog = "-"
# ACCESS_LOG: "-" (stdout, the default), a file path, or "off" (no per-request line).
_access = os.environ.get("ACCESS_LOG", "-").strip()
accesslog = None if _access.lower() in ("", "off", "none", "0", "false") else _access
access_log_format = '%(h)s "%(r)s" %(s)s %(b)sB %(D)sus worker=%(p)s'


def on_starting(server):
    """Start from an empty metrics folder: stale files from an earlier run would be summed in."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def post_worker_init(worker):
    """In the worker, after the app is loaded: pin BLAS to 1 thread, start the registry poller."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception as exc:  # pragma: no cover - best effort
        worker.log.warning("threadpoolctl failed: %s", exc)
    state = getattr(worker.wsgi, "extensions", {}).get("digitflow")
    if state is not None:
        state.cache.ensure_started()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the aggregated /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _created_prom_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
