"""The predict routes' happy path as plain WSGI, in front of the Flask app.

Why it exists: over HTTP on the 2-core box, Flask's per-request machinery (request and app
contexts, routing, response object, teardown) costs ~110 µs per request — as much as the forward
pass of the default model (BENCHMARKS.md §3: a bare Flask endpoint answering a constant managed
4,700 requests/s where the same constant from a plain WSGI callable managed 6,400). For a service
whose hot path is one small image, that is the difference between "near the limit" and not.

What it answers: ``POST /v1/models/<name>/predict`` and ``POST
/v1/models/<name>/versions/<ref>/predict`` with a JSON or ``.npy`` body and a Content-Length
within MAX_CONTENT_LENGTH — parsed, validated and predicted by exactly the functions the Flask view
uses (``inference_service.v1.parse_array_body`` / ``predict_body``), so the answer is the same
byte for byte.

What it leaves to Flask: everything else. Another route or method, a chunked or oversized body,
another media type (pictures, multipart), and *any* exception on the way — a body that does not
validate, an unknown model or version, a broken file, a bug — go to the Flask app with the body
put back, which answers them through the blueprints and error handlers as before. Errors therefore
have a single code path (their answers, status codes and metrics are unchanged), and the fast path
only ever produces 200s. ``PREDICT_FAST_PATH=off`` sends everything through Flask.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from inference_service.context import ServiceState
from inference_service.v1 import (
    PREDICT_DEFAULT_RULE,
    PREDICT_VERSION_RULE,
    bp,
    parse_array_body,
    predict_body,
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PREFIX = f"{bp.url_prefix}/models/"
_SUFFIX = "/predict"
#: Route templates as Flask reports them, so /metrics shows one series per route either way.
DEFAULT_ROUTE = f"{bp.url_prefix}{PREDICT_DEFAULT_RULE}"
VERSION_ROUTE = f"{bp.url_prefix}{PREDICT_VERSION_RULE}"


def match_predict(path: str) -> tuple[str, str, str | None] | None:
    """(route template, model name, version reference or None) when `path` (a WSGI PATH_INFO) is
    one of the two predict routes in its plain form, else None — Flask then decides (redirects,
    404s, percent-decoding corner cases)."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX) and path.isascii()):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return DEFAULT_ROUTE, parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return VERSION_ROUTE, parts[0], parts[2]
    return None


class PredictFastPath:
    """WSGI middleware: ``app.wsgi_app = PredictFastPath(app.wsgi_app, state)``."""

    def __init__(self, app: WSGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        #: Requests this app answered here (read by the tests; not locked: a count, not a metric).
        self.answered = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        route = match_predict(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        st = self.state
        if route is None or not length.isdigit() or int(length) > st.settings.max_content_length:
            return self.app(environ, start_response)
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        started = time.perf_counter()
        body = environ["wsgi.input"].read(int(length))
        try:
            if len(body) != int(length):
                raise ValueError("short body")
            st.cache.ensure_started()
            x = parse_array_body(mimetype, body, st.settings.max_batch_images)
            if x is None:
                raise ValueError("not a JSON or .npy body")
            template, name, ref = route
            served = st.cache.get(name, ref)
            answer = predict_body(st, served, x)
        except Exception:  # noqa: BLE001 - Flask answers it, through the one error path
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer))),
                ("X-Model-Version", str(served.version)),
            ],
        )
        st.telemetry.observe_request(template, "POST", 200, time.perf_counter() - started)
        self.answered += 1
        return [answer]
