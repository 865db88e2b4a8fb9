"""API_TOKEN: when set, every mutating request needs ``Authorization: Bearer <token>``.

Reads stay open. The comparison is constant-time and neither the expected nor the presented token
is ever logged or echoed back.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from shared.web.errors import ApiError
from trainer_service.settings import TrainerSettings

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def install_auth(app: Flask, settings: TrainerSettings) -> None:
    """Check the bearer token before any mutating view runs (401 otherwise)."""
    token = settings.token()
    if token is None:
        return
    expected = token.encode("utf-8")

    @app.before_request
    def _require_token() -> None:
        if request.method not in MUTATING_METHODS:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode("utf-8"), expected
        ):
            return
        message = "invalid bearer token"
        if not header:
            message = "missing bearer token: send 'Authorization: Bearer <API_TOKEN>'"
        raise ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="digitflow"'})
