"""One decoder per wire format: request bytes → float32 [N, input size] pixels in [0, 1].

* `decode_instances` — V1 JSON ``{"instances": [...], "scale": "raw"|"unit"}``;
* `decode_npy` — a ``.npy`` file (``application/x-npy``);
* `decode_v2` — an Open Inference Protocol infer request, JSON or the binary tensor extension;
* `decode_pictures` — PNG/JPEG pictures (a body, or multipart ``image`` fields).

Each takes the served model's input size and MAX_BATCH_IMAGES and either returns the batch or
raises an `ApiError` naming the field (``instances[3][17]``, ``inputs[0].datatype``,
``body.shape``). An image is ``input size`` values, or ``side`` rows of ``side`` values when the
input size is a square (28 x 28 for an MNIST model). The forward pass that follows checks nothing
again.

The JSON structure is validated by the pydantic models of `inference_service.schemas`; the pixel
arrays themselves by NumPy, because that is where the time goes: orjson → one ``np.asarray`` →
shape check → one vectorised range check. Only when that fails do we walk the Python lists to
name the first offending value, so bad requests get a precise message without slowing good ones.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from inference_service.schemas import PredictRequest, V2InferRequest
from shared.web.errors import ApiError
from shared.web.validation import validation_error

NPY_MEDIA_TYPE = "application/x-npy"
V2_HEADER_LENGTH = "Inference-Header-Content-Length"
V2_OUTPUTS = ("probabilities", "predictions")
#: Largest pixel value of each JSON scale / V2 datatype / .npy dtype kind.
RAW_MAX = 255.0
UNIT_MAX = 1.0
#: V2 datatype → (NumPy little-endian dtype of the binary form, largest pixel value).
V2_DATATYPES = {"FP32": (np.dtype("<f4"), UNIT_MAX), "UINT8": (np.dtype("u1"), RAW_MAX)}

_NUMBER_TYPES = (int, float)
_NPY_MAGIC = b"\x93NUMPY"

M = TypeVar("M", bound=BaseModel)
#: Where a bad value sits: (image n, pixel k) → a field path.
Locate = Callable[[int, int], str]


# ---- shared pieces ----------------------------------------------------------------------------


def to_unit(arr: np.ndarray, high: float) -> np.ndarray:
    """Pixels 0..`high` (already range-checked) as float32 in [0, 1]: the one place 0-255 pixels
    are scaled."""
    if high == UNIT_MAX:
        return arr.astype(np.float32, copy=False)
    return np.multiply(arr, np.float32(1.0 / RAW_MAX), dtype=np.float32)


def side_of(input_size: int) -> int | None:
    """The side of a square image of `input_size` pixels (28 for 784), else None."""
    side = math.isqrt(input_size)
    return side if side * side == input_size and side > 1 else None


def shapes_text(input_size: int) -> str:
    side = side_of(input_size)
    return f"[N, {input_size}]" + (f" or [N, {side}, {side}]" if side else "")


def too_many_images(count: int, limit: int, where: str) -> ApiError:
    return ApiError(
        413,
        f"{count} images in one request; MAX_BATCH_IMAGES is {limit}",
        code="too_many_images",
        field=where,
    )


def empty_batch(where: str) -> ApiError:
    return ApiError(
        422, f"{where} holds no image: send at least one", code="empty_batch", field=where
    )


def check_range(arr: np.ndarray, high: float, locate: Locate) -> None:
    """A 400 naming the first value of `arr` ([N, size]) that is NaN, infinite or outside
    [0, high]."""
    # Two reductions on the happy path; NaN propagates through min/max and fails both tests.
    if arr.min() >= 0 and arr.max() <= high:
        return
    ok = (arr >= 0) & (arr <= high)  # NaN compares False, so it is located here too
    n, k = (int(i) for i in np.argwhere(~ok)[0])
    value = arr[n, k]
    where = locate(n, k)
    if not np.isfinite(value):
        message = f"{where} is {value!r}: pixel values must be finite numbers"
    else:
        shown = int(value) if float(value).is_integer() else float(value)
        message = f"{where} = {shown} is out of range [0, {high:g}]"
    raise ApiError(400, message, field=where)


def _load_json(raw: bytes, what: str) -> Any:
    """orjson (strict: NaN/Infinity literals and numbers overflowing a double are refused)."""
    if not raw:
        raise ApiError(400, f"{what} is empty; expected a JSON object", code="malformed_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc}", code="malformed_json") from None


def _validate(model: type[M], payload: Any, what: str) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, what, status=400) from None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES  # bool is a subclass of int: excluded on purpose


def _has_bool(values: Any) -> bool:
    """True if a (nested) list holds a JSON boolean: NumPy would silently turn it into 0/1."""
    if isinstance(values, list):
        if values and isinstance(values[0], list):
            return any(_has_bool(v) for v in values)
        return bool in map(type, values)
    return isinstance(values, bool)


# ---- V1 JSON instances ------------------------------------------------------------------------


def _check_numbers(values: list, path: str) -> None:
    for j, v in enumerate(values):
        if not _is_number(v):
            raise ApiError(
                400, f"{path}[{j}] must be a number, got {_describe(v)}", field=f"{path}[{j}]"
            )


def _instance_array(item: Any, path: str, size: int, side: int | None) -> tuple[np.ndarray, bool]:
    """Slow, precise check of one image: (float64 [size], nested?) or a 400 naming the problem."""
    expected = f"expected {size} numbers" + (f" or {side} rows of {side} numbers" if side else "")
    if not isinstance(item, list):
        raise ApiError(
            400, f"{path} must be a list ({expected}), got {_describe(item)}", field=path
        )
    if side and len(item) == side and all(isinstance(row, list) for row in item):
        for r, row in enumerate(item):
            if len(row) != side:
                where = f"{path}[{r}]"
                raise ApiError(400, f"{where} has {len(row)} values; {expected}", field=where)
            _check_numbers(row, f"{path}[{r}]")
        return np.asarray(item, dtype=np.float64).reshape(size), True
    if len(item) != size:
        raise ApiError(400, f"{path} has {len(item)} values; {expected}", field=path)
    _check_numbers(item, path)
    return np.asarray(item, dtype=np.float64), False


def _index_path(path: str, n: int, k: int, side: int | None) -> str:
    if side:
        return f"{path}[{n}][{k // side}][{k % side}]"
    return f"{path}[{n}][{k}]"


def _uint8_pixels(instances: list, size: int, side: int | None) -> np.ndarray | None:
    """Images of integers 0-255 (flat, or rows) as uint8 [N, size], else None.

    ``bytes(list)`` converts at C speed and raises for anything but integers in 0-255 (a float, a
    string, null, a nested list, 256, -1), so the values need no further range check; None sends
    the request down the general path, which names the first bad value. JSON booleans would pass
    as 0/1: the caller only comes here when the body holds no ``true``/``false``.
    """
    chunks = []
    try:
        for item in instances:
            if type(item) is not list:
                return None
            if len(item) == size:
                chunks.append(bytes(item))
            elif side and len(item) == side:
                for row in item:
                    if type(row) is not list or len(row) != side:
                        return None
                chunks.append(b"".join(map(bytes, item)))
            else:
                return None
    except (TypeError, ValueError):
        return None
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(chunks), size)


def _instances_batch(
    instances: list, raw: bytes, high: float, size: int, max_images: int
) -> np.ndarray:
    """Pixels of a list of images as sent (0..high), [N, size]; layouts may be mixed.

    `raw` is the request body: a cheap substring test on it tells whether a JSON boolean could be
    hiding among the numbers, so only such requests pay for the per-element check.
    """
    path = "instances"
    if not instances:
        raise empty_batch(path)
    if len(instances) > max_images:
        raise too_many_images(len(instances), max_images, path)
    side = side_of(size)
    maybe_bool = b"true" in raw or b"false" in raw
    if not maybe_bool:
        # The common case, integers 0-255: bytes() checks them; out of range for "unit" (or
        # anything else) takes the general path, which names the first bad value.
        pixels = _uint8_pixels(instances, size, side)
        if pixels is not None and (high >= RAW_MAX or pixels.max() <= high):
            return pixels

    arr: np.ndarray | None
    try:
        arr = np.asarray(instances)
    except (ValueError, TypeError, OverflowError):
        arr = None  # ragged or not numeric: fall through to the precise walk
    nested = False
    if arr is not None and arr.dtype.kind in "iuf":
        if arr.ndim == 2 and arr.shape[1] == size:
            pass
        elif side and arr.ndim == 3 and arr.shape[1:] == (side, side):
            arr = arr.reshape(len(instances), size)
            nested = True
        else:
            arr = None
        if arr is not None and maybe_bool and _has_bool(instances):
            arr = None
    else:
        arr = None

    if arr is None:
        rows = [
            _instance_array(item, f"{path}[{n}]", size, side) for n, item in enumerate(instances)
        ]
        arr = np.stack([r[0] for r in rows])
        layouts = [r[1] for r in rows]

        def locate(n: int, k: int) -> str:
            return _index_path(path, n, k, side if layouts[n] else None)
    else:

        def locate(n: int, k: int) -> str:
            return _index_path(path, n, k, side if nested else None)

    check_range(arr, high, locate)
    return arr


def decode_instances(raw: bytes, input_size: int, max_images: int) -> np.ndarray:
    """``{"instances": [...], "scale": "raw"|"unit"}`` → float32 [N, input_size] in [0, 1]."""
    body = _validate(PredictRequest, _load_json(raw, "request body"), "request body")
    high = RAW_MAX if body.scale == "raw" else UNIT_MAX
    return to_unit(_instances_batch(body.instances, raw, high, input_size, max_images), high)


# ---- .npy ---------------------------------------------------------------------------------------


def _npy_error(message: str) -> ApiError:
    return ApiError(400, message, code="malformed_npy", field="body")


def _npy_header(raw: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file, read without touching the
    data: np.load would allocate the header's shape before reading a byte of it."""
    from numpy.lib import format as npy_format

    if not raw:
        raise _npy_error("request body is empty; expected a .npy file")
    if not raw.startswith(_NPY_MAGIC):
        raise _npy_error(
            "request body is not a .npy file (no \\x93NUMPY magic); write it with numpy.save"
        )
    try:
        fp = io.BytesIO(raw)  # shares the bytes, no copy
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
    side = side_of(input_size)
    if not (
        (len(shape) == 2 and shape[1] == input_size)
        or (side and len(shape) == 3 and shape[1:] == (side, side))
    ):
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
    nested = side if len(shape) == 3 else None
    try:
        check_range(arr, high, lambda i, k: _index_path("body", i, k, nested))
    except ApiError as exc:
        if dtype.kind == "f":
            exc.message += " (float arrays are pixels 0-1; send uint8 for 0-255)"
            exc.args = (exc.message,)
        raise
    return to_unit(arr, high)


# ---- V2 infer (Open Inference Protocol) --------------------------------------------------------


@dataclass
class V2Input:
    """A decoded infer request."""

    x: np.ndarray  # float32 [N, input size] in [0, 1]
    id: str | None = None
    #: Output name → send as binary? (all outputs when the request names none)
    outputs: dict[str, bool] = field(default_factory=dict)


def _v2_split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary tensor bytes) of a body; the binary part is empty without the header."""
    if header_length is None:
        return body, b""
    if not header_length.isascii() or not header_length.isdigit():
        raise ApiError(
            400,
            f"{V2_HEADER_LENGTH} must be a non-negative integer",
            field=V2_HEADER_LENGTH,
        )
    json_len = int(header_length)
    if json_len > len(body):
        raise ApiError(
            400,
            f"{V2_HEADER_LENGTH} ({json_len}) exceeds the body ({len(body)} bytes)",
            field=V2_HEADER_LENGTH,
        )
    return body[:json_len], body[json_len:]


def _v2_shape(shape: list[int], input_size: int, where: str) -> int:
    """N of a tensor shape [N, input_size] or [N, side, side]."""
    side = side_of(input_size)
    if (
        not (
            (len(shape) == 2 and shape[1] == input_size)
            or (side and len(shape) == 3 and shape[1] == side and shape[2] == side)
        )
        or shape[0] < 1
    ):
        raise ApiError(
            400,
            f"{where} must be {shapes_text(input_size)} with N >= 1, got {shape!r}",
            field=where,
        )
    return shape[0]


def _flatten_checked(data: Any, where: str, depth: int = 0) -> list:
    """Flatten nested lists of numbers, naming the first non-number (slow path only).

    Depth is capped (a tensor here has at most 3 dimensions), so hostile nesting cannot hit
    Python's recursion limit.
    """
    if not isinstance(data, list):
        raise ApiError(
            400, f"{where} must be a list of numbers, got {_describe(data)}", field=where
        )
    if depth >= 3:
        raise ApiError(400, f"{where} is nested too deeply for a 3-dimensional tensor", field=where)
    out: list = []
    for j, v in enumerate(data):
        if isinstance(v, list):
            out.extend(_flatten_checked(v, f"{where}[{j}]", depth + 1))
        elif _is_number(v):
            out.append(v)
        else:
            where_j = f"{where}[{j}]"
            raise ApiError(400, f"{where_j} must be a number, got {_describe(v)}", field=where_j)
    return out


def _v2_json_data(
    data: Any, datatype: str, high: float, n: int, size: int, where: str
) -> np.ndarray:
    """JSON tensor data (flat row-major or nested) → [n, size] pixels as sent."""
    count = n * size
    arr: np.ndarray | None
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf" or _has_bool(data):
        arr = np.asarray(_flatten_checked(data, where), dtype=np.float64)
    if arr.size != count:
        raise ApiError(
            422,
            f"{where} holds {arr.size} values but the shape needs {count}",
            code="shape_mismatch",
            field=where,
        )
    arr = arr.reshape(n, size)

    def locate(i: int, k: int) -> str:
        return f"{where}[{i * size + k}] (flat index)"

    check_range(arr, high, locate)
    if datatype == "UINT8" and arr.dtype.kind == "f":
        frac = arr != np.floor(arr)
        if frac.any():
            i, k = (int(v) for v in np.argwhere(frac)[0])
            raise ApiError(
                400, f"{locate(i, k)} = {arr[i, k]!r} is not an integer (UINT8)", field=where
            )
    return arr


def _v2_binary_data(
    binary: bytes, size_param: int, dtype: np.dtype, high: float, n: int, size: int, where: str
) -> np.ndarray:
    expected = n * size * dtype.itemsize
    if size_param != expected:
        raise ApiError(
            422,
            f"{where}: binary_data_size is {size_param} bytes but the shape needs {expected}",
            code="shape_mismatch",
            field=f"{where}.parameters.binary_data_size",
        )
    if len(binary) != size_param:
        raise ApiError(
            400,
            f"the body holds {len(binary)} bytes of binary tensor data after the JSON header; "
            f"binary_data_size says {size_param}",
            field=f"{where}.parameters.binary_data_size",
        )
    arr = np.frombuffer(binary, dtype=dtype).reshape(n, size)
    if dtype.kind == "f":  # UINT8 bytes are 0-255 by construction
        check_range(arr, high, lambda i, k: f"{where} element [{i}, {k}]")
    return arr


def decode_v2(body: bytes, header_length: str | None, input_size: int, max_images: int) -> V2Input:
    """A V2 infer request: JSON, or — when the Inference-Header-Content-Length header
    (`header_length`) is present — its JSON header followed by raw little-endian tensor bytes."""
    head, binary = _v2_split(body, header_length)
    what = "inference request header" if header_length is not None else "request body"
    req = _validate(V2InferRequest, _load_json(head, what), "inference request")
    tensor = req.inputs[0]
    where = "inputs[0]"
    dtype, high = V2_DATATYPES[tensor.datatype]
    n = _v2_shape(tensor.shape, input_size, f"{where}.shape")
    if n > max_images:
        raise too_many_images(n, max_images, f"{where}.shape")
    size_param = tensor.parameters.binary_data_size if tensor.parameters else None
    if size_param is not None:
        if tensor.data is not None:
            raise ApiError(
                400, f"{where} has both 'data' and binary_data_size", field=f"{where}.data"
            )
        if header_length is None:
            raise ApiError(
                400, f"binary_data_size needs the {V2_HEADER_LENGTH} header", field=V2_HEADER_LENGTH
            )
        arr = _v2_binary_data(binary, size_param, dtype, high, n, input_size, where)
    else:
        if binary:
            raise ApiError(
                400,
                f"{len(binary)} bytes follow the JSON header but no input has binary_data_size",
                field=V2_HEADER_LENGTH,
            )
        if tensor.data is None:
            raise ApiError(
                400, f"{where} needs 'data' (or binary_data_size)", field=f"{where}.data"
            )
        arr = _v2_json_data(tensor.data, tensor.datatype, high, n, input_size, f"{where}.data")
    binary_all = req.parameters.binary_data_output if req.parameters else False
    if req.outputs is None:
        outputs = dict.fromkeys(V2_OUTPUTS, binary_all)
    else:
        outputs = {
            out.name: binary_all or (out.parameters.binary_data if out.parameters else False)
            for out in req.outputs
        }
    return V2Input(x=to_unit(arr, high), id=req.id, outputs=outputs)


# ---- pictures -----------------------------------------------------------------------------------


def decode_pictures(
    pictures: list[tuple[str, bytes]], input_size: int, max_images: int
) -> np.ndarray:
    """Encoded pictures ((field, bytes) pairs) → float32 [N, input_size] in [0, 1] through the
    MNIST preprocessing recipe (`shared.preprocess`), which makes 28 x 28 images: a model with
    another input size cannot take pictures (422)."""
    from shared.preprocess import FIELD, PreprocessError, picture_to_mnist  # Pillow: only here

    where = pictures[0][0] if pictures else "image"
    if input_size != FIELD * FIELD:
        raise ApiError(
            422,
            f"this model takes {input_size} inputs; pictures are preprocessed to {FIELD}x{FIELD} "
            f"= {FIELD * FIELD} pixels: send the pixels as JSON or .npy instead",
            code="pictures_not_supported",
            field=where,
        )
    if len(pictures) > max_images:
        raise too_many_images(len(pictures), max_images, "image")
    out = np.empty((len(pictures), input_size), dtype=np.float32)
    for i, (where, data) in enumerate(pictures):
        try:
            out[i] = picture_to_mnist(data)
        except PreprocessError as exc:
            message = f"{where}: {exc}"
            text = str(exc)
            if "too large" in text:
                raise ApiError(413, message, code="image_too_large", field=where) from None
            if "no ink" in text:
                raise ApiError(422, message, code="blank_image", field=where) from None
            raise ApiError(400, message, code="invalid_image", field=where) from None
    return out
