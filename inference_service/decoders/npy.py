"""A ``.npy`` file (``Content-Type: application/x-npy``), read without np.load."""

from __future__ import annotations

import io

import numpy as np
from numpy.lib import format as npy_format

from inference_service.decoders.pixels import (
    RAW_MAX,
    UNIT_MAX,
    check_range,
    empty_batch,
    index_path,
    is_batch_shape,
    shapes_text,
    to_unit,
    too_many_images,
)
from shared.web.errors import ApiError

NPY_MEDIA_TYPE = "application/x-npy"
_NPY_MAGIC = b"\x93NUMPY"
#: The most a header can take: magic, version and length field (12 bytes at most) and NumPy's own
#: limit on the header text (`max_header_size`, 10,000 bytes), so it is read from a copy of the
#: body's first bytes, not of the whole body (a 3.2 MB batch of 1,024 images: BytesIO copies a
#: bytearray whole, ~1.5 ms in a worker, BENCHMARKS.md §3).
_NPY_HEADER_MAX = 12 + 10_000


def _npy_error(message: str) -> ApiError:
    return ApiError(400, message, code="malformed_npy", field="body")


def _npy_header(raw: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file, read without touching the
    data: np.load would allocate the header's shape before reading a byte of it."""
    if not raw:
        raise _npy_error("request body is empty; expected a .npy file")
    if not raw.startswith(_NPY_MAGIC):
        raise _npy_error(
            "request body is not a .npy file (no \\x93NUMPY magic); write it with numpy.save"
        )
    try:
        fp = io.BytesIO(bytes(memoryview(raw)[:_NPY_HEADER_MAX]))
        major, minor = npy_format.read_magic(fp)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
        elif (major, minor) in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {major}.{minor}")
    except (ValueError, EOFError, SyntaxError, TypeError, UnicodeError) as exc:
        raise _npy_error(f"request body is not a readable .npy file: {exc}") from None
    return tuple(shape), bool(fortran), np.dtype(dtype), fp.tell()


def decode_npy(raw: bytes, input_size: int, max_images: int) -> np.ndarray:
    """A ``.npy`` body → float32 [N, input_size] in [0, 1].

    An integer dtype means pixels 0-255 (uint8 is the natural one), a float dtype pixels 0-1, like
    the V2 protocol's UINT8 / FP32. Pickled (object) arrays are refused. The data is used in place
    (no copy) when it is already float32.
    """
    shape, fortran, dtype, offset = _npy_header(raw)
    if dtype.hasobject or dtype.kind not in "uif" or dtype.fields is not None:
        raise ApiError(
            422,
            f"body.dtype {dtype.str!r} is not supported: send uint8 (pixels 0-255) or float32 "
            "(pixels 0-1)",
            code="unsupported_dtype",
            field="body.dtype",
        )
    if not is_batch_shape(shape, input_size):
        raise ApiError(
            400,
            f"body.shape must be {shapes_text(input_size)}, got {list(shape)}",
            field="body.shape",
        )
    n = shape[0]
    if n == 0:
        raise empty_batch("body.shape")
    if n > max_images:
        raise too_many_images(n, max_images, "body.shape")
    count = n * input_size
    size = len(raw) - offset
    if size != count * dtype.itemsize:
        raise _npy_error(
            f"body holds {size} bytes of array data; shape {list(shape)} of {dtype.str} needs "
            f"{count * dtype.itemsize}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C").reshape(n, input_size)
    high = UNIT_MAX if dtype.kind == "f" else RAW_MAX
    try:
        check_range(arr, high, lambda i, k: index_path("body", i, k, shape[1:]))
    except ApiError as exc:
        if dtype.kind == "f":
            exc.message += " (float arrays are pixels 0-1; send uint8 for 0-255)"
            exc.args = (exc.message,)
        raise
    return to_unit(arr, high)
