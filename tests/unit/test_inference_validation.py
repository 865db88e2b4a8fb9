"""The decoders of pixel payloads (V1 JSON, V2 JSON and binary) for a 784-input model, and the
settings, without an app."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from inference_service.decoders import decode_instances, decode_v2
from inference_service.settings import Settings
from shared.web.errors import ApiError
from shared.web.settings import SettingsError
from tests.service_support import v2_binary

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, size=784)


def parse_v1_json(raw: bytes, max_images: int) -> np.ndarray:
    return decode_instances(raw, 784, max_images)


def parse_v2_infer(body: bytes, header: str | None, max_images: int):
    return decode_v2(body, header, 784, max_images)


def v1(payload: object, max_images: int = 1024) -> np.ndarray:
    return parse_v1_json(orjson.dumps(payload), max_images)


def v1_error(payload: object | bytes, max_images: int = 1024) -> ApiError:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(ApiError) as info:
        parse_v1_json(raw, max_images)
    return info.value


# ---- V1: accepted layouts ---------------------------------------------------------------------


def test_flat_raw_pixels_are_scaled_to_unit() -> None:
    x = v1({"instances": [IMG.tolist()]})
    assert x.dtype == np.float32 and x.shape == (1, 784)
    np.testing.assert_allclose(x[0], IMG / 255.0, rtol=1e-6)


def test_nested_28x28_equals_flat() -> None:
    flat = v1({"instances": [IMG.tolist()]})
    nested = v1({"instances": [IMG.reshape(28, 28).tolist()]})
    np.testing.assert_array_equal(flat, nested)


def test_mixed_layouts_in_one_batch() -> None:
    x = v1({"instances": [IMG.tolist(), IMG.reshape(28, 28).tolist()]})
    assert x.shape == (2, 784)
    np.testing.assert_array_equal(x[0], x[1])


def test_unit_scale_keeps_values() -> None:
    img = (IMG / 255.0).tolist()
    x = v1({"instances": [img], "scale": "unit"})
    np.testing.assert_allclose(x[0], np.asarray(img, dtype=np.float32))


def test_float_pixels_in_raw_scale_are_allowed() -> None:
    x = v1({"instances": [[127.5] * 784]})
    assert x[0, 0] == pytest.approx(0.5)


def test_boundaries_0_and_255_ok() -> None:
    x = v1({"instances": [[0] * 392 + [255] * 392]})
    assert x.min() == 0.0 and x.max() == 1.0


def test_keys_named_true_or_false_elsewhere_do_not_break_fast_path() -> None:
    # b"true" appears in the body (scale value is not it, but the check is only a hint)
    raw = b'{"instances": [' + orjson.dumps(IMG.tolist()) + b'], "scale": "raw"}'
    assert parse_v1_json(raw + b" ", 10).shape == (1, 784)


# ---- V1: errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"instances": [[NaN]]}', "malformed_json"),
        (b'{"instances": [[Infinity]]}', "malformed_json"),
        (b'{"instances": [[1e999]]}', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
    ],
)
def test_malformed_json_is_400(raw: bytes, code: str) -> None:
    err = v1_error(raw)
    assert (err.status, err.code) == (400, code)


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ([1, 2], "(body)", "valid dictionary"),
        ({}, "instances", "Field required"),
        ({"instances": [IMG.tolist()], "extra": 1}, "extra", "unknown field"),
        ({"instances": "x"}, "instances", "valid list"),
        ({"instances": [IMG.tolist()], "scale": "percent"}, "scale", "scale"),
        ({"instances": [IMG.tolist()], "scale": 1}, "scale", "scale"),
        ({"instances": [[1, 2, 3]]}, "instances[0]", "3 values"),
        ({"instances": [IMG.tolist(), [0] * 785]}, "instances[1]", "785 values"),
        ({"instances": [5]}, "instances[0]", "must be a list"),
        ({"instances": [None]}, "instances[0]", "null"),
        ({"instances": [[[0] * 28] * 27 + [[0] * 27]]}, "instances[0][27]", "27 values"),
        ({"instances": [[0] * 783 + ["7"]]}, "instances[0][783]", "string"),
        ({"instances": [[0] * 100 + [None] + [0] * 683]}, "instances[0][100]", "null"),
        ({"instances": [[0] * 5 + [True] + [0] * 778]}, "instances[0][5]", "boolean"),
        ({"instances": [[0] * 5 + [{}] + [0] * 778]}, "instances[0][5]", "object"),
        ({"instances": [[[0] * 28] * 27 + [[0] * 27 + [[0]]]]}, "instances[0][27][27]", "number"),
        ({"instances": [[0] * 783 + [256]]}, "instances[0][783]", "out of range [0, 255]"),
        ({"instances": [[0] * 10 + [-1] + [0] * 773]}, "instances[0][10]", "out of range"),
        ({"instances": [[0] * 10 + [-0.5] + [0] * 773]}, "instances[0][10]", "-0.5"),
        ({"instances": [[0] * 783 + [1e300]]}, "instances[0][783]", "out of range"),
        (
            {"instances": [IMG.tolist(), [[0] * 28] * 3 + [[0] * 27 + [300]] + [[0] * 28] * 24]},
            "instances[1][3][27]",
            "out of range",
        ),
        ({"instances": [[0.5] * 783 + [2]], "scale": "unit"}, "instances[0][783]", "[0, 1]"),
    ],
)
def test_bad_payloads_are_400_naming_the_field(payload, field, fragment) -> None:
    err = v1_error(payload)
    assert err.status == 400
    assert err.field == field
    assert fragment in err.message


def test_bool_among_floats_is_rejected() -> None:
    err = v1_error({"instances": [[0.5] * 783 + [False]]})
    assert err.status == 400 and err.field == "instances[0][783]"


def test_empty_instances_is_422() -> None:
    err = v1_error({"instances": []})
    assert (err.status, err.code, err.field) == (422, "empty_batch", "instances")


def test_too_many_images_is_413() -> None:
    err = v1_error({"instances": [[0] * 784] * 3}, max_images=2)
    assert (err.status, err.code) == (413, "too_many_images")


def test_deeply_nested_garbage_is_400_not_recursion() -> None:
    deep: list = [0]
    for _ in range(200):
        deep = [deep]
    err = v1_error({"instances": deep})
    assert err.status == 400


# ---- V2 ---------------------------------------------------------------------------------------


def v2_json(data, shape, datatype="FP32", **extra) -> bytes:
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}
    body.update(extra)
    return orjson.dumps(body)


def v2_error(body: bytes, header: str | None = None, max_images: int = 1024) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_v2_infer(body, header, max_images)
    return info.value


def test_v2_fp32_flat_and_nested() -> None:
    img = (IMG / 255.0).astype(np.float32)
    flat = parse_v2_infer(v2_json(img.tolist(), [1, 784]), None, 10)
    nested = parse_v2_infer(v2_json(img.reshape(1, 28, 28).tolist(), [1, 28, 28]), None, 10)
    np.testing.assert_array_equal(flat.x, nested.x)
    np.testing.assert_allclose(flat.x[0], img)
    assert flat.outputs == {"probabilities": False, "predictions": False}


def test_v2_uint8_json_scaled() -> None:
    req = parse_v2_infer(v2_json(IMG.tolist(), [1, 784], "UINT8", id="abc"), None, 10)
    np.testing.assert_allclose(req.x[0], IMG / 255.0, rtol=1e-6)
    assert req.id == "abc"


def test_v2_binary_fp32_and_uint8() -> None:
    batch = RNG.random((3, 784), dtype=np.float32)
    outputs = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    req = parse_v2_infer(*v2_binary(batch.astype("<f4"), [3, 28, 28], outputs=outputs), 10)
    np.testing.assert_array_equal(req.x, batch)
    assert req.outputs == {"probabilities": True}

    u8 = IMG.astype(np.uint8)
    binary_out = {"binary_data_output": True}
    req = parse_v2_infer(*v2_binary(u8, [1, 784], "UINT8", parameters=binary_out), 10)
    np.testing.assert_allclose(req.x[0], IMG / 255.0, rtol=1e-6)
    assert req.outputs == {"probabilities": True, "predictions": True}


def test_v2_binary_nan_and_range_are_400() -> None:
    arr = np.zeros((1, 784), dtype="<f4")
    arr[0, 9] = np.nan
    err = v2_error(*v2_binary(arr, [1, 784]))
    assert err.status == 400 and "finite" in err.message and "[0, 9]" in err.message
    arr[0, 9] = 1.5
    err = v2_error(*v2_binary(arr, [1, 784]))
    assert err.status == 400 and "out of range" in err.message
    arr[0, 9] = np.inf
    assert v2_error(*v2_binary(arr, [1, 784])).status == 400


def test_v2_binary_size_mismatches() -> None:
    arr = np.zeros((2, 784), dtype="<f4")
    assert v2_error(*v2_binary(arr, [1, 784])).status == 422  # size says 2 images, shape 1
    body, header = v2_binary(arr, [2, 784])
    assert v2_error(body[:-4], header).status == 400  # truncated body
    assert v2_error(body + b"xx", header).status == 400  # trailing bytes
    assert v2_error(body, "abc").field == "Inference-Header-Content-Length"
    assert v2_error(body, str(len(body) + 1)).status == 400
    # binary_data_size without the header
    head_only = body[: int(header)]
    assert v2_error(head_only, None).field == "Inference-Header-Content-Length"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"[]", 400, None),
        (b"{}", 400, "inputs"),
        (orjson.dumps({"inputs": [], "x": 1}), 400, "x"),
        (orjson.dumps({"inputs": [{}, {}]}), 400, "inputs"),
        (orjson.dumps({"inputs": [1]}), 400, "inputs[0]"),
        (orjson.dumps({"id": 5, "inputs": []}), 400, "id"),
        (v2_json([0] * 784, [1, 784]).replace(b'"input"', b'"pixels"'), 400, "inputs[0].name"),
        (v2_json([0] * 784, [1, 784], "FP64"), 400, "inputs[0].datatype"),
        (v2_json([0] * 784, [1, 784], {"FP32": 1}), 400, "inputs[0].datatype"),
        (v2_json([0] * 784, [1, 784], ["FP32"]), 400, "inputs[0].datatype"),
        (v2_json([0] * 784, [784]), 400, "inputs[0].shape"),
        (v2_json([0] * 784, [1, 783]), 400, "inputs[0].shape"),
        (v2_json([0] * 784, [0, 784]), 400, "inputs[0].shape"),
        (v2_json([0] * 784, [1, "784"]), 400, "inputs[0].shape[1]"),
        (v2_json([0] * 783, [1, 784]), 422, "inputs[0].data"),
        (v2_json([0] * 784, [2, 784]), 422, "inputs[0].data"),
        (v2_json([0] * 783 + [2], [1, 784]), 400, "inputs[0].data[783] (flat index)"),
        (v2_json([0] * 783 + ["a"], [1, 784]), 400, "inputs[0].data[783]"),
        (v2_json([0] * 783 + [True], [1, 784]), 400, "inputs[0].data[783]"),
        (v2_json([0] * 783 + [True], [1, 784], "UINT8"), 400, "inputs[0].data[783]"),
        (
            v2_json([[0] * 28] * 27 + [[0] * 27 + [256]], [1, 28, 28], "UINT8"),
            400,
            "inputs[0].data[783] (flat index)",
        ),  # fmt: skip
        (v2_json([0] * 783 + [0.5], [1, 784], "UINT8"), 400, "inputs[0].data"),
        (v2_json("abc", [1, 784]), 400, "inputs[0].data"),
        (
            orjson.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32"}]}),
            400,
            "inputs[0].data",
        ),
        (v2_json([0] * 784, [1, 784], outputs=[{"name": "logits"}]), 400, "outputs[0].name"),
        (v2_json([0] * 784, [1, 784], outputs=[]), 400, "outputs"),
        (v2_json([0] * 784, [1, 784], parameters={"binary_data_output": "yes"}), 400, None),
    ],
)
def test_v2_errors(body: bytes, status: int, field: str | None) -> None:
    err = v2_error(body)
    assert err.status == status, err.message
    if field is not None:  # the first bad field, or one of them (pydantic names every one)
        assert field in [err.field, *(f["field"] for f in err.details.get("fields", []))]


def test_v2_too_many_images() -> None:
    err = v2_error(v2_json([0] * 784 * 3, [3, 784]), max_images=2)
    assert (err.status, err.code) == (413, "too_many_images")


# ---- settings -----------------------------------------------------------------------------------


def test_settings_from_env_and_overrides(tmp_path, monkeypatch) -> None:
    env = {
        "MODEL_REGISTRY_DIR": str(tmp_path),
        "REGISTRY_POLL_SECONDS": "0.25",
        "MODEL_CACHE_SIZE": "3",
        "MAX_BATCH_IMAGES": "7",
        "MAX_CONTENT_LENGTH": "4096",
        "LOG_LEVEL": "debug",
    }
    assert Settings.load().registry_poll_seconds == 0.5
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings.load()
    assert s.model_registry_dir == tmp_path
    assert (s.registry_poll_seconds, s.model_cache_size, s.max_batch_images) == (0.25, 3, 7)
    assert (s.max_content_length, s.log_level) == (4096, "DEBUG")
    s = Settings.load({"MAX_BATCH_IMAGES": 9})
    assert s.max_batch_images == 9


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_CACHE_SIZE", "0"),
        ("MODEL_CACHE_SIZE", "two"),
        ("REGISTRY_POLL_SECONDS", "-1"),
        ("REGISTRY_POLL_SECONDS", "nan"),
        ("MAX_BATCH_IMAGES", "1.5"),
        ("LOG_LEVEL", "LOUD"),
        ("TRAINER_PUBLIC_URL", "ftp://trainer"),
        ("TRAINER_PORT", "70000"),
    ],
)
def test_bad_settings_fail_fast(name: str, value: str, monkeypatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        Settings.load()


def test_v2_integral_floats_count_as_integers() -> None:
    """JSON Schema treats 1.0 as an integer; so does the V2 parser (shape, binary_data_size)."""
    req = parse_v2_infer(v2_json([0] * 784, [1.0, 784.0]), None, 10)
    assert req.x.shape == (1, 784)
    arr = np.zeros((1, 784), dtype="<f4")
    body, header = v2_binary(arr, [1, 784], size=784 * 4)
    body = body.replace(b'"binary_data_size":3136', b'"binary_data_size":3136.0')
    header = str(int(header) + 2)
    assert parse_v2_infer(body, header, 10).x.shape == (1, 784)
    assert v2_error(v2_json([0] * 784, [1.5, 784])).field == "inputs[0].shape[0]"
    assert v2_error(v2_json([0] * 784, [True, 784])).field == "inputs[0].shape[0]"


def test_v2_uint8_json_flat_nested_and_raw_scale_decode_alike() -> None:
    """UINT8 JSON data take the bytes() path (as /v1 does): flat, rows of 28, or one row per
    image, the same pixels in [0, 1] as the general path gives for the same values as floats."""
    pixels = np.random.default_rng(3).integers(0, 256, (2, 784))
    want = (pixels / 255.0).astype(np.float32)
    shapes = {
        "flat": (pixels.ravel().tolist(), [2, 784]),
        "rows": (pixels.tolist(), [2, 784]),
        "28x28": (pixels.reshape(2, 28, 28).tolist(), [2, 28, 28]),
    }
    for label, (data, shape) in shapes.items():
        got = parse_v2_infer(v2_json(data, shape, "UINT8"), None, 10).x
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=label)
    as_floats = v2_json([float(v) for v in pixels.ravel()], [2, 784], "UINT8")
    np.testing.assert_allclose(parse_v2_infer(as_floats, None, 10).x, want, rtol=1e-6)


def test_an_image_of_784_one_element_lists_is_not_read_as_pixels() -> None:
    """784 values each wrapped in a list is neither a flat image nor rows: a 400 naming the
    first value, never pixels."""
    body = orjson.dumps({"instances": [[[5]] * 784]})
    with pytest.raises(ApiError) as info:
        decode_instances(body, 784, 10)
    assert info.value.status == 400 and info.value.field == "instances[0][0]"
