"""The service's WSGI entry: every request counted, each path sent to its one implementation.

``create_app`` installs it as ``app.wsgi_app`` (Flask's documented place for WSGI middleware), so
gunicorn, the test client and the benchmarks all go through it. It starts the registry poller
lazily in the serving process (with REGISTRY_POLL_SECONDS=0: the synchronous registry check).
Flask routes report their rule for the metrics through `ROUTE_KEY`, set by a ``before_request``
hook (they are not the hot path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from inference_service import predict
from inference_service.predict import Router
from inference_service.state import ServiceState

#: The environ key under which a Flask route leaves its rule for the metrics.
ROUTE_KEY = "digitflow.route"
UNMATCHED = "<unmatched>"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Front:
    """``app.wsgi_app = Front(app, state, Router(routes.PLAIN))``."""

    def __init__(self, app: Flask, state: ServiceState, router: Router) -> None:
        self.flask_wsgi: WsgiApp = app.wsgi_app
        self.state = state
        self.match = router.match
        self.ensure_started = state.cache.poller.ensure_started
        app.before_request(_record_rule)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        st = self.state
        self.ensure_started()
        route = self.match(environ.get("PATH_INFO", ""))
        if route is not None:
            status, body = predict.respond(st, route, environ, start_response)
            template = route.template
        else:
            seen: list[str] = []

            def counting_start_response(status: str, *args: Any) -> Any:
                seen.append(status)
                return start_response(status, *args)

            body = self.flask_wsgi(environ, counting_start_response)
            status = int(seen[-1][:3]) if seen else 500
            template = environ.get(ROUTE_KEY, UNMATCHED)
        st.telemetry.observe_request(
            template, environ.get("REQUEST_METHOD", ""), status, time.perf_counter() - started
        )
        return body


def _record_rule() -> None:
    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE_KEY] = rule.rule
