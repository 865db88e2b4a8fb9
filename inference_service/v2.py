"""``/v2``: the Open Inference Protocol (KServe V2) REST API — server and model metadata, health.
The infer routes, with the binary tensor extension, are plain WSGI: `inference_service.predict`.

Deviation from the spec, on purpose: error bodies use the service-wide shape
``{"error": {"code", "message", "field"?}}`` instead of ``{"error": "<string>"}``; V2 clients only
look at the status code and print the body.
"""

from __future__ import annotations

from flask import Blueprint, Response

import shared
from inference_service.decoders import V2_DATATYPES, side_of
from inference_service.openapi import REGISTRY_ERRORS, api
from inference_service.responses import json_response
from inference_service.schemas import (
    PATH_PARAMS,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from inference_service.state import service

bp = Blueprint("v2", __name__)

PLATFORM = "digitflow_numpy_mlp"
INPUT_NAME = "input"


@api.route(bp, "GET", "/v2", summary="Server metadata", responses={200: V2ServerMetadata})
def server_metadata() -> Response:
    return json_response(
        {"name": "digitflow", "version": shared.__version__, "extensions": ["binary_tensor_data"]}
    )


@api.route(bp, "GET", "/v2/health/live", summary="Server liveness", responses={200: V2Live})
def live() -> Response:
    return json_response({"live": True})


@api.route(
    bp,
    "GET",
    "/v2/health/ready",
    summary="Server readiness (every model's default version loaded in this worker)",
    responses={200: V2Ready, 503: V2Ready},
)
def ready() -> Response:
    info = service().cache.readiness()
    return json_response({"ready": info["ready"]}, status=200 if info["ready"] else 503)


def _metadata(name: str, ref: str | None) -> Response:
    st = service()
    served = st.cache.get(name, ref)  # 404 unknown, 409 broken; the input size is the model's
    good = [str(d["version"]) for d in st.registry.describe_versions(name) if d["status"] == "ok"]
    size = served.input_size
    side = side_of(size)
    shapes = [[-1, size]] + ([[-1, side, side]] if side else [])
    return json_response(
        {
            "name": name,
            "versions": good,
            "platform": PLATFORM,
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "FP32",
                    "shape": [-1, size],
                    "parameters": {
                        "accepted_datatypes": list(V2_DATATYPES),
                        "accepted_shapes": shapes,
                        "pixel_range": {k: [0, int(high)] for k, (_, high) in V2_DATATYPES.items()},
                    },
                }
            ],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, served.n_classes]},
                {"name": "predictions", "datatype": "INT64", "shape": [-1]},
            ],
        }
    )


@api.route(
    bp,
    "GET",
    "/v2/models/{name}",
    summary="Model metadata (its default version's input)",
    responses={200: V2ModelMetadata},
    errors=REGISTRY_ERRORS,
    path_params=PATH_PARAMS,
)
def model_metadata(name: str) -> Response:
    return _metadata(name, None)


@api.route(
    bp,
    "GET",
    "/v2/models/{name}/versions/{ref}",
    summary="Model version metadata",
    responses={200: V2ModelMetadata},
    errors=REGISTRY_ERRORS,
    path_params=PATH_PARAMS,
)
def version_metadata(name: str, ref: str) -> Response:
    return _metadata(name, ref)


def _ready(name: str, ref: str | None) -> Response:
    served = service().cache.get(name, ref)  # loads on demand; 404 / 409 otherwise
    return json_response({"name": name, "version": str(served.version), "ready": True})


@api.route(
    bp,
    "GET",
    "/v2/models/{name}/ready",
    summary="Model readiness (loads the default version on demand)",
    responses={200: V2ModelReady},
    errors=REGISTRY_ERRORS,
    path_params=PATH_PARAMS,
)
def model_ready(name: str) -> Response:
    return _ready(name, None)


@api.route(
    bp,
    "GET",
    "/v2/models/{name}/versions/{ref}/ready",
    summary="Model version readiness (loads it on demand)",
    responses={200: V2ModelReady},
    errors=REGISTRY_ERRORS,
    path_params=PATH_PARAMS,
)
def version_ready(name: str, ref: str) -> Response:
    return _ready(name, ref)
