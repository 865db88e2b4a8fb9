"""What every Flask app of ours gets the same way: JSON errors from the one table, the logging
setup, the OpenAPI document, and the service state under one extension key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from flask import Flask, Response, current_app

from shared.web.errors import ApiError, to_api_error
from shared.web.logging import configure_logging
from shared.web.openapi import Api, Operation
from shared.web.settings import ServiceSettings

#: Where an app keeps its per-app service objects (`app.extensions[STATE_KEY]`).
STATE_KEY = "digitflow"

Translate = Callable[[BaseException], ApiError]


def create_flask_app(
    import_name: str,
    settings: ServiceSettings,
    state: Any,
    config: Mapping[str, Any] | None = None,
    *,
    translate: Mapping[type[BaseException], Translate] | None = None,
    max_content_length: int | None = None,
) -> Flask:
    """A Flask app with our logging, JSON errors and `state` attached; `config` keys also go to
    ``app.config`` (e.g. TESTING). `translate` maps a service's own exceptions (a Redis outage)
    to answers before the shared table sees them."""
    configure_logging(settings.log_level)
    app = Flask(import_name)
    app.config.update(dict(config or {}))
    if max_content_length is not None:
        app.config["MAX_CONTENT_LENGTH"] = max_content_length
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[STATE_KEY] = state

    @app.errorhandler(Exception)
    def _answer(exc: Exception) -> Response:
        """Every exception a view raises, werkzeug's HTTP errors included, from the table."""
        for kind, to_error in (translate or {}).items():
            if isinstance(exc, kind):
                return to_error(exc).response()
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return to_api_error(exc, max_content_length=limit).response()

    return app


def add_views(app: Flask, views: Iterable[tuple[Operation, Callable[..., Any]]]) -> None:
    """Serve each view at its operation's path and method: a service's table of routes, read by
    its factory (the view's endpoint is ``<its module>.<its name>``, e.g. ``v1.get_model``; a
    view may serve several operations)."""
    for op, view in views:
        endpoint = f"{view.__module__.rpartition('.')[2]}.{view.__name__}"
        app.add_url_rule(op.flask_rule, endpoint, view, methods=[op.method])


def serve_openapi(app: Flask, api: Api) -> None:
    """``GET /openapi.json``: the document built from the declared routes (built once)."""
    document = orjson.dumps(api.document())

    def openapi() -> Response:
        return Response(document, mimetype="application/json")

    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])


def app_state() -> Any:
    """The service state of the app handling the current request."""
    return current_app.extensions[STATE_KEY]
