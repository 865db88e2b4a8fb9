"""The web page at ``/``: draw a digit, browse model versions and their reports, train.

Plain HTML, CSS and JavaScript from ``templates/`` and ``static/`` — no build step, nothing
fetched from a CDN. The page talks to this service's own ``/v1`` API for predictions and the
model listing, and, for the training view only, to the trainer service at TRAINER_PUBLIC_URL
(cross-origin: the trainer must list this page's origin in its CORS_ORIGINS). When the trainer
is down the page says so and everything else keeps working: inference never depends on it.

TRAINER_PUBLIC_URL is the trainer's address *as the browser sees it*; unset, the page assumes
the trainer on the same host as the page, port TRAINER_PORT (8001).
"""

from __future__ import annotations

import os
import typing
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, render_template, request

from shared.config import PRESETS, TrainConfig

bp = Blueprint("pages", __name__)

CONFIG_KEY = "TRAINER_PUBLIC_URL"


class PageSettingsError(ValueError):
    """TRAINER_PUBLIC_URL is not an http(s) URL."""


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise PageSettingsError(
            f"TRAINER_PUBLIC_URL={value!r} must be an http(s) URL such as https://trainer.example"
        )
    return value.rstrip("/")


def init_app(app: Flask) -> None:
    """Register the page; read and check TRAINER_PUBLIC_URL once (config dict, else env)."""
    raw = app.config.get(CONFIG_KEY) or os.environ.get(CONFIG_KEY, "")
    app.config[CONFIG_KEY] = _check_url(raw.strip()) if raw and raw.strip() else ""
    app.register_blueprint(bp)


def _trainer_url() -> str:
    configured = current_app.config.get(CONFIG_KEY) or ""
    if configured:
        return configured
    host = urlsplit(f"//{request.host}").hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = os.environ.get("TRAINER_PORT", "").strip() or "8001"
    return f"{request.scheme}://{host}:{port}"


def _choices(field: str) -> list[str]:
    annotation = TrainConfig.model_fields[field].annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def page_config() -> dict[str, Any]:
    """What the page's JavaScript needs, embedded as JSON (no inline script: CSP stays strict)."""
    return {
        "trainer_url": _trainer_url(),
        "presets": PRESETS,
        "defaults": TrainConfig().public_dict(),
        "choices": {
            field: _choices(field)
            for field in ("dataset", "activation", "optimizer", "lr_schedule", "preset")
        },
    }


@bp.get("/")
def index() -> Response:
    config = page_config()
    html = render_template("index.html", config=config)
    trainer = urlsplit(config["trainer_url"])
    csp = "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {trainer.scheme}://{trainer.netloc}",
            "img-src 'self' data: blob:",
            "style-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ]
    )
    return Response(
        html,
        mimetype="text/html",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
