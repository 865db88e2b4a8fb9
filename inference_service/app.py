"""Application factory of the inference service.

Run it as ``gunicorn -c inference_service/gunicorn.conf.py "inference_service.app:create_app()"``.
Everything an app needs (settings, registry, model cache, metrics) hangs off
``app.extensions["digitflow"]`` — no module globals — so tests can build as many independent apps
as they like.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, request

from inference_service.context import EXTENSION_KEY, ServiceState
from inference_service.errors import register_error_handlers
from inference_service.serving import ModelCache
from inference_service.settings import Settings
from inference_service.telemetry import Telemetry
from shared.registry import Registry

logger = logging.getLogger("inference_service")


def _configure_logging(level: str) -> None:
    """Our loggers log at LOG_LEVEL; under gunicorn (no root handler) they get a stderr handler."""
    for name in ("inference_service", "shared"):
        logging.getLogger(name).setLevel(level)
    if not logging.getLogger().handlers:
        ours = logging.getLogger("inference_service")
        shared = logging.getLogger("shared")
        if not ours.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
            )
            ours.addHandler(handler)
            shared.addHandler(handler)


_STARTED = "digitflow.started"


class InferenceFlask(Flask):
    """Flask with the service's per-request bookkeeping built in instead of before/after_request
    hooks: starting the registry poller lazily, and counting every request with its route and
    latency (every response, errors and 500s included: handle_exception finalizes too).

    On the single-image predict path the hook dispatch (with Flask's per-call coroutine check of
    every hook and view) cost ~45 us of ~380 us in the worker; this costs a few.
    """

    def ensure_sync(self, func: Any) -> Any:
        # No async views or hooks here: skip Flask's per-call iscoroutinefunction() check.
        return func

    def full_dispatch_request(self) -> Response:
        request.environ[_STARTED] = time.perf_counter()
        # Lazily, in the serving process (not gunicorn's master); with REGISTRY_POLL_SECONDS=0
        # this is the synchronous registry check.
        self.extensions[EXTENSION_KEY].cache.ensure_started()
        return super().full_dispatch_request()

    def finalize_request(self, rv: Any, from_error_handler: bool = False) -> Response:
        response = super().finalize_request(rv, from_error_handler)
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        started = req.environ.get(_STARTED)
        rule = req.url_rule
        self.extensions[EXTENSION_KEY].telemetry.observe_request(
            rule.rule if rule is not None else "<unmatched>",
            req.method,
            response.status_code,
            None if started is None else time.perf_counter() - started,
        )
        return response


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app. `config` keys override the environment variables of the same name
    (MODEL_REGISTRY_DIR, REGISTRY_POLL_SECONDS, MODEL_CACHE_SIZE, MAX_BATCH_IMAGES,
    MAX_CONTENT_LENGTH, LOG_LEVEL, PREDICT_FAST_PATH); other keys go to ``app.config`` as usual
    (e.g. TESTING)."""
    settings = Settings.load(config)
    _configure_logging(settings.log_level)

    app = InferenceFlask(__name__)
    app.config.update({k: v for k, v in (config or {}).items()})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    # Multipart uploads are bounded by MAX_CONTENT_LENGTH as a whole; let one field use it all.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_content_length
    app.json.sort_keys = False  # type: ignore[attr-defined]

    registry = Registry(settings.model_registry_dir, read_only=True)
    telemetry = Telemetry()
    cache = ModelCache(
        registry,
        capacity=settings.model_cache_size,
        poll_seconds=settings.registry_poll_seconds,
        on_default_change=telemetry.on_default_change,
        on_load=telemetry.on_load,
        on_broken=telemetry.on_broken,
    )
    app.extensions[EXTENSION_KEY] = ServiceState(settings, registry, cache, telemetry)

    register_error_handlers(app)

    from inference_service import pages
    from inference_service.files import bp as files_bp
    from inference_service.health import bp as health_bp
    from inference_service.v1 import bp as v1_bp
    from inference_service.v2 import bp as v2_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(v1_bp)
    app.register_blueprint(files_bp)
    app.register_blueprint(v2_bp)
    pages.init_app(app)  # the web page at / (and static/ through Flask's own static route)
    if settings.predict_fast_path:
        from inference_service.fastpath import PredictFastPath

        state = app.extensions[EXTENSION_KEY]
        app.wsgi_app = PredictFastPath(app.wsgi_app, state)  # type: ignore[method-assign]

    logger.info(
        "inference app created: registry %s, poll %.3gs, cache %d versions",
        settings.model_registry_dir,
        settings.registry_poll_seconds,
        settings.model_cache_size,
    )
    return app
