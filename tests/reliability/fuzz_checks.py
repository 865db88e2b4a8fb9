"""schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS): our own check that
every error answer is the one JSON error shape of both services."""

from __future__ import annotations

import schemathesis


@schemathesis.check
def json_error_body(ctx, response, case) -> None:
    """Every 4xx/5xx is ``{"error": {"code": str, "message": str, ...}}`` served as JSON."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} with Content-Type {content_type!r}"
    )
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"error body is not {{'error': {{...}}}}: {body!r}"
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body
