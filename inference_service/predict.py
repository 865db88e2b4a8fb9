"""The predict and infer routes, as a plain WSGI application: their one implementation.

    POST /v1/models/{name}/predict              POST /v2/models/{name}/infer
    POST /v1/models/{name}/versions/{ref}/predict   POST /v2/models/{name}/versions/{ref}/infer

Why not Flask views: over HTTP on the 2-core box, Flask's per-request machinery (contexts,
routing, the response object, teardown) costs ~110 µs, as much as the forward pass of the
default model (BENCHMARKS.md §3), and these routes are the service's hot path. So
`inference_service.front` dispatches their paths (`Router`) here, in front of the Flask app. Every
request to them, errors included, is answered here: failures with the web kit's
``ApiError.response()``, the Flask routes' error table. They are documented in
`inference_service.routes`.

A request: the model is looked up first (an unknown model is a 404 whatever the body; no version
named: one of the traffic split's, by its ``X-Routing-Key`` header if any), the body is decoded
for the model's input size by its media type's decoder (`inference_service.decoders`), the folded
forward pass runs. A default-route answer of a model with a shadow version carries an `after`
step: the WSGI body's ``close()`` hands the comparison to `inference_service.shadow` once the
answer is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from inference_service import decoders
from inference_service.loading import Served
from inference_service.responses import MODEL_VERSION, dumps
from inference_service.rollout import ROUTING_KEY
from inference_service.shadow import Pending
from inference_service.state import ServiceState
from shared.web.errors import ApiError, to_api_error
from shared.web.openapi import Operation

StartResponse = Callable[..., Any]


class Reply(NamedTuple):
    """An answer: status line, headers, body, and what to run once it is sent (the shadow)."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    after: Callable[[], None] | None = None


# ---- /v1 predict --------------------------------------------------------------------------------


def predict(st: ServiceState, name: str, ref: str | None, environ: dict[str, Any]) -> Reply:
    served = st.cache.get(name, ref, environ.get(ROUTING_KEY))
    settings = st.settings
    x = decoders.decode_request(
        environ,
        _mimetype(environ),
        served.input_size,
        settings.max_batch_images,
        settings.max_content_length,
    )
    proba = served.predict_proba(x)
    body = dumps(
        {
            "model": served.name,
            "model_version": served.version,
            "predictions": proba.argmax(axis=1),
            "probabilities": proba,
        }
    )
    st.telemetry.observe_predictions(served.name, served.version, proba)
    headers = [("Content-Type", "application/json"), (MODEL_VERSION, str(served.version))]
    return Reply("200 OK", headers, body, _shadow_step(st, served, ref, x, proba))


def _shadow_step(
    st: ServiceState, served: Served, ref: str | None, x: np.ndarray, proba: np.ndarray
) -> Callable[[], None] | None:
    """For a default-route answer of a model with a shadow version (another one than the
    version that answered): the comparison to schedule once the answer is sent."""
    if ref is not None:
        return None
    shadow = st.cache.shadows.get(served.name)
    if shadow is None or shadow.version == served.version:
        return None
    return lambda: st.shadows.submit(served, shadow, x, proba)


# ---- /v2 infer ----------------------------------------------------------------------------------

#: A V2 output's name → its datatype, its little-endian wire dtype (the binary extension) and how
#: it is computed from the probabilities. Built once: this is the hot path (issue 21).
_V2_TENSORS: dict[str, tuple[str, np.dtype, Callable[[np.ndarray], np.ndarray]]] = {
    "probabilities": ("FP32", np.dtype("<f4"), lambda proba: proba),
    "predictions": ("INT64", np.dtype("<i8"), lambda proba: proba.argmax(axis=1)),
}


def infer(st: ServiceState, name: str, ref: str | None, environ: dict[str, Any]) -> Reply:
    served = st.cache.get(name, ref, environ.get(ROUTING_KEY))
    header = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    mimetype = _mimetype(environ)
    if header is None and not decoders.is_json(mimetype):
        raise ApiError(
            415,
            f"Content-Type {mimetype!r} is not accepted: send application/json, or the binary "
            f"tensor extension with an {decoders.V2_HEADER_LENGTH} header",
            field="Content-Type",
        )
    body = decoders.read_body(environ, st.settings.max_content_length)
    req = decoders.decode_v2(body, header, served.input_size, st.settings.max_batch_images)
    proba = served.predict_proba(req.x)
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out_name, binary in req.outputs.items():
        datatype, wire, tensor = _V2_TENSORS[out_name]
        arr = tensor(proba)
        if binary:
            raw = arr.astype(wire, copy=False).tobytes()
            chunks.append(raw)
            outputs.append({"name": out_name, "datatype": datatype, "shape": list(arr.shape),
                            "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        else:
            outputs.append({"name": out_name, "datatype": datatype, "shape": list(arr.shape),
                            "data": arr.ravel()})  # fmt: skip
    payload: dict[str, Any] = {"model_name": served.name, "model_version": str(served.version)}
    if req.id is not None:
        payload["id"] = req.id
    payload["outputs"] = outputs
    st.telemetry.observe_predictions(served.name, served.version, proba)
    version = (MODEL_VERSION, str(served.version))
    after = _shadow_step(st, served, ref, req.x, proba)
    head = dumps(payload)
    if not chunks:
        return Reply("200 OK", [("Content-Type", "application/json"), version], head, after)
    headers = [
        ("Content-Type", "application/octet-stream"),
        (decoders.V2_HEADER_LENGTH, str(len(head))),
        version,
    ]
    return Reply("200 OK", headers, b"".join([head, *chunks]), after)


# ---- the routes ---------------------------------------------------------------------------------

Handler = Callable[[ServiceState, str, str | None, dict[str, Any]], Reply]


class Route(NamedTuple):
    """A matched request: the route's template (the metrics label), handler, name and ref."""

    template: str
    handler: Handler
    name: str
    ref: str | None


class Router:
    """Matches a WSGI path to one of the plain-WSGI routes of `inference_service.routes`
    (built once by `create_app`: a prefix and suffix test per API version, no regex)."""

    def __init__(self, routes: Iterable[tuple[Operation, Handler]]) -> None:
        by_path = {op.path: (op.flask_rule, handler) for op, handler in routes}
        paths = []
        for api_prefix, verb in (("/v1", "predict"), ("/v2", "infer")):
            prefix, suffix = f"{api_prefix}/models/", f"/{verb}"
            default = by_path.pop(f"{prefix}{{name}}{suffix}")
            versioned = by_path.pop(f"{prefix}{{name}}/versions/{{ref}}{suffix}")
            paths.append((prefix, suffix, default, versioned))
        if by_path:
            raise ValueError(f"plain-WSGI routes this router cannot match: {sorted(by_path)}")
        self._paths = tuple(paths)

    def match(self, path: str) -> Route | None:
        """The route of a WSGI PATH_INFO when it is one of the four, else None (Flask's)."""
        for prefix, suffix, default, versioned in self._paths:
            if not (path.startswith(prefix) and path.endswith(suffix)):
                continue
            parts = path[len(prefix) : len(path) - len(suffix)].split("/")
            if len(parts) == 1 and parts[0]:
                return Route(default[0], default[1], _text(parts[0]), None)
            if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
                return Route(versioned[0], versioned[1], _text(parts[0]), _text(parts[2]))
            return None
        return None


def _text(segment: str) -> str:
    """A path segment as text: WSGI gives the URL's bytes as latin-1 (werkzeug decodes them as
    UTF-8 for Flask routes; so do we)."""
    return segment if segment.isascii() else segment.encode("latin-1").decode("utf-8", "replace")


def _mimetype(environ: dict[str, Any]) -> str:
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def respond(
    st: ServiceState, route: Route, environ: dict[str, Any], start_response: StartResponse
) -> tuple[int, Iterable[bytes]]:
    """Answer a matched request, errors included (never raises): (status code, WSGI body)."""
    method = environ.get("REQUEST_METHOD")
    try:
        if method == "POST":
            reply = route.handler(st, route.name, route.ref, environ)
        elif method == "OPTIONS":  # as Flask answers OPTIONS for its own rules
            reply = Reply(
                "200 OK", [("Allow", "OPTIONS, POST"), ("Content-Type", "text/plain")], b""
            )
        else:
            raise ApiError(405, "method not allowed: use POST", headers={"Allow": "OPTIONS, POST"})
    except Exception as exc:  # noqa: BLE001 - the one error table answers it (500s are logged)
        response = to_api_error(exc, max_content_length=st.settings.max_content_length).response()
        return response.status_code, response(environ, start_response)
    reply.headers.append(("Content-Length", str(len(reply.body))))
    start_response(reply.status, reply.headers)
    body = [reply.body] if reply.after is None else Pending([reply.body], reply.after)
    return int(reply.status[:3]), body
