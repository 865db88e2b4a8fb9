"""One error type and one error table for both services.

Every failure is answered as ``{"error": {"code", "message", "field"?, ...details}}`` with the
status of `to_api_error`'s table, so a registry error means the same status on the trainer and on
inference. Routes raise `ApiError` for what they check themselves and let library exceptions
(registry, werkzeug) propagate: the table below turns those into answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from shared.fieldpath import top_field
from shared.registry import (
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    VersionInUseError,
    VersionNotFoundError,
)

logger = logging.getLogger(__name__)

#: HTTP status → the default machine-readable code (a route may name a more precise one).
ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success: raise it from a route (or build it from an exception). `field`
    names the offending input (``instances[3][17]``, ``body.epochs``); `fields` lists every bad
    field when there are several (validation errors); `details` are extra JSON members of the error
    object; `headers` go on the response (``Retry-After``, ``Allow``, ``WWW-Authenticate``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, "error")
        self.field = field
        self.headers = dict(headers or {})
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.details)
        return {"error": error}

    def response(self) -> Response:
        """The answer as a WSGI response (Flask handlers and plain WSGI routes alike)."""
        return Response(
            orjson.dumps(self.body()), self.status, self.headers, mimetype="application/json"
        )


def _registry_answer(exc: RegistryError) -> ApiError | None:
    """A registry error's answer, naming the input it concerns (`RegistryError.field`): the
    registry checks versions, aliases and splits once, and both services answer from here."""
    field = exc.field
    named = {"field": field, "invalid_fields": [top_field(field)]} if field else {}
    if isinstance(exc, InvalidNameError):
        # A malformed input the client wrote is 422; a path name that could never exist (bad
        # pattern, "..", "0") is an unknown resource, 404.
        return ApiError(422, str(exc), **named) if field else ApiError(404, str(exc))
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, str(exc), code="model_not_found", **named)
    if isinstance(exc, VersionNotFoundError):
        return ApiError(404, str(exc), code="version_not_found", **named)
    if isinstance(exc, BrokenVersionError):
        return ApiError(409, f"{exc}; it is never served", code="version_broken", **named)
    if isinstance(exc, VersionInUseError):
        return ApiError(409, str(exc), code="version_in_use", **named)
    return None


def to_api_error(exc: BaseException, *, max_content_length: int | None = None) -> ApiError:
    """The one table from an exception to its answer (unknown exceptions are 500 and logged)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        message = exc.description or exc.name
        if status == 413 and max_content_length is not None:
            message = f"request body larger than MAX_CONTENT_LENGTH ({max_content_length} bytes)"
        return ApiError(status, message, headers=headers)
    if isinstance(exc, RegistryError) and (known := _registry_answer(exc)) is not None:
        return known
    if isinstance(exc, RegistryError | OSError):
        # The registry volume is unreadable or unwritable (unmounted, permissions, full): an
        # outage on our side, not the client's mistake.
        logger.error("model registry unavailable: %s", exc)
        return ApiError(503, f"model registry unavailable: {exc}", code="registry_unavailable")
    logger.error("unhandled error (a bug)", exc_info=exc)
    return ApiError(500, "internal server error (logged)", code="internal_error")
