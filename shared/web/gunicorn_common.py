"""What both services' gunicorn config files share: each `<service>/gunicorn.conf.py` puts
`settings(...)` in its globals, then adds its own hooks, log format and graceful timeout."""

from __future__ import annotations

import os
import signal
from typing import Any

from shared.blas import BLAS_THREAD_VARIABLES


def settings(port_variable: str, default_port: int, proc_name: str) -> dict[str, Any]:
    """gunicorn settings: bind 0.0.0.0:$<port_variable>, $WEB_CONCURRENCY workers (2),
    $GUNICORN_THREADS > 1 picks the gthread worker (else sync), $LOG_LEVEL, $ACCESS_LOG ("off",
    the default, "-" for stdout, or a file). Also sets one BLAS thread per worker unless the
    environment says otherwise (before any worker imports NumPy): two workers on two cores must
    not each start a BLAS pool the size of the machine. The access log is off by default: gunicorn
    formats and writes a line per request in the worker that answers it, which measured as the
    largest single cost of a single-image predict after HTTP itself (BENCHMARKS.md §3); /metrics
    counts every request by route and status either way."""
    for var in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(var, "1")
    threads = int(os.environ.get("GUNICORN_THREADS", "1"))
    access = os.environ.get("ACCESS_LOG", "off").strip()
    return {
        "bind": f"0.0.0.0:{int(os.environ.get(port_variable, default_port))}",
        "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "proc_name": proc_name,
        # gunicorn >= 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl (else
        # ~/.gunicorn/); two masters on one machine (trainer + inference, parallel tests) would
        # unlink each other's. Unused.
        "control_socket_disable": True,
        "timeout": 30,  # a worker silent this long is killed and replaced
        "keepalive": 5,
        # gunicorn's largest request line (its default is 4094): longer URLs are answered by the
        # app, with a JSON error like every other bad request, instead of by gunicorn (HTML 414).
        "limit_request_line": 8190,
        "loglevel": os.environ.get("LOG_LEVEL", "info").lower(),
        "errorlog": "-",
        "accesslog": None if access.lower() in ("", "off", "none", "0", "false") else access,
        "post_fork": stop_at_once_until_loaded,
    }


def stop_at_once_until_loaded(server: Any, worker: Any) -> None:
    """gunicorn's `post_fork` hook: a worker told to stop before it has loaded the app exits.

    gunicorn's worker only flags itself on SIGTERM and acts on the flag in its request loop, so
    a worker still importing the app (1-3 s on a busy machine) finished the import first and kept
    its master, which waits for it, past the 2 s a stop may take. Until here the forked worker
    runs the master's handler, which only queues a signal in the worker's copy of the master's
    queue, where nobody reads it: that copy is searched too (it also holds a stop the master
    had queued before it forked). Such a worker has nothing to finish or flush: `os._exit`, which
    neither an `except` in the code being imported nor a slow interpreter teardown can hold up."""

    def handle_exit(signum: int, frame: object) -> None:
        worker.alive = False  # gunicorn's own handler: the request loop ends at its next turn
        if getattr(worker, "wsgi", None) is None:  # the app is not loaded yet
            os._exit(0)

    worker.handle_exit = handle_exit  # what gunicorn installs for SIGTERM in init_signals
    signal.signal(signal.SIGTERM, handle_exit)
    queued = []
    while not server.SIG_QUEUE.empty():
        queued.append(server.SIG_QUEUE.get_nowait())
    if {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT} & set(queued):
        os._exit(0)
