"""V1 JSON: ``{"instances": [...], "scale": "raw"|"unit"}``."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from inference_service.decoders.pixels import (
    RAW_MAX,
    UNIT_MAX,
    check_range,
    describe,
    empty_batch,
    has_bool,
    index_path,
    is_batch_shape,
    is_number,
    load_json,
    side_of,
    to_unit,
    too_many_images,
    uint8_bytes,
    validate,
)
from inference_service.schemas import PredictRequest
from shared.web.errors import ApiError

R = TypeVar("R", bound=PredictRequest)


def _check_numbers(values: list, path: str) -> None:
    for j, v in enumerate(values):
        if not is_number(v):
            raise ApiError(
                400, f"{path}[{j}] must be a number, got {describe(v)}", field=f"{path}[{j}]"
            )


def _instance_array(item: Any, path: str, size: int, side: int | None) -> tuple[np.ndarray, bool]:
    """Slow, precise check of one image: (float64 [size], nested?) or a 400 naming the problem."""
    expected = f"expected {size} numbers" + (f" or {side} rows of {side} numbers" if side else "")
    if not isinstance(item, list):
        raise ApiError(400, f"{path} must be a list ({expected}), got {describe(item)}", field=path)
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


def _uint8_pixels(instances: list, size: int, side: int | None) -> np.ndarray | None:
    """Images of integers 0-255 (flat, or rows) as uint8 [N, size], else None.

    Each image must be `size` numbers or `side` rows of `side`; its values go through
    `uint8_bytes` (C speed, refuses anything but integers 0-255), so they need no further range
    check; None sends the request down the general path, which names the first bad value. The
    caller only comes here when the body holds no ``true``/``false``.
    """
    chunks = []
    for item in instances:
        if type(item) is not list:
            return None
        rows = side and len(item) == side and all(type(r) is list for r in item)
        flat = len(item) == size and not (item and type(item[0]) is list)
        if not (flat or (rows and all(len(r) == side for r in item))):
            return None
        chunk = uint8_bytes(item)
        if chunk is None or len(chunk) != size:
            return None
        chunks.append(chunk)
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
    nested = arr is not None and arr.ndim == 3
    if (
        arr is not None
        and arr.dtype.kind in "iuf"
        and arr.ndim <= 3  # an instance is `size` values or `side` rows: no channel axis
        and is_batch_shape(arr.shape, size)
        and not (maybe_bool and has_bool(instances))
    ):
        arr = arr.reshape(len(instances), size)
        layouts = [nested] * len(instances)
    else:
        rows = [
            _instance_array(item, f"{path}[{n}]", size, side) for n, item in enumerate(instances)
        ]
        arr = np.stack([r[0] for r in rows])
        layouts = [r[1] for r in rows]  # each image's: rows of `side`, or flat
    shapes = [(side, side) if nested else (size,) for nested in layouts]
    check_range(arr, high, lambda n, k: index_path(path, n, k, shapes[n]))
    return arr


def read_instances(
    raw: bytes, input_size: int, max_images: int, schema: type[R]
) -> tuple[R, np.ndarray]:
    """A V1 JSON body validated by `schema` (`PredictRequest` or a route's extension of it) →
    (the body, float32 [N, input_size] pixels in [0, 1])."""
    body = validate(schema, load_json(raw, "request body"), "request body")
    high = RAW_MAX if body.scale == "raw" else UNIT_MAX
    return body, to_unit(_instances_batch(body.instances, raw, high, input_size, max_images), high)


def decode_instances(raw: bytes, input_size: int, max_images: int) -> np.ndarray:
    """``{"instances": [...], "scale": "raw"|"unit"}`` → float32 [N, input_size] in [0, 1]."""
    return read_instances(raw, input_size, max_images, PredictRequest)[1]
