"""A request body by its media type: read from the WSGI environ (`read_body`, at most
MAX_CONTENT_LENGTH bytes) and handed to the decoder of its format (`decode_request`). The predict
and explain routes both read their bodies here, so each media type is accepted, refused (415)
and limited (413) the same way on both."""

from __future__ import annotations

from typing import Any

import numpy as np
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_input_stream

from inference_service.decoders.instances import decode_instances
from inference_service.decoders.npy import NPY_MEDIA_TYPE, decode_npy
from inference_service.decoders.pictures import decode_pictures
from shared.web.errors import ApiError, to_api_error
from shared.web.validation import is_json_media_type

PICTURE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg"})
MULTIPART = "multipart/form-data"


def is_json(mimetype: str) -> bool:
    """Whether a body is read as JSON: a JSON media type, or none at all (curl -d without -H)."""
    return mimetype == "" or is_json_media_type(mimetype)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 beyond), chunked bodies included."""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit():  # the common case: read exactly that much
        n = int(length)
        if n > limit:
            raise to_api_error(RequestEntityTooLarge(), max_content_length=limit)
        body = environ["wsgi.input"].read(n)
        if len(body) != n:
            raise ApiError(400, f"the body ended after {len(body)} of {n} bytes")
        return body
    try:
        return get_input_stream(environ, max_content_length=limit).read()
    except HTTPException as exc:
        raise to_api_error(exc, max_content_length=limit) from None


def decode_request(
    environ: dict[str, Any], mimetype: str, input_size: int, max_images: int, max_bytes: int
) -> np.ndarray:
    """The request's images, float32 [N, input_size] in [0, 1], whatever the accepted media type
    (V1 JSON, .npy, a PNG/JPEG body, multipart ``image`` fields); 415 for any other."""
    if mimetype == MULTIPART:
        form = Request(environ)
        form.max_content_length = form.max_form_memory_size = max_bytes
        uploads = form.files.getlist("image")
        if not uploads:
            raise ApiError(400, "multipart body needs a file field named 'image'", field="image")
        pictures = [(f"image[{i}]", f.read()) for i, f in enumerate(uploads)]
        return decode_pictures(pictures, input_size, max_images)
    body = read_body(environ, max_bytes)
    if is_json(mimetype):
        return decode_instances(body, input_size, max_images)
    if mimetype == NPY_MEDIA_TYPE:
        return decode_npy(body, input_size, max_images)
    if mimetype in PICTURE_TYPES:
        return decode_pictures([("body", body)], input_size, max_images)
    raise ApiError(
        415,
        f"Content-Type {mimetype!r} is not accepted: send application/json, "
        f"{NPY_MEDIA_TYPE}, image/png, image/jpeg or multipart/form-data with an 'image' field",
        field="Content-Type",
    )
