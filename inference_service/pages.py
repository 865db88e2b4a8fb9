"""The web page at ``/``: draw a digit, browse model versions and their reports, train.

Plain HTML, CSS and JavaScript from ``templates/`` and ``static/`` — no build step, nothing
fetched from a CDN. The page talks to this service's own ``/v1`` API for predictions and the
model listing, and, for the training view only, to the trainer service at TRAINER_PUBLIC_URL
(cross-origin: the trainer must list this page's origin in its CORS_ORIGINS). When the trainer
is down the page says so and everything else keeps working: inference never depends on it.
"""

from __future__ import annotations

import typing
from urllib.parse import urlsplit

from flask import Response, render_template, request

from inference_service.state import service
from shared.config import PRESETS, TrainConfig


def _trainer_url() -> str:
    settings = service().settings
    if settings.trainer_public_url:
        return settings.trainer_public_url
    host = urlsplit(f"//{request.host}").hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{settings.trainer_port}"


def _choices(field: str) -> list[str]:
    annotation = TrainConfig.model_fields[field].annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def index() -> Response:
    trainer_url = _trainer_url()
    # What the page's JavaScript needs, embedded as JSON (no inline script: CSP stays strict).
    config = {
        "trainer_url": trainer_url,
        "presets": PRESETS,
        "defaults": TrainConfig().public_dict(),
        "choices": {
            field: _choices(field)
            for field in ("dataset", "activation", "optimizer", "lr_schedule", "preset")
        },
    }
    trainer = urlsplit(trainer_url)
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
        render_template("index.html", config=config),
        mimetype="text/html",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
