"""``POST /v1/models/{name}/versions/{ref}/feature-maps``: what the first convolution sees.

The draw page shows a convolutional version's first Conv2D: its filters as small pictures and,
for the digit being drawn, their feature maps (the layer's output after its activation), computed
by the engine (`Sequential.first_convolution`). The body is a predict body read by the same
decoders (`decoders.decode_request`: V1 JSON, .npy, pictures), so the maps are of exactly the
pixels the network predicts on. A version without a convolution (a perceptron) is a 409.

A Flask view, like explain: the predict routes (plain WSGI, the hot path) do no work for it. At
most MAX_EXPLAIN_IMAGES images (413 beyond), as for explain: an answer carries out channels x
height x width numbers per image.
"""

from __future__ import annotations

from flask import Response, request

from inference_service import decoders
from inference_service.responses import MODEL_VERSION, json_response
from inference_service.state import service
from shared.web.errors import ApiError


def feature_maps(name: str, ref: str) -> Response:
    st = service()
    served = st.cache.get(name, ref)  # 404 unknown, 409 broken: before the body is read
    settings = st.settings
    x = decoders.decode_request(
        request.environ, request.mimetype, served.input_size, settings.max_explain_images,
        settings.max_content_length,
    )  # fmt: skip
    seen = served.loaded.model.first_convolution(x)
    if seen is None:
        raise ApiError(
            409, f"model {served.name!r} version {served.version} has no convolution layer",
            code="no_convolution",
        )  # fmt: skip
    payload = {
        "model": served.name,
        "model_version": served.version,
        "layer": seen.layer,
        "filters": seen.filters,
        "feature_maps": seen.feature_maps,
    }
    return json_response(payload, headers={MODEL_VERSION: str(served.version)})
