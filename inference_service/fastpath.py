"""The predict and infer routes' happy path as plain WSGI, in front of the Flask app.

Why it exists: over HTTP on the 2-core box, Flask's per-request machinery (request and app
contexts, routing, response object, teardown) costs ~110 µs per request — as much as the forward
pass of the default model (BENCHMARKS.md §3: a bare Flask endpoint answering a constant managed
4,700 requests/s where the same constant from a plain WSGI callable managed 6,400). For a service
whose hot path is one small image, that is the difference between "near the limit" and not.

What it answers: ``POST /v1/models/<name>[/versions/<ref>]/predict`` with a JSON or ``.npy`` body
and ``POST /v2/models/<name>[/versions/<ref>]/infer`` (JSON or the binary tensor extension), with a
Content-Length within MAX_CONTENT_LENGTH — parsed, validated and predicted by exactly the
functions the Flask views use (``v1.parse_array_body`` / ``v1.predict_body``,
``v2.parse_infer_request`` / ``v2.infer_answer``), so the answer is the same byte for byte.

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

from inference_service import v1, v2
from inference_service.context import ServiceState

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: (body, headers) of a 200 answer.
Answer = tuple[bytes, list[tuple[str, str]]]
#: Answers one request or raises (anything: Flask then answers it).
Handler = Callable[[ServiceState, str, str | None, dict[str, Any], bytes], Answer]


class NotFastPath(Exception):
    """A request the fast path does not take (another media type): Flask answers it."""


def _mimetype(environ: dict[str, Any]) -> str:
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def _v1_predict(
    st: ServiceState, name: str, ref: str | None, environ: dict[str, Any], body: bytes
) -> Answer:
    x = v1.parse_array_body(_mimetype(environ), body, st.settings.max_batch_images)
    if x is None:
        raise NotFastPath("pictures, multipart and unknown media types")
    served = st.cache.get(name, ref)
    headers = [("Content-Type", "application/json"), ("X-Model-Version", str(served.version))]
    return v1.predict_body(st, served, x), headers


def _v2_infer(
    st: ServiceState, name: str, ref: str | None, environ: dict[str, Any], body: bytes
) -> Answer:
    req = v2.parse_infer_request(
        _mimetype(environ),
        environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH"),
        body,
        st.settings.max_batch_images,
    )
    return v2.infer_answer(st, st.cache.get(name, ref), req)


#: (URL prefix, route suffix, handler, route template without / with a version) per API.
_ROUTES = (
    ("/v1/models/", "/predict", _v1_predict,
     v1.bp.url_prefix + v1.PREDICT_DEFAULT_RULE, v1.bp.url_prefix + v1.PREDICT_VERSION_RULE),
    ("/v2/models/", "/infer", _v2_infer,
     v2.bp.url_prefix + v2.INFER_DEFAULT_RULE, v2.bp.url_prefix + v2.INFER_VERSION_RULE),
)  # fmt: skip


def match_route(path: str) -> tuple[str, Handler, str, str | None] | None:
    """(route template, handler, model name, version reference or None) when `path` (a WSGI
    PATH_INFO) is one of the fast routes in its plain form, else None — Flask then decides
    (redirects, 404s, percent-decoding corner cases)."""
    if not path.isascii():
        return None
    for prefix, suffix, handler, default_route, version_route in _ROUTES:
        if not (path.startswith(prefix) and path.endswith(suffix)):
            continue
        parts = path[len(prefix) : -len(suffix)].split("/")
        if len(parts) == 1 and parts[0]:
            return default_route, handler, parts[0], None
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return version_route, handler, parts[0], parts[2]
        return None
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
        route = match_route(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        st = self.state
        if route is None or not length.isdigit():
            return self.app(environ, start_response)
        n_bytes = int(length)
        if n_bytes > st.settings.max_content_length:
            return self.app(environ, start_response)
        started = time.perf_counter()
        body = environ["wsgi.input"].read(n_bytes)
        template, handler, name, ref = route
        try:
            if len(body) != n_bytes:
                raise NotFastPath("short body")
            st.cache.ensure_started()
            answer, headers = handler(st, name, ref, environ, body)
        except Exception:  # noqa: BLE001 - Flask answers it, through the one error path
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        start_response("200 OK", [*headers, ("Content-Length", str(len(answer)))])
        st.telemetry.observe_request(template, "POST", 200, time.perf_counter() - started)
        self.answered += 1
        return [answer]
