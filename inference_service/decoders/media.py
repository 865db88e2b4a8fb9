"""A request body by its media type: read from the WSGI environ (`read_body`, at most
MAX_CONTENT_LENGTH bytes) and handed to the decoder of its format (`decode_request`). The predict
and explain routes both read their bodies here, so each media type is accepted, refused (415)
and limited (413) the same way on both."""

from __future__ import annotations

from typing import Any

import numpy as np
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
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


def read_body(environ: dict[str, Any], limit: int) -> bytes | bytearray:
    """The request body, at most `limit` bytes (413 beyond), chunked bodies included."""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit():  # the common case: read exactly that much
        n = int(length)
        if n > limit:
            raise to_api_error(RequestEntityTooLarge(), max_content_length=limit)
        stream = environ["wsgi.input"]
        body = _receive(stream, n) if _is_gunicorn_body(stream, n) else stream.read(n)
        if len(body) != n:
            raise ApiError(400, f"the body ended after {len(body)} of {n} bytes")
        return body
    try:
        return get_input_stream(environ, max_content_length=limit).read()
    except HTTPException as exc:
        raise to_api_error(exc, max_content_length=limit) from None


def _is_gunicorn_body(stream: Any, n: int) -> bool:
    """Whether `stream` is gunicorn's reader of a body of exactly `n` bytes, untouched so far."""
    reader = getattr(stream, "reader", None)
    return (
        type(stream) is Body
        and stream.buf.tell() == 0
        and type(reader) is LengthReader
        and reader.length == n
        and type(reader.unreader) is SocketUnreader
    )


def _receive(stream: Body, n: int) -> bytearray:
    """The speed trick for large bodies (BENCHMARKS.md §3, batch predict): gunicorn's
    ``Body.read`` passes a body through three BytesIO buffers, ~2.2 ms for a 3 MB ``.npy`` batch
    of 1,024 images, while one ``recv_into`` a buffer of the body's size takes ~0.55 ms. So: take
    what gunicorn has already read past the headers, receive the rest straight into one
    buffer, and tell gunicorn's reader the body is consumed (keep-alive and pipelined requests
    carry on as before). Short on a closed connection, like ``read``."""
    reader = stream.reader
    unreader = reader.unreader
    held = unreader.take_buffered()
    if len(held) > n:  # a pipelined request behind the body: give it back
        unreader.unread(held[n:])
        held = held[:n]
    body = bytearray(n)
    view = memoryview(body)
    view[: len(held)] = held
    got = len(held)
    while got < n:
        k = unreader.sock.recv_into(view[got:], n - got)
        if not k:
            break
        got += k
    view.release()
    del body[got:]
    reader.length -= got
    return body


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
