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
from inference_service.decoders import V2_DATATYPES, image_shapes
from inference_service.responses import answer
from inference_service.schemas import (
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
    V2TensorMetadata,
)
from inference_service.state import service


def server_metadata() -> Response:
    extensions = ["binary_tensor_data"]
    return answer(
        V2ServerMetadata(name="digitflow", version=shared.__version__, extensions=extensions)
    )


def live() -> Response:
    return answer(V2Live(live=True))


def ready() -> Response:
    ready = service().cache.readiness()["ready"]
    return answer(V2Ready(ready=ready), 200 if ready else 503)


def metadata(name: str, ref: str | None = None) -> Response:
    st = service()
    served = st.cache.get(name, ref)  # 404 unknown, 409 broken; the input size is the model's
    good = [str(d["version"]) for d in st.registry.describe_versions(name) if d["status"] == "ok"]
    parameters = {
        "accepted_datatypes": list(V2_DATATYPES),
        "accepted_shapes": [[-1, *shape] for shape in image_shapes(served.input_size)],
        "pixel_range": {k: [0, int(high)] for k, (_, high) in V2_DATATYPES.items()},
    }
    # The input's shape is the one the model's layers take: [-1, 1, 28, 28] for a convolutional
    # network, [-1, 784] for a perceptron (every accepted shape is served either way).
    shape = [-1, *served.input_shape]
    view = V2ModelMetadata(
        name=name,
        versions=good,
        platform="digitflow_numpy_" + ("cnn" if len(shape) > 2 else "mlp"),
        inputs=[
            V2TensorMetadata(name="input", datatype="FP32", shape=shape, parameters=parameters)
        ],
        outputs=[
            V2TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, served.n_classes]),
            V2TensorMetadata(name="predictions", datatype="INT64", shape=[-1]),
        ],
    )
    return answer(view, exclude_unset=True)  # an output tensor has no parameters


def model_ready(name: str, ref: str | None = None) -> Response:
    served = service().cache.get(name, ref)  # loads on demand; 404 / 409 otherwise
    return answer(V2ModelReady(name=name, version=str(served.version), ready=True))
