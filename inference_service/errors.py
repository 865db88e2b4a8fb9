"""One error shape for every failure: ``{"error": {"code", "message", "field"?}}``.

Status codes (documented in openapi.json too):

* 400 ``bad_request`` family: malformed JSON, a missing/wrong-typed field, wrong shape, a value
  that is NaN/Infinity/out of range, an undecodable picture. The message names the field and,
  for pixel data, the first offending index (``instances[3][17]``).
* 404 unknown (or malformed) model name, version or alias; unknown route.
* 405 method not allowed (with an ``Allow`` header).
* 409 ``version_broken``: the named version exists but fails verification; it is never served.
* 413 body larger than MAX_CONTENT_LENGTH, or more images than MAX_BATCH_IMAGES.
* 415 a Content-Type the route does not accept.
* 422 well-formed but semantically unusable: an empty batch, a V2 tensor whose declared shape
  does not match its data, an unsupported V2 datatype.
* 503 ``registry_unavailable``: the registry folder cannot be read (an outage, not bad input).
* 500 ``internal_error``: only for real bugs (logged with a traceback), never for bad input.

Registry and model-file exceptions are mapped here so the blueprints can just let them propagate.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from shared.registry import (
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client caused (or must know about), rendered as JSON with `status`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def bad_request(message: str, field: str | None = None, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message, field)


def unprocessable(message: str, field: str | None = None, code: str = "unprocessable") -> ApiError:
    return ApiError(422, code, message, field)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    resp = Response(orjson.dumps({"error": body}), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


#: Werkzeug exception → our error code.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def register_error_handlers(app: Flask) -> None:
    """Install the JSON handlers on `app` (and thereby on every blueprint)."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(InvalidNameError)
    def _invalid_name(exc: InvalidNameError) -> Response:
        # A name or version that could never exist (bad pattern, "..", "0", too long) is just an
        # unknown resource from the client's point of view.
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(ModelNotFoundError)
    def _model_not_found(exc: ModelNotFoundError) -> Response:
        return error_response(404, "model_not_found", str(exc))

    @app.errorhandler(VersionNotFoundError)
    def _version_not_found(exc: VersionNotFoundError) -> Response:
        return error_response(404, "version_not_found", str(exc))

    @app.errorhandler(BrokenVersionError)
    def _broken(exc: BrokenVersionError) -> Response:
        return error_response(409, "version_broken", f"{exc}; it is never served")

    @app.errorhandler(RegistryError)
    def _registry_error(exc: RegistryError) -> Response:
        logger.error("registry error: %s", exc)
        return error_response(503, "registry_unavailable", str(exc))

    @app.errorhandler(OSError)
    def _io_error(exc: OSError) -> Response:
        # The registry volume is unreadable (unmounted, permissions): a server-side outage.
        logger.error("I/O error while serving a request: %s", exc)
        return error_response(503, "registry_unavailable", "model registry is not readable")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        code = _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_"))
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body larger than MAX_CONTENT_LENGTH ({limit} bytes)"
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error (a bug): %s", exc)
        return error_response(500, "internal_error", "internal server error (logged)")
