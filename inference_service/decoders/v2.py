"""An Open Inference Protocol (KServe V2) infer request: JSON, or the binary tensor extension."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference_service.decoders.pixels import (
    RAW_MAX,
    UNIT_MAX,
    check_range,
    describe,
    has_bool,
    is_batch_shape,
    is_number,
    load_json,
    shapes_text,
    to_unit,
    too_many_images,
    uint8_bytes,
    validate,
)
from inference_service.schemas import V2InferRequest
from shared.web.errors import ApiError

V2_HEADER_LENGTH = "Inference-Header-Content-Length"
V2_OUTPUTS = ("probabilities", "predictions")
#: V2 datatype → (NumPy little-endian dtype of the binary form, largest pixel value).
V2_DATATYPES = {"FP32": (np.dtype("<f4"), UNIT_MAX), "UINT8": (np.dtype("u1"), RAW_MAX)}


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
    """N of a tensor shape: N images of one of `image_shapes`."""
    if not is_batch_shape(shape, input_size) or shape[0] < 1:
        raise ApiError(
            400,
            f"{where} must be {shapes_text(input_size)} with N >= 1, got {shape!r}",
            field=where,
        )
    return shape[0]


def _flatten_checked(data: Any, where: str, depth: int = 0) -> list:
    """Flatten nested lists of numbers, naming the first non-number (slow path only).

    Depth is capped (a tensor here has at most 4 dimensions), so hostile nesting cannot hit
    Python's recursion limit.
    """
    if not isinstance(data, list):
        raise ApiError(400, f"{where} must be a list of numbers, got {describe(data)}", field=where)
    if depth >= 4:
        raise ApiError(400, f"{where} is nested too deeply for a 4-dimensional tensor", field=where)
    out: list = []
    for j, v in enumerate(data):
        if isinstance(v, list):
            out.extend(_flatten_checked(v, f"{where}[{j}]", depth + 1))
        elif is_number(v):
            out.append(v)
        else:
            where_j = f"{where}[{j}]"
            raise ApiError(400, f"{where_j} must be a number, got {describe(v)}", field=where_j)
    return out


def _v2_json_data(
    data: Any, datatype: str, high: float, n: int, size: int, where: str, maybe_bool: bool
) -> np.ndarray:
    """JSON tensor data (flat row-major or nested) → [n, size] pixels as sent. `maybe_bool`:
    the body holds ``true`` or ``false`` somewhere, so booleans must be looked for."""
    count = n * size
    if datatype == "UINT8" and not maybe_bool:
        # The common case, integers 0-255: `uint8_bytes` checks them at C speed (as /v1 does).
        raw = uint8_bytes(data)
        if raw is not None and len(raw) == count:
            return np.frombuffer(raw, dtype=np.uint8).reshape(n, size)
    arr: np.ndarray | None
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf" or (maybe_bool and has_bool(data)):
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
    req = validate(V2InferRequest, load_json(head, what), "inference request")
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
                422, f"{where} has both 'data' and binary_data_size", field=f"{where}.data"
            )
        if header_length is None:
            # Well-formed JSON that announces bytes it does not carry: unusable, not malformed.
            raise ApiError(
                422, f"binary_data_size needs the {V2_HEADER_LENGTH} header", field=V2_HEADER_LENGTH
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
        maybe_bool = b"true" in head or b"false" in head
        arr = _v2_json_data(
            tensor.data, tensor.datatype, high, n, input_size, f"{where}.data", maybe_bool
        )
    binary_all = req.parameters.binary_data_output if req.parameters else False
    if req.outputs is None:
        outputs = dict.fromkeys(V2_OUTPUTS, binary_all)
    else:
        outputs = {
            out.name: binary_all or (out.parameters.binary_data if out.parameters else False)
            for out in req.outputs
        }
    return V2Input(x=to_unit(arr, high), id=req.id, outputs=outputs)
