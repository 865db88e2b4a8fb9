"""Every route of the inference service, in one table: its path, method, documentation and the
function that serves it. `create_app` builds the app from this table (the Flask views, the
plain-WSGI predict and infer handlers, and the OpenAPI document), so nothing registers itself
when a module is imported, and the view modules import neither this table nor the app.

``ROUTES`` is the document's order. A route's server is:

* a Flask view (``health``, ``v1``, ``v2``, ``files``, ``explain``, ``features``, ``pages``),
  added to the app at its operation's path and method by the web kit's `add_views`;
* a plain-WSGI handler (``PLAIN``: the four predict and infer routes of
  `inference_service.predict`), dispatched by path in front of Flask (`inference_service.front`)
  because they are the hot path;
* None for what Flask or the web kit serve themselves (``/openapi.json``, ``/static/...``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import shared
from inference_service import explain, features, files, health, pages, predict, v1, v2
from inference_service.decoders import MULTIPART, NPY_MEDIA_TYPE
from inference_service.responses import MODEL_VERSION
from inference_service.schemas import (
    EXPLAIN_JSON_DOC,
    PATH_PARAMS,
    PREDICT_JSON_DOC,
    ExplainQuery,
    ExplainResponse,
    FeatureMapsResponse,
    Health,
    Manifest,
    PredictResponse,
    Readiness,
    ServedModelDetail,
    ServedModelList,
    V2InferRequest,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from shared.web.openapi import Answer, Api, Operation

TITLE = "digitflow inference"
DESCRIPTION = (
    "Serves the versioned models of the digitflow registry. **Predictions**: on a model's "
    "default route (the pinned or latest version, or a version of its traffic split, with a "
    "shadow version compared unseen after the answer) or on a named version (a number, latest, "
    "default or an alias), from V1 JSON, .npy arrays or PNG/JPEG pictures. **Explanations**: "
    "integrated-gradients attributions per pixel; a convolutional version's first filters and "
    "feature maps. **V2**: the Open Inference Protocol (KServe V2) REST API, with the binary "
    "tensor extension. **Listings**: models, their versions (status, metrics, network layers, "
    "aliases, live per-version and shadow figures), a version's manifest and its training "
    "report files. **Health**, readiness and Prometheus metrics; the web page and its static "
    "files; this OpenAPI document. New versions, pins, aliases, splits and shadows are picked "
    "up from the registry within a poll, no restart."
)


class Route(NamedTuple):
    """One row of the table: the documented operation and what serves it."""

    operation: Operation
    #: A Flask view, a plain-WSGI handler (`plain`), or None (served by Flask or the web kit).
    serve: Callable[..., Any] | None = None
    plain: bool = False


#: Errors of a route that reads the registry: unknown name/version, broken version, outage.
REGISTRY_ERRORS = (404, 409, 503)
_MODEL_ERRORS = (400, *REGISTRY_ERRORS, 405, 413, 415, 422)
_BINARY = {"type": "string", "format": "binary"}
_PICTURE = {**_BINARY, "description": "A picture of a digit (MNIST-style preprocessing)."}
_VERSION_HEADER = {MODEL_VERSION: "The model version that answered."}
_DEFAULT = "the default version"
_ANY_VERSION = "a version number, latest, default or an alias"

# ---- predict and infer (plain WSGI) -----------------------------------------------------------

_PREDICT_DESCRIPTION = (
    "Body: JSON instances (pixels 0-255, or 0-1 with scale unit), a .npy array, a PNG/JPEG "
    "picture, or multipart image fields (one per picture). At most MAX_BATCH_IMAGES images."
)
PREDICT_CONTENT = {
    "application/json": PREDICT_JSON_DOC,
    NPY_MEDIA_TYPE: {
        **_BINARY,
        "description": "A .npy file (numpy.save) of shape [N, input size] or [N, side, side]: "
        "uint8 pixels 0-255 or float pixels 0-1.",
    },
    "image/png": _PICTURE,
    "image/jpeg": _PICTURE,
    MULTIPART: {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {**_BINARY, "description": "One picture (repeat the field for a batch)."}
        },
    },
}
_PREDICTED = Answer(
    "Predictions", content={"application/json": PredictResponse}, headers=_VERSION_HEADER
)
#: Bodies that work as written (a blank image: every pixel 0), for readers and for schemathesis's
#: examples phase.
_PREDICT_EXAMPLES = {
    "application/json": {
        "one image, 784 values": {"instances": [[0] * 784]},
        "one image, 28 rows of 28, pixels 0-1": {"instances": [[[0.0] * 28] * 28], "scale": "unit"},
    }
}
_INFER_DESCRIPTION = (
    "JSON (V2InferRequest). The binary tensor extension is supported too: send the JSON header "
    "(inputs with parameters.binary_data_size), its byte length in the "
    "Inference-Header-Content-Length header, and the raw little-endian tensor bytes right after "
    "it. Ask for binary outputs with parameters.binary_data_output or "
    "outputs[].parameters.binary_data; the answer is then application/octet-stream with "
    "Inference-Header-Content-Length."
)
_INFER_CONTENT = {
    "application/octet-stream": {
        **_BINARY,
        "description": "Binary tensor extension: the JSON header (V2InferRequest with "
        "binary_data_size) then the raw tensor bytes.",
    }
}
_INFERRED = Answer(
    "Inference result (binary outputs: application/octet-stream after the JSON header, whose "
    "length is in Inference-Header-Content-Length)",
    content={"application/json": V2InferResponse, "application/octet-stream": _BINARY},
    headers=_VERSION_HEADER,
)
_INFER_EXAMPLES = {
    "application/json": {
        "one image, UINT8": {
            "inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 784], "data": [0] * 784}]
        },
        "two images, FP32 28x28": {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [2, 28, 28], "data": [0.0] * 1568}
            ],
            "outputs": [{"name": "predictions"}],
        },
    }
}


def _post(serve: Callable[..., Any], path: str, summary: str, plain: bool, **spec: Any) -> Route:
    """A POST to a model: predict and infer (plain WSGI) or explain (a Flask view)."""
    operation = Operation(
        method="POST", path=path, summary=summary, path_params=PATH_PARAMS, errors=_MODEL_ERRORS,
        **spec,
    )  # fmt: skip
    return Route(operation, serve, plain)


def _predict(path: str, summary: str) -> Route:
    return _post(predict.predict, path, summary, True, content=PREDICT_CONTENT,
                 responses={200: _PREDICTED}, description=_PREDICT_DESCRIPTION,
                 examples=_PREDICT_EXAMPLES)  # fmt: skip


def _infer(path: str, summary: str) -> Route:
    return _post(predict.infer, path, summary, True, body=V2InferRequest, content=_INFER_CONTENT,
                 responses={200: _INFERRED}, description=_INFER_DESCRIPTION,
                 examples=_INFER_EXAMPLES)  # fmt: skip


# ---- explain ------------------------------------------------------------------------------------

_EXPLAIN_DESCRIPTION = (
    "Integrated gradients (trapezoid rule, `steps` intervals) of the target class's logit from "
    "a black image to each image: `attributions` [N, input size] add up to `logit_difference` "
    "up to `completeness_gap`. Bodies as for predict; a JSON body may add `target` and `steps`, "
    "other media types take them as query parameters. At most MAX_EXPLAIN_IMAGES images."
)
_EXPLAIN_EXAMPLES = {
    "application/json": {
        "the predicted class of a blank image": {"instances": [[0] * 784]},
        "why class 1, 64 steps, pixels 0-1": {
            "instances": [[[0.0] * 28] * 14 + [[0.0] * 13 + [1.0] + [0.0] * 14] * 14],
            "scale": "unit",
            "target": 1,
            "steps": 64,
        },
    }
}
_EXPLAINED = Answer(
    "Predictions and attributions", {"application/json": ExplainResponse}, _VERSION_HEADER
)


def _explain(path: str, which: str) -> Route:
    return _post(
        explain.explain, path, f"Explain predictions: attributions per pixel ({which})", False,
        description=_EXPLAIN_DESCRIPTION, query=ExplainQuery, examples=_EXPLAIN_EXAMPLES,
        content={**PREDICT_CONTENT, "application/json": EXPLAIN_JSON_DOC},
        responses={200: _EXPLAINED},
    )  # fmt: skip


# ---- feature maps -------------------------------------------------------------------------------

_FEATURES_DESCRIPTION = (
    "The first convolution's filters and, per image, its feature maps: its output once the "
    "batch norm and activation after it are applied (what the draw page shows of a "
    "convolutional version). Bodies as for predict, read the same way; at most "
    "MAX_EXPLAIN_IMAGES images. 409 for a version without a convolution (a perceptron)."
)
_FEATURES = _post(
    features.feature_maps, "/v1/models/{name}/versions/{ref}/feature-maps",
    f"What the first convolution sees: its filters and feature maps ({_ANY_VERSION})", False,
    description=_FEATURES_DESCRIPTION, content=PREDICT_CONTENT, examples=_PREDICT_EXAMPLES,
    responses={
        200: Answer("Filters and feature maps", {"application/json": FeatureMapsResponse},
                    _VERSION_HEADER),
    },
)  # fmt: skip

# ---- the Flask views ------------------------------------------------------------------------------


def _get(path: str, view: Callable[..., Any] | None, summary: str, **spec: Any) -> Route:
    return Route(Operation(method="GET", path=path, summary=summary, **spec), view)


def _v2_model(suffix: str, view: Callable[..., Any], summary: str, answer: type) -> list[Route]:
    """``/v2/models/{name}<suffix>`` (the default version: the view gets ``ref=None``) and
    ``/v2/models/{name}/versions/{ref}<suffix>``."""
    return [
        _get(path, view, f"{summary} ({which})", responses={200: answer},
             errors=REGISTRY_ERRORS, path_params=PATH_PARAMS)
        for path, which in (
            (f"/v2/models/{{name}}{suffix}", _DEFAULT),
            (f"/v2/models/{{name}}/versions/{{ref}}{suffix}", "a version number, latest or alias"),
        )
    ]  # fmt: skip


ROUTES: tuple[Route, ...] = (
    _get(
        "/openapi.json", None, "This document",  # the web kit's serve_openapi
        responses={200: Answer("OpenAPI 3.1", content={"application/json": {"type": "object"}})},
    ),
    _predict("/v1/models/{name}/predict", "Predict with the default version (pinned, else latest)"),
    _predict(
        "/v1/models/{name}/versions/{ref}/predict",
        "Predict with a version number, latest, default or an alias",
    ),
    _infer("/v2/models/{name}/infer", "Open Inference Protocol infer (default version)"),
    _infer(
        "/v2/models/{name}/versions/{ref}/infer",
        "Open Inference Protocol infer (a version number, latest, default or an alias)",
    ),
    _explain("/v1/models/{name}/explain", _DEFAULT),
    _explain("/v1/models/{name}/versions/{ref}/explain", _ANY_VERSION),
    _FEATURES,
    _get(
        "/v1/models/{name}/versions/{ref}/report/{file_name}", files.report_file,
        "A file of the version's training report",
        description="learning_curves.png, confusion_matrix.png, per_class.png, "
        "misclassified.png, report.json: only files listed in the manifest's files, verified by "
        "sha256. Numbered versions are served as immutable (ETag = sha256).",
        responses={
            200: Answer("The file (image/png, application/json, ...)",
                        {"image/png": _BINARY, "application/json": {"type": "object"}}),
            304: "Not modified (If-None-Match matched the ETag)",
        },
        errors=REGISTRY_ERRORS, path_params=PATH_PARAMS,
    ),
    _get("/healthz", health.healthz, "Liveness: the worker answers", responses={200: Health}),
    _get(
        "/readyz", health.readyz,
        "Readiness: every model's default version is loaded in this worker",
        responses={200: Readiness, 503: Readiness},
    ),
    _get(
        "/metrics", health.metrics, "Prometheus metrics (all workers aggregated under gunicorn)",
        responses={200: "Prometheus text format"},
    ),
    _get(
        "/static/{filename}", None,  # Flask's own static route serves static/
        "The web page's static files (script, style sheet, icon)",
        responses={200: "The file"}, errors=(404,),
    ),
    _get(
        "/", pages.index, "The web page: draw a digit, browse versions and reports, train",
        responses={200: Answer("The HTML page", content={"text/html": {"type": "string"}})},
    ),
    _get(
        "/v1/models", v1.list_models, "Models with their latest, default and pinned version",
        responses={200: ServedModelList}, errors=(503,),
    ),
    _get(
        "/v1/models/{name}", v1.get_model,
        "Every version with metrics, config, network, aliases, status and whether it is loaded",
        responses={200: ServedModelDetail}, errors=REGISTRY_ERRORS, path_params=PATH_PARAMS,
    ),
    _get(
        "/v1/models/{name}/versions/{ref}", v1.get_version,
        "One version's manifest (a number, latest, default or an alias)",
        responses={200: Manifest}, errors=REGISTRY_ERRORS, path_params=PATH_PARAMS,
    ),
    _get("/v2", v2.server_metadata, "Server metadata", responses={200: V2ServerMetadata}),
    _get("/v2/health/live", v2.live, "Server liveness", responses={200: V2Live}),
    _get(
        "/v2/health/ready", v2.ready,
        "Server readiness (every model's default version loaded in this worker)",
        responses={200: V2Ready, 503: V2Ready},
    ),
    *_v2_model("", v2.metadata, "Model metadata: the input it takes", V2ModelMetadata),
    *_v2_model("/ready", v2.model_ready, "Model readiness, loading it on demand", V2ModelReady),
)  # fmt: skip

#: The plain-WSGI routes: (operation, handler), for `inference_service.predict.Router`.
PLAIN: tuple[tuple[Operation, predict.Handler], ...] = tuple(
    (route.operation, route.serve) for route in ROUTES if route.plain and route.serve is not None
)
#: The Flask views: (operation, view), for the web kit's `add_views`.
VIEWS: tuple[tuple[Operation, Callable[..., Any]], ...] = tuple(
    (route.operation, route.serve) for route in ROUTES if not route.plain and route.serve
)


def build_api() -> Api:
    """The service's OpenAPI operations, in the table's order (``api.document()`` is the
    document ``GET /openapi.json`` serves)."""
    api = Api(TITLE, shared.__version__, DESCRIPTION)
    for route in ROUTES:
        api.add(route.operation)
    return api
