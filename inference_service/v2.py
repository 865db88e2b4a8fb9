"""``/v2``: the Open Inference Protocol (KServe V2) REST API, incl. the binary tensor extension.

Deviation from the spec, on purpose: error bodies use the service-wide shape
``{"error": {"code", "message", "field"?}}`` instead of ``{"error": "<string>"}``; V2 clients only
look at the status code and print the body.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from flask import Blueprint, Response, request

import shared
from inference_service.context import ServiceState, service
from inference_service.errors import ApiError
from inference_service.responses import dumps, json_response
from inference_service.serving import Served
from inference_service.validation import (
    N_PIXELS,
    SIDE,
    V2_INPUT_NAME,
    V2Request,
    is_json_media_type,
    parse_v2_infer,
)

bp = Blueprint("v2", __name__, url_prefix="/v2")

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "digitflow_numpy_mlp"
N_CLASSES = 10


@bp.get("")
def server_metadata() -> Response:
    return json_response(
        {"name": "digitflow", "version": shared.__version__, "extensions": ["binary_tensor_data"]}
    )


@bp.get("/health/live")
def live() -> Response:
    return json_response({"live": True})


@bp.get("/health/ready")
def ready() -> Response:
    info = service().cache.readiness()
    return json_response({"ready": info["ready"]}, status=200 if info["ready"] else 503)


def _metadata(name: str, ref: str | None) -> Response:
    reg = service().registry
    if ref is not None:
        reg.resolve(name, ref)  # 404 for an unknown version/alias, 409 if broken
    good = [str(d["version"]) for d in reg.describe_versions(name) if d["status"] == "ok"]
    return json_response(
        {
            "name": name,
            "versions": good,
            "platform": PLATFORM,
            "inputs": [
                {
                    "name": V2_INPUT_NAME,
                    "datatype": "FP32",
                    "shape": [-1, N_PIXELS],
                    "parameters": {
                        "accepted_datatypes": ["FP32", "UINT8"],
                        "accepted_shapes": [[-1, N_PIXELS], [-1, SIDE, SIDE]],
                        "pixel_range": {"FP32": [0, 1], "UINT8": [0, 255]},
                    },
                }
            ],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, N_CLASSES]},
                {"name": "predictions", "datatype": "INT64", "shape": [-1]},
            ],
        }
    )


@bp.get("/models/<name>")
def model_metadata(name: str) -> Response:
    return _metadata(name, None)


@bp.get("/models/<name>/versions/<ref>")
def version_metadata(name: str, ref: str) -> Response:
    return _metadata(name, ref)


def _ready(name: str, ref: str | None) -> Response:
    served = service().cache.get(name, ref)  # loads on demand; 404 / 409 otherwise
    return json_response({"name": name, "version": str(served.version), "ready": True})


@bp.get("/models/<name>/ready")
def model_ready(name: str) -> Response:
    return _ready(name, None)


@bp.get("/models/<name>/versions/<ref>/ready")
def version_ready(name: str, ref: str) -> Response:
    return _ready(name, ref)


# ---- infer ----------------------------------------------------------------------------------


def parse_infer_request(
    mimetype: str, header: str | None, body: bytes, max_images: int
) -> V2Request:
    """A V2 infer body: JSON, or the binary tensor extension when the `header` (the value of
    Inference-Header-Content-Length) is present. One reader for the Flask view and the WSGI fast
    path. Raises ApiError (415 for another media type, else a 4xx naming the field)."""
    if header is None and not is_json_media_type(mimetype):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {mimetype!r} is not accepted: send application/json, or the binary "
            f"tensor extension with an {HEADER_LENGTH} header",
            "Content-Type",
        )
    return parse_v2_infer(body, header, max_images)


def _read_request(max_images: int) -> V2Request:
    return parse_infer_request(
        request.mimetype,
        request.headers.get(HEADER_LENGTH),
        request.get_data(cache=False),
        max_images,
    )


def infer_answer(
    st: ServiceState, served: Served, req: V2Request
) -> tuple[bytes, list[tuple[str, str]]]:
    """The answer to a V2 infer request: (body, headers). One builder for the Flask view and the
    WSGI fast path, so both answer byte for byte the same."""
    proba = np.ascontiguousarray(served.predict_proba(req.x), dtype=np.float32)
    predictions = proba.argmax(axis=1).astype(np.int64)
    tensors = {
        "probabilities": ("FP32", proba, np.dtype("<f4")),
        "predictions": ("INT64", predictions, np.dtype("<i8")),
    }
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out_name, binary in req.outputs.items():
        datatype, arr, wire = tensors[out_name]
        entry: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            raw = arr.astype(wire, copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.reshape(-1)
        outputs.append(entry)
    payload: dict[str, Any] = {"model_name": served.name, "model_version": str(served.version)}
    if req.id is not None:
        payload["id"] = req.id
    payload["outputs"] = outputs
    version = ("X-Model-Version", str(served.version))
    if not chunks:
        body = dumps(payload)
        headers = [("Content-Type", "application/json"), version]
    else:
        head = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        body = b"".join([head, *chunks])
        headers = [
            ("Content-Type", "application/octet-stream"),
            (HEADER_LENGTH, str(len(head))),
            version,
        ]
    st.telemetry.count_images(served.name, served.version, len(req.x))
    return body, headers


def _infer(name: str, ref: str | None) -> Response:
    st = service()
    served: Served = st.cache.get(name, ref)
    req = _read_request(st.settings.max_batch_images)
    body, headers = infer_answer(st, served, req)
    return Response(body, headers=headers)


#: The infer routes (under /v2); inference_service/fastpath.py answers the same two.
INFER_DEFAULT_RULE = "/models/<name>/infer"
INFER_VERSION_RULE = "/models/<name>/versions/<ref>/infer"


@bp.post(INFER_DEFAULT_RULE)
def model_infer(name: str) -> Response:
    return _infer(name, None)


@bp.post(INFER_VERSION_RULE)
def version_infer(name: str, ref: str) -> Response:
    return _infer(name, ref)
