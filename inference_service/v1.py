"""``/v1``: model listing and predictions (JSON pixels or an uploaded picture)."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, request

from inference_service.context import ServiceState, service
from inference_service.errors import ApiError, bad_request, unprocessable
from inference_service.responses import dumps, json_response
from inference_service.serving import Served
from inference_service.validation import (
    N_PIXELS,
    NPY_MEDIA_TYPE,
    is_json_media_type,
    parse_npy,
    parse_v1_json,
    too_many_images,
)
from shared.registry import BrokenVersionError

bp = Blueprint("v1", __name__, url_prefix="/v1")

_PICTURE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg"})


# ---- listing --------------------------------------------------------------------------------


@bp.get("/models")
def list_models() -> Response:
    st = service()
    reg = st.registry
    models = []
    for name in reg.model_names():
        try:
            state = reg.state(name)
            models.append(
                {
                    "name": name,
                    "latest_version": reg.latest_version(name),
                    "default_version": reg.default_version(name),
                    "pinned_version": state["pinned"],
                    "serving_version": st.cache.served_default(name),
                    "versions": reg.versions(name),
                    "aliases": state["aliases"],
                }
            )
        except LookupError:
            continue  # removed while listing
    return json_response({"models": models})


def _aliases_by_version(aliases: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        out.setdefault(version, []).append(alias)
    return out


@bp.get("/models/<name>")
def get_model(name: str) -> Response:
    st = service()
    reg = st.registry
    versions = reg.describe_versions(name)  # validates the name; ModelNotFoundError → 404
    state = reg.state(name)
    default = reg.default_version(name)
    by_version = _aliases_by_version(state["aliases"])
    rows = []
    for entry in versions:
        v = entry["version"]
        manifest = entry["manifest"] or {}
        status, error = entry["status"], entry["error"]
        if status == "ok" and (reason := st.cache.broken_reason(name, v)) is not None:
            status, error = "broken", reason  # verifies, but this worker could not load it
        rows.append(
            {
                "version": v,
                "status": status,
                "error": error,
                "created_at": manifest.get("created_at"),
                "sha256": manifest.get("sha256"),
                "metrics": manifest.get("metrics"),
                "config": manifest.get("config"),
                "files": sorted(manifest.get("files") or {}),
                "aliases": by_version.get(v, []),
                "default": v == default,
                "pinned": v == state["pinned"],
                "loaded": st.cache.is_loaded(name, v),
            }
        )
    return json_response(
        {
            "name": name,
            "latest_version": reg.latest_version(name),
            "default_version": default,
            "pinned_version": state["pinned"],
            "serving_version": st.cache.served_default(name),
            "aliases": state["aliases"],
            "versions": rows,
            "history": state["history"][-50:],
        }
    )


@bp.get("/models/<name>/versions/<ref>")
def get_version(name: str, ref: str) -> Response:
    st = service()
    reg = st.registry
    version = reg.resolve(name, ref)  # 404 / 409 (broken) via the error handlers
    reason = st.cache.broken_reason(name, version)
    if reason is not None:
        raise BrokenVersionError(reason)
    manifest = reg.manifest(name, version)
    state = reg.state(name)
    manifest["aliases"] = _aliases_by_version(state["aliases"]).get(version, [])
    manifest["default"] = version == reg.default_version(name)
    manifest["status"] = "ok"
    manifest["loaded"] = st.cache.is_loaded(name, version)
    return json_response(manifest)


# ---- predict --------------------------------------------------------------------------------


def _pictures(files: list[tuple[str, bytes]], max_images: int) -> np.ndarray:
    """Uploaded pictures → float32 [N, 784] via the MNIST preprocessing recipe."""
    from shared.preprocess import PreprocessError, picture_to_mnist  # Pillow: only when needed

    if len(files) > max_images:
        raise too_many_images(len(files), max_images, "image")
    out = np.empty((len(files), N_PIXELS), dtype=np.float32)
    for i, (where, data) in enumerate(files):
        try:
            out[i] = picture_to_mnist(data)
        except PreprocessError as exc:
            message = f"{where}: {exc}"
            text = str(exc)
            if "too large" in text:
                raise ApiError(413, "image_too_large", message, where) from None
            if "no ink" in text:
                raise unprocessable(message, where, code="blank_image") from None
            raise bad_request(message, where, code="invalid_image") from None
    return out


def parse_array_body(mimetype: str, raw: bytes, max_images: int) -> np.ndarray | None:
    """A JSON or ``.npy`` predict body as float32 [N, 784] in [0, 1]; None for any other media
    type. Raises ApiError (a 4xx naming the field) for a body that does not validate."""
    if is_json_media_type(mimetype):
        return parse_v1_json(raw, max_images)
    if mimetype == NPY_MEDIA_TYPE:
        return parse_npy(raw, max_images)
    return None


def read_images(max_images: int) -> np.ndarray:
    """The request's images as float32 [N, 784] in [0, 1], whatever the accepted body type."""
    mimetype = request.mimetype
    if mimetype in _PICTURE_TYPES:
        return _pictures([("body", request.get_data(cache=False))], max_images)
    if mimetype == "multipart/form-data":
        uploads = request.files.getlist("image")
        if not uploads:
            raise bad_request("multipart body needs a file field named 'image'", "image")
        return _pictures([(f"image[{i}]", f.read()) for i, f in enumerate(uploads)], max_images)
    x = parse_array_body(mimetype, request.get_data(cache=False), max_images)
    if x is not None:
        return x
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {mimetype!r} is not accepted: send application/json, {NPY_MEDIA_TYPE}, "
        "image/png, image/jpeg or multipart/form-data with an 'image' field",
        "Content-Type",
    )


def predict_body(st: ServiceState, served: Served, x: np.ndarray) -> bytes:
    """The JSON answer to a predict request (counted in the metrics). One builder for the Flask
    view and the WSGI fast path, so both answer byte for byte the same."""
    proba = np.ascontiguousarray(served.predict_proba(x), dtype=np.float32)
    body = dumps(
        {
            "model": served.name,
            "model_version": served.version,
            "predictions": proba.argmax(axis=1),
            "probabilities": proba,
        }
    )
    st.telemetry.count_images(served.name, served.version, len(x))
    return body


def predict_response(st: ServiceState, served: Served, x: np.ndarray) -> Response:
    return Response(
        predict_body(st, served, x),
        mimetype="application/json",
        headers={"X-Model-Version": str(served.version)},
    )


#: The predict routes (under /v1); inference_service/fastpath.py answers the same two.
PREDICT_DEFAULT_RULE = "/models/<name>/predict"
PREDICT_VERSION_RULE = "/models/<name>/versions/<ref>/predict"


@bp.post(PREDICT_DEFAULT_RULE)
def predict_default(name: str) -> Response:
    st = service()
    served = st.cache.get(name)
    return predict_response(st, served, read_images(st.settings.max_batch_images))


@bp.post(PREDICT_VERSION_RULE)
def predict_version(name: str, ref: str) -> Response:
    st = service()
    served = st.cache.get(name, ref)
    return predict_response(st, served, read_images(st.settings.max_batch_images))
