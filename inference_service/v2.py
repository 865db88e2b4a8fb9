"""``/v2``: the Open Inference Protocol (KServe V2) REST API — server and model metadata, health.
The infer routes, with the binary tensor extension, are plain WSGI: `inference_service.predict`.

Deviation from the spec, on purpose: error bodies use the service-wide shape
``{"error": {"code", "message", "field"?}}`` instead of ``{"error": "<string>"}``; V2 clients only
look at the status code and print the body.
"""

from __future__ import annotations

from collections.abc import Callable

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


def for_default_and_any_version(
    suffix: str, summary: str, answer: type
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Declare a view for ``/v2/models/{name}<suffix>`` (the default version) and for
    ``/v2/models/{name}/versions/{ref}<suffix>``; the view gets ``ref=None`` for the first."""

    def declare(view: Callable[..., Response]) -> Callable[..., Response]:
        for path, which in (
            (f"/v2/models/{{name}}{suffix}", "the default version"),
            (f"/v2/models/{{name}}/versions/{{ref}}{suffix}", "a version number, latest or alias"),
        ):
            api.route(
                bp, "GET", path, summary=f"{summary} ({which})", responses={200: answer},
                errors=REGISTRY_ERRORS, path_params=PATH_PARAMS,
            )(view)  # fmt: skip
        return view

    return declare


@for_default_and_any_version("", "Model metadata: the input it takes", V2ModelMetadata)
def metadata(name: str, ref: str | None = None) -> Response:
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


@for_default_and_any_version("/ready", "Model readiness, loading it on demand", V2ModelReady)
def model_ready(name: str, ref: str | None = None) -> Response:
    served = service().cache.get(name, ref)  # loads on demand; 404 / 409 otherwise
    return json_response({"name": name, "version": str(served.version), "ready": True})
