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


@schemathesis.check
def documented_json_is_accepted_as_well_formed(ctx, response, case) -> None:
    """The document promises nothing the route refuses as malformed: a request generated to
    match the schema (positive mode) with a JSON body, or none, is never a 400. It may still be
    refused for what a schema cannot say (422: a V2 tensor whose data does not fill its shape, a
    preset-dependent rule; 404: no such model; 413: over the batch limit). Binary bodies are
    left out: random bytes match ``format: binary`` but are not a picture or a .npy file."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    if case.media_type not in (None, "application/json"):
        return
    body = response.json()
    raise AssertionError(f"a schema-valid request was refused as malformed: {body}")
