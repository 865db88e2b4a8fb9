"""What every decoder shares: the pixel range check that names the first bad value, the one
0-255 → [0, 1] scaling, the accepted image shapes of a model, the JSON reader and the batch
errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from shared.web.errors import ApiError
from shared.web.validation import validation_error

#: Largest pixel value of each JSON scale / V2 datatype / .npy dtype kind.
RAW_MAX = 255.0
UNIT_MAX = 1.0

_NUMBER_TYPES = (int, float)

M = TypeVar("M", bound=BaseModel)
#: Where a bad value sits: (image n, pixel k) → a field path.
Locate = Callable[[int, int], str]


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


def image_shapes(input_size: int) -> list[list[int]]:
    """The shapes one image may have in a batch tensor: [input size] and, for a square input,
    [side, side] and [1, side, side] (one channel, as convolutional networks see images)."""
    side = side_of(input_size)
    return [[input_size]] + ([[side, side], [1, side, side]] if side else [])


def is_batch_shape(shape: list[int] | tuple[int, ...], input_size: int) -> bool:
    """Whether `shape` is N images of one of `image_shapes`."""
    return list(shape[1:]) in image_shapes(input_size)


def shapes_text(input_size: int) -> str:
    """`[N, 784], [N, 28, 28] or [N, 1, 28, 28]`."""
    *most, last = (f"[N, {', '.join(map(str, shape))}]" for shape in image_shapes(input_size))
    return f"{', '.join(most)} or {last}" if most else last


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


def load_json(raw: bytes, what: str) -> Any:
    """orjson (strict: NaN/Infinity literals and numbers overflowing a double are refused)."""
    if not raw:
        raise ApiError(400, f"{what} is empty; expected a JSON object", code="malformed_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc}", code="malformed_json") from None


def validate(model: type[M], payload: Any, what: str) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, what, status=400) from None


#: What an error message calls a parsed JSON value that is not what it should be.
_JSON_KINDS = {type(None): "null", bool: "a boolean", str: "a string", dict: "an object"}


def describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return _JSON_KINDS.get(type(value), type(value).__name__)


def is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES  # bool is a subclass of int: excluded on purpose


def has_bool(values: Any) -> bool:
    """True if a (nested) list holds a JSON boolean: NumPy would silently turn it into 0/1."""
    if isinstance(values, list):
        if values and isinstance(values[0], list):
            return any(has_bool(v) for v in values)
        return bool in map(type, values)
    return isinstance(values, bool)


def uint8_bytes(values: Any, depth: int = 0) -> bytes | None:
    """The integers 0-255 of a list, flat or nested up to 4 levels, as bytes in row-major order,
    at C speed: ``bytes(list)`` raises for anything but such integers (a float, a string, null,
    256, -1), and then this is None and the caller's checked path names the bad value. JSON
    booleans would pass as 0/1: call it only for a body without ``true``/``false``."""
    if type(values) is not list or depth > 3:
        return None
    try:
        if values and type(values[0]) is list:
            parts = [uint8_bytes(v, depth + 1) for v in values]
            return None if None in parts else b"".join(parts)  # type: ignore[arg-type]
        return bytes(values)
    except (TypeError, ValueError):
        return None


def index_path(path: str, n: int, k: int, shape: tuple[int, ...]) -> str:
    """Where value k of image n is, in an image of `shape` as sent: ``body[3][0][5][17]``."""
    return f"{path}[{n}]" + "".join(f"[{i}]" for i in np.unravel_index(k, shape))
