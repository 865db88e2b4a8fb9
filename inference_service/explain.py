"""``POST /v1/models/{name}/explain`` (and ``/versions/{ref}/explain``): why the model said 7.

The prediction plus integrated-gradients attributions (`shared.nn.explain`) of one class per
image: the predicted one, or the class the request names ("why not 1"). The bodies are the predict
route's, read by the same decoders (`decoders.decode_request`; a JSON body through
`decoders.read_instances` with `ExplainRequest`, which adds ``target`` and ``steps``). Bodies that
are not JSON carry ``target`` and ``steps`` as query parameters; a JSON body carries them itself
(a query parameter beside it is a 422: one place per request for each).

A Flask view, not plain WSGI like predict: an explanation costs ~steps forward and backward
passes, so Flask's per-request overhead (~0.1 ms) is noise here. At most MAX_EXPLAIN_IMAGES
images per request (413 beyond).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Response, request
from pydantic import ValidationError

from inference_service import decoders
from inference_service.loading import Served
from inference_service.responses import MODEL_VERSION, json_response
from inference_service.rollout import ROUTING_KEY
from inference_service.schemas import ExplainOptions, ExplainQuery, ExplainRequest
from inference_service.settings import Settings
from inference_service.state import service
from shared.nn.explain import integrated_gradients
from shared.web.errors import ApiError
from shared.web.validation import validation_error

BASELINE = "black image (every pixel 0)"

#: Where a batch's size is counted, per media type (the field a 413 names).
_BATCH_FIELD = {decoders.MULTIPART: "image", decoders.NPY_MEDIA_TYPE: "body"}


def _read(served: Served, settings: Settings) -> tuple[np.ndarray, ExplainOptions]:
    """The images and the explain options of the current request."""
    mimetype = request.mimetype
    if decoders.is_json(mimetype):
        for name in ExplainQuery.model_fields:
            if name in request.args:
                raise ApiError(
                    422, f"with a JSON body, send {name!r} in the body, not as a query parameter",
                    field=name,
                )  # fmt: skip
        raw = decoders.read_body(request.environ, settings.max_content_length)
        size, limit = served.input_size, settings.max_batch_images
        body, x = decoders.read_instances(raw, size, limit, ExplainRequest)
        return x, body
    try:
        query = ExplainQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise validation_error(exc, "query") from None
    images = decoders.decode_request(
        request.environ, mimetype, served.input_size, settings.max_batch_images,
        settings.max_content_length,
    )  # fmt: skip
    return images, query


def explain(name: str, ref: str | None = None) -> Response:
    st = service()
    # Like predict: the default route follows the model's traffic split (X-Routing-Key sticks);
    # 404 unknown, 409 broken — before the body is read.
    served = st.cache.get(name, ref, request.environ.get(ROUTING_KEY))
    x, options = _read(served, st.settings)
    limit = st.settings.max_explain_images
    if len(x) > limit:
        raise ApiError(
            413, f"{len(x)} images in one explain request; MAX_EXPLAIN_IMAGES is {limit}",
            code="too_many_images", field=_BATCH_FIELD.get(request.mimetype, "instances"),
        )  # fmt: skip
    if options.target is not None and not 0 <= options.target < served.n_classes:
        raise ApiError(
            422, f"target {options.target} is not a class of this model: 0 to {served.n_classes - 1}",
            field="target",
        )  # fmt: skip
    proba = served.predict_proba(x)
    predictions = proba.argmax(axis=1)
    target = predictions if options.target is None else options.target
    found = integrated_gradients(served.loaded.model, x, target, steps=options.steps)
    payload: dict[str, Any] = {
        "model": served.name,
        "model_version": served.version,
        "predictions": predictions,
        "probabilities": proba,
        "target": found.target,
        "steps": options.steps,
        "baseline": BASELINE,
        "attributions": found.attributions.astype(np.float32),
        "logit_difference": found.logit_difference,
        "completeness_gap": found.completeness_gap,
    }
    return json_response(payload, headers={MODEL_VERSION: str(served.version)})
