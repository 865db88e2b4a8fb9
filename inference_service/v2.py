"""``/v2``: the Open Inference Protocol (KServe V2) REST API — server and model metadata, health.
The infer routes, with the binary tensor extension, are plain WSGI: `inference_service.predict`.
All are listed in `inference_service.routes`; a model route serves ``/v2/models/{name}...`` (the
default version: ``ref=None``) and ``/v2/models/{name}/versions/{ref}...``.

Deviation from the spec, on purpose: error bodies use the service-wide shape
``{"error": {"code", "message", "field"?}}`` instead of ``{"error": "<string>"}``; V2 clients only
look at the status code and print the body.
"""

from __future__ import annotations

from flask import Response

import shared
from inference_service.decoders import V2_DATATYPES, side_of
from inference_service.responses import json_response
from inference_service.state import service

PLATFORM = "digitflow_numpy_mlp"
INPUT_NAME = "input"


def server_metadata() -> Response:
    return json_response(
        {"name": "digitflow", "version": shared.__version__, "extensions": ["binary_tensor_data"]}
    )


def live() -> Response:
    return json_response({"live": True})


def ready() -> Response:
    info = service().cache.readiness()
    return json_response({"ready": info["ready"]}, status=200 if info["ready"] else 503)


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


def model_ready(name: str, ref: str | None = None) -> Response:
    served = service().cache.get(name, ref)  # loads on demand; 404 / 409 otherwise
    return json_response({"name": name, "version": str(served.version), "ready": True})
