"""Request parsing and validation for pixel data, vectorised with NumPy.

The JSON predict path is latency-critical (one image should cost well under a millisecond end to
end), so the happy path is: orjson → one ``np.asarray`` → dtype/shape check → one vectorised range
check. Only when that fails do we walk the Python lists to name the first offending index, so bad
requests get a precise message (``instances[2][5][17] = 300 is out of range [0, 255]``) without
slowing down good ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from inference_service.errors import ApiError, bad_request, unprocessable

N_PIXELS = 784
SIDE = 28
_NUMBER_TYPES = (int, float)


def too_many_images(count: int, limit: int, field_name: str) -> ApiError:
    return ApiError(
        413,
        "too_many_images",
        f"{count} images in one request; MAX_BATCH_IMAGES is {limit}",
        field_name,
    )


def is_json_media_type(mimetype: str) -> bool:
    """Whether a request's media type (lower case, no parameters) is read as JSON; a missing
    Content-Type counts as JSON."""
    return mimetype in ("application/json", "") or mimetype.endswith("+json")


def loads_json(raw: bytes, what: str = "request body") -> Any:
    """Parse JSON with orjson (strict: NaN/Infinity literals and numbers overflowing a double are
    rejected) and turn every failure into a 400 that says where."""
    if not raw:
        raise bad_request(f"{what} is empty; expected a JSON object", code="malformed_json")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}", code="malformed_json") from None


# --------------------------------------------------------------------------------------------
# Pixel arrays


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


def _check_numbers(values: list, path: str) -> None:
    for j, v in enumerate(values):
        if not _is_number(v):
            raise bad_request(f"{path}[{j}] must be a number, got {_describe(v)}", f"{path}[{j}]")


def _instance_array(item: Any, path: str) -> tuple[np.ndarray, bool]:
    """Slow, precise check of one image: (float64 [784], nested?) or a 400 naming the problem."""
    expected = f"expected {N_PIXELS} numbers or {SIDE} rows of {SIDE} numbers"
    if not isinstance(item, list):
        raise bad_request(f"{path} must be a list ({expected}), got {_describe(item)}", path)
    if len(item) == SIDE and all(isinstance(row, list) for row in item):
        for r, row in enumerate(item):
            if len(row) != SIDE:
                raise bad_request(f"{path}[{r}] has {len(row)} values; {expected}", f"{path}[{r}]")
            _check_numbers(row, f"{path}[{r}]")
        return np.asarray(item, dtype=np.float64).reshape(N_PIXELS), True
    if len(item) != N_PIXELS:
        raise bad_request(f"{path} has {len(item)} values; {expected}", path)
    _check_numbers(item, path)
    return np.asarray(item, dtype=np.float64), False


def _has_bool(values: Any) -> bool:
    """True if a (nested) list holds a JSON boolean: NumPy would silently turn it into 0/1."""
    if isinstance(values, list):
        if values and isinstance(values[0], list):
            return any(_has_bool(v) for v in values)
        return bool in map(type, values)
    return isinstance(values, bool)


def _index_path(path: str, n: int, k: int, nested: bool) -> str:
    if nested:
        return f"{path}[{n}][{k // SIDE}][{k % SIDE}]"
    return f"{path}[{n}][{k}]"


def check_range(arr: np.ndarray, high: float, locate: Any) -> None:
    """Raise a 400 naming the first value of `arr` (2-D [N, 784]) that is NaN, infinite or
    outside [0, high]. `locate(n, k)` returns the field path of element (n, k)."""
    # Two reductions on the happy path; NaN propagates through min/max and fails both tests.
    if arr.min() >= 0 and arr.max() <= high:
        return
    ok = (arr >= 0) & (arr <= high)  # NaN compares False, so it is located here too
    n, k = (int(i) for i in np.argwhere(~ok)[0])
    value = arr[n, k]
    where = locate(n, k)
    if not np.isfinite(value):
        raise bad_request(f"{where} is {value!r}: pixel values must be finite numbers", where)
    shown = int(value) if float(value).is_integer() else float(value)
    raise bad_request(f"{where} = {shown} is out of range [0, {high:g}]", where)


def _uint8_pixels(instances: list) -> np.ndarray | None:
    """Images of integers 0-255 (784 each, or 28 rows of 28) as uint8 [N, 784], else None.

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
            if len(item) == N_PIXELS:
                chunks.append(bytes(item))
            elif len(item) == SIDE:
                for row in item:
                    if type(row) is not list or len(row) != SIDE:
                        return None
                chunks.append(b"".join(map(bytes, item)))
            else:
                return None
    except (TypeError, ValueError):
        return None
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(chunks), N_PIXELS)


def instances_to_batch(
    instances: Any, *, raw: bytes | None, high: float, max_images: int, path: str = "instances"
) -> np.ndarray:
    """Validate a JSON list of images; return float32 [N, 784] with pixels as sent (0..high).

    Each image is 784 numbers or 28 rows of 28 numbers; layouts may be mixed within a request.
    `raw` is the request body: a cheap substring test on it tells whether a JSON boolean could be
    hiding among the numbers, so only such requests pay for the per-element check.
    """
    if not isinstance(instances, list):
        raise bad_request(f"{path} must be a list of images, got {_describe(instances)}", path)
    if not instances:
        raise unprocessable(f"{path} is empty: send at least one image", path, code="empty_batch")
    if len(instances) > max_images:
        raise too_many_images(len(instances), max_images, path)

    maybe_bool = raw is None or b"true" in raw or b"false" in raw
    if not maybe_bool:
        # The common case, integers 0-255: bytes() checks them; out of range for "unit" (or
        # anything else) takes the general path, which names the first bad value.
        pixels = _uint8_pixels(instances)
        if pixels is not None and (high >= 255 or pixels.max() <= high):
            return pixels.astype(np.float32)

    arr: np.ndarray | None
    try:
        arr = np.asarray(instances)
    except (ValueError, TypeError, OverflowError):
        arr = None  # ragged or not numeric: fall through to the precise walk
    nested = False
    if arr is not None and arr.dtype.kind in "iuf":
        if arr.ndim == 2 and arr.shape[1] == N_PIXELS:
            pass
        elif arr.ndim == 3 and arr.shape[1:] == (SIDE, SIDE):
            arr = arr.reshape(len(instances), N_PIXELS)
            nested = True
        else:
            arr = None
        if arr is not None and maybe_bool and _has_bool(instances):
            arr = None
    else:
        arr = None

    if arr is None:
        rows = [_instance_array(item, f"{path}[{n}]") for n, item in enumerate(instances)]
        arr = np.stack([r[0] for r in rows])
        layouts = [r[1] for r in rows]

        def locate(n: int, k: int) -> str:
            return _index_path(path, n, k, layouts[n])
    else:

        def locate(n: int, k: int) -> str:
            return _index_path(path, n, k, nested)

    check_range(arr, high, locate)
    return arr.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# V1 predict body


def parse_v1_json(raw: bytes, max_images: int) -> np.ndarray:
    """``{"instances": [...], "scale": "raw"|"unit"}`` → float32 [N, 784] in [0, 1]."""
    payload = loads_json(raw)
    if not isinstance(payload, dict):
        raise bad_request(
            f"request body must be a JSON object with 'instances', got {_describe(payload)}"
        )
    if len(payload) > 2 or not payload.keys() <= {"instances", "scale"}:
        unknown = sorted(set(payload) - {"instances", "scale"})
        raise bad_request(
            f"unknown field {unknown[0]!r}; allowed: 'instances', 'scale'", unknown[0]
        )
    if "instances" not in payload:
        raise bad_request("missing required field 'instances'", "instances")
    scale = payload.get("scale", "raw")
    if scale == "raw":
        high = 255.0
    elif scale == "unit":
        high = 1.0
    else:
        raise bad_request(
            f'\'scale\' must be "raw" (0-255) or "unit" (0-1), got {scale!r}', "scale"
        )
    arr = instances_to_batch(payload["instances"], raw=raw, high=high, max_images=max_images)
    if high != 1.0:
        arr = arr * np.float32(1.0 / 255.0)
    return arr


# --------------------------------------------------------------------------------------------
# KServe V2 / Open Inference Protocol infer body

V2_INPUT_NAME = "input"
V2_OUTPUTS = ("probabilities", "predictions")
#: datatype → (NumPy little-endian dtype of the binary form, largest pixel value)
V2_INPUT_DATATYPES = {"FP32": (np.dtype("<f4"), 1.0), "UINT8": (np.dtype("u1"), 255.0)}


@dataclass
class V2Request:
    """A validated infer request."""

    x: np.ndarray  # float32 [N, 784] in [0, 1]
    id: str | None = None
    #: Output name → send as binary? (all outputs when the request names none)
    outputs: dict[str, bool] = field(default_factory=dict)


def _json_int(value: Any) -> int | None:
    """An integer as JSON Schema sees it (1 and 1.0 both count; booleans do not), else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return None


def _v2_shape(shape: Any, where: str) -> tuple[int, ...]:
    if isinstance(shape, list):
        dims = [_json_int(d) for d in shape]
        shape = shape if None in dims else dims
    if (
        not isinstance(shape, list)
        or not all(type(d) is int for d in shape)
        or not (
            (len(shape) == 2 and shape[1] == N_PIXELS)
            or (len(shape) == 3 and shape[1] == SIDE and shape[2] == SIDE)
        )
        or shape[0] < 1
    ):
        raise bad_request(
            f"{where} must be [N, {N_PIXELS}] or [N, {SIDE}, {SIDE}] with N >= 1, got {shape!r}",
            where,
        )
    return tuple(shape)


def _bool_param(params: Any, key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f"{where}.{key} must be a boolean", f"{where}.{key}")
    return value


def _params(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise bad_request(f"{where}.parameters must be an object", f"{where}.parameters")
    return params


def parse_v2_infer(body: bytes, header_length: str | None, max_images: int) -> V2Request:
    """Parse a V2 infer request: plain JSON, or the binary tensor extension when the
    ``Inference-Header-Content-Length`` header is present (JSON header, then raw tensor bytes)."""
    binary = b""
    if header_length is not None:
        if not header_length.isascii() or not header_length.isdigit():
            raise bad_request(
                "Inference-Header-Content-Length must be a non-negative integer",
                "Inference-Header-Content-Length",
            )
        json_len = int(header_length)
        if json_len > len(body):
            raise bad_request(
                f"Inference-Header-Content-Length ({json_len}) exceeds the body ({len(body)} bytes)",
                "Inference-Header-Content-Length",
            )
        body, binary = body[:json_len], body[json_len:]

    payload = loads_json(body, "inference request header" if header_length else "request body")
    if not isinstance(payload, dict):
        raise bad_request(f"request must be a JSON object, got {_describe(payload)}")
    unknown = sorted(set(payload) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r}", unknown[0])
    req_id = payload.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise bad_request("'id' must be a string", "id")
    binary_all = _bool_param(_params(payload, "request"), "binary_data_output", "parameters")

    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise bad_request(
            f"'inputs' must be a list holding exactly one tensor named {V2_INPUT_NAME!r}", "inputs"
        )
    tensor = inputs[0]
    where = "inputs[0]"
    if not isinstance(tensor, dict):
        raise bad_request(f"{where} must be an object", where)
    extra = sorted(set(tensor) - {"name", "shape", "datatype", "data", "parameters"})
    if extra:
        raise bad_request(f"unknown field {where}.{extra[0]}", f"{where}.{extra[0]}")
    if tensor.get("name") != V2_INPUT_NAME:
        raise bad_request(
            f"{where}.name must be {V2_INPUT_NAME!r} (see the model metadata), "
            f"got {tensor.get('name')!r}",
            f"{where}.name",
        )
    datatype = tensor.get("datatype")
    if datatype not in V2_INPUT_DATATYPES:
        raise unprocessable(
            f"{where}.datatype {datatype!r} is not supported: use FP32 (pixels 0-1) or UINT8 "
            "(pixels 0-255)",
            f"{where}.datatype",
            code="unsupported_datatype",
        )
    dtype, high = V2_INPUT_DATATYPES[datatype]
    shape = _v2_shape(tensor.get("shape"), f"{where}.shape")
    n = shape[0]
    if n > max_images:
        raise too_many_images(n, max_images, f"{where}.shape")
    count = n * N_PIXELS
    tparams = _params(tensor, where)

    if "binary_data_size" in tparams:
        size = _json_int(tparams["binary_data_size"])
        if size is None or size < 0:
            raise bad_request(
                f"{where}.parameters.binary_data_size must be a non-negative integer",
                f"{where}.parameters.binary_data_size",
            )
        if "data" in tensor:
            raise bad_request(f"{where} has both 'data' and binary_data_size", f"{where}.data")
        if header_length is None:
            raise bad_request(
                "binary_data_size needs the Inference-Header-Content-Length header",
                "Inference-Header-Content-Length",
            )
        expected = count * dtype.itemsize
        if size != expected:
            raise unprocessable(
                f"{where}: binary_data_size is {size} bytes but shape {list(shape)} of {datatype} "
                f"needs {expected}",
                f"{where}.parameters.binary_data_size",
                code="shape_mismatch",
            )
        if len(binary) != size:
            raise bad_request(
                f"the body holds {len(binary)} bytes of binary tensor data after the JSON "
                f"header; binary_data_size says {size}",
                f"{where}.parameters.binary_data_size",
            )
        arr = np.frombuffer(binary, dtype=dtype).reshape(n, N_PIXELS)
        if datatype == "FP32":

            def locate(i: int, k: int) -> str:
                return f"{where} element [{i}, {k}]"

            check_range(arr, high, locate)
        x = arr.astype(np.float32)
    else:
        if binary:
            raise bad_request(
                f"{len(binary)} bytes follow the JSON header but no input has binary_data_size",
                "Inference-Header-Content-Length",
            )
        if "data" not in tensor:
            raise bad_request(f"{where} needs 'data' (or binary_data_size)", f"{where}.data")
        x = _v2_json_data(tensor["data"], datatype, high, shape, f"{where}.data")
    if high != 1.0:
        x = x * np.float32(1.0 / 255.0)
    return V2Request(x=x, id=req_id, outputs=_v2_outputs(payload.get("outputs"), binary_all))


def _v2_json_data(
    data: Any, datatype: str, high: float, shape: tuple[int, ...], where: str
) -> np.ndarray:
    """JSON tensor data (flat row-major or nested) → float32 [N, 784] (not yet scaled)."""
    n = shape[0]
    count = n * N_PIXELS
    arr: np.ndarray | None
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iuf" or _has_bool(data):
        flat = _flatten_checked(data, where)
        arr = np.asarray(flat, dtype=np.float64)
    if arr.size != count:
        raise unprocessable(
            f"{where} holds {arr.size} values but shape {list(shape)} needs {count}",
            where,
            code="shape_mismatch",
        )
    arr = arr.reshape(n, N_PIXELS)

    def locate(i: int, k: int) -> str:
        return f"{where}[{i * N_PIXELS + k}] (flat index)"

    check_range(arr, high, locate)
    if datatype == "UINT8" and arr.dtype.kind == "f":
        frac = arr != np.floor(arr)
        if frac.any():
            i, k = (int(v) for v in np.argwhere(frac)[0])
            raise bad_request(f"{locate(i, k)} = {arr[i, k]!r} is not an integer (UINT8)", where)
    return arr.astype(np.float32, copy=False)


def _flatten_checked(data: Any, where: str, depth: int = 0) -> list:
    """Flatten nested lists of numbers, naming the first non-number (slow path only).

    Depth is capped (a tensor here has at most 3 dimensions), so hostile nesting cannot hit
    Python's recursion limit.
    """
    if not isinstance(data, list):
        raise bad_request(f"{where} must be a list of numbers, got {_describe(data)}", where)
    if depth >= 3:
        raise bad_request(f"{where} is nested too deeply for a [N, 28, 28] tensor", where)
    out: list = []
    for j, v in enumerate(data):
        if isinstance(v, list):
            out.extend(_flatten_checked(v, f"{where}[{j}]", depth + 1))
        elif _is_number(v):
            out.append(v)
        else:
            raise bad_request(f"{where}[{j}] must be a number, got {_describe(v)}", f"{where}[{j}]")
    return out


def _v2_outputs(outputs: Any, binary_all: bool) -> dict[str, bool]:
    if outputs is None:
        return dict.fromkeys(V2_OUTPUTS, binary_all)
    if not isinstance(outputs, list) or not outputs:
        raise bad_request("'outputs' must be a non-empty list of {\"name\": ...}", "outputs")
    chosen: dict[str, bool] = {}
    for i, out in enumerate(outputs):
        where = f"outputs[{i}]"
        if not isinstance(out, dict) or out.get("name") not in V2_OUTPUTS:
            raise bad_request(f"{where}.name must be one of {list(V2_OUTPUTS)}", f"{where}.name")
        chosen[out["name"]] = (
            _bool_param(_params(out, where), "binary_data", f"{where}.parameters") or binary_all
        )
    return chosen


# --------------------------------------------------------------------------------------------
# V1 predict body as a .npy file (Content-Type: application/x-npy)

NPY_MEDIA_TYPE = "application/x-npy"
_NPY_MAGIC = b"\x93NUMPY"


def _npy_header(raw: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file, read without touching the
    data: np.load would allocate the header's shape before reading a byte of it."""
    from numpy.lib import format as npy_format

    if not raw:
        raise bad_request(
            "request body is empty; expected a .npy file", "body", code="malformed_npy"
        )
    if not raw.startswith(_NPY_MAGIC):
        raise bad_request(
            "request body is not a .npy file (no \\x93NUMPY magic); write it with numpy.save",
            "body",
            code="malformed_npy",
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
        raise bad_request(
            f"request body is not a readable .npy file: {exc}", "body", code="malformed_npy"
        ) from None
    return tuple(shape), bool(fortran), np.dtype(dtype), fp.tell()


def parse_npy(raw: bytes, max_images: int) -> np.ndarray:
    """A ``.npy`` body → float32 [N, 784] in [0, 1].

    Shape [N, 784] or [N, 28, 28]; an integer dtype means pixels 0-255 (uint8 is the natural
    one), a float dtype pixels 0-1, like the V2 protocol's UINT8 / FP32. Pickled (object) arrays
    are refused. The data is used in place (no copy) when it is already float32.
    """
    shape, fortran, dtype, offset = _npy_header(raw)
    if dtype.hasobject or dtype.kind not in "uif" or dtype.fields is not None:
        raise unprocessable(
            f"body.dtype {dtype.str!r} is not supported: send uint8 (pixels 0-255) or float32 "
            "(pixels 0-1)",
            "body.dtype",
            code="unsupported_dtype",
        )
    if not (
        (len(shape) == 2 and shape[1] == N_PIXELS)
        or (len(shape) == 3 and shape[1:] == (SIDE, SIDE))
    ):
        raise bad_request(
            f"body.shape must be [N, {N_PIXELS}] or [N, {SIDE}, {SIDE}], got {list(shape)}",
            "body.shape",
        )
    n = shape[0]
    if n == 0:
        raise unprocessable(
            "body holds no image: send at least one", "body.shape", code="empty_batch"
        )
    if n > max_images:
        raise too_many_images(n, max_images, "body.shape")
    count = n * N_PIXELS
    size = len(raw) - offset
    if size != count * dtype.itemsize:
        raise bad_request(
            f"body holds {size} bytes of array data; shape {list(shape)} of {dtype.str} needs "
            f"{count * dtype.itemsize}",
            "body",
            code="malformed_npy",
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C").reshape(n, N_PIXELS)
    high = 1.0 if dtype.kind == "f" else 255.0
    nested = len(shape) == 3
    try:
        check_range(arr, high, lambda i, k: _index_path("body", i, k, nested))
    except ApiError as exc:
        if dtype.kind == "f":
            exc.message += " (float arrays are pixels 0-1; send uint8 for 0-255)"
            exc.args = (exc.message,)
        raise
    if dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    return np.multiply(arr, np.float32(1.0 / 255.0), dtype=np.float32)
