"""Cross-origin access to the trainer API for the web page, only from configured origins.

The inference service's web page (:8000) calls this API (:8001) from the browser: a cross-origin
request. CORS_ORIGINS lists the origins allowed to (comma-separated; ``*`` allows any, only
sensible without API_TOKEN on a private network). Unset or empty: no CORS headers at all, so
browsers keep other sites' pages out (curl, the client and servers are not concerned).
An after_request hook rather than flask-cors: the policy is a few lines, and every answer (errors
and 401s included) must carry the headers or the page could not read the error message.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization, Idempotency-Key"
EXPOSED_HEADERS = "Location, Retry-After, Idempotent-Replayed"
PREFLIGHT_MAX_AGE = "600"


class CorsSettingsError(ValueError):
    """A CORS_ORIGINS entry that is not an origin (scheme://host[:port])."""


def parse_origins(raw: str) -> frozenset[str]:
    """`"http://a:8000, https://b"` → {"http://a:8000", "https://b"}; ``*`` stays ``*``."""
    origins = set()
    for item in raw.split(","):
        origin = item.strip().rstrip("/")
        if not origin:
            continue
        if origin != "*":
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise CorsSettingsError(
                    f"CORS_ORIGINS entry {item.strip()!r} is not an origin such as "
                    "http://localhost:8000 (scheme, host and optional port; no path)"
                )
            origin = f"{parts.scheme}://{parts.netloc.lower()}"
        origins.add(origin)
    return frozenset(origins)


def install_cors(app: Flask, allowed: frozenset[str]) -> None:
    """Add the CORS headers for the `allowed` origins (CORS_ORIGINS, parsed by `parse_origins`
    when the settings are read) to every response; nothing at all when there are none."""
    if not allowed:
        return
    any_origin = "*" in allowed

    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if not origin:
            return response
        response.vary.add("Origin")
        if not any_origin and origin.rstrip("/").lower() not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response
