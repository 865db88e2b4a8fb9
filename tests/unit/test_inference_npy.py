"""The binary /v1 predict body (``Content-Type: application/x-npy``), the JSON fast path for
integer pixels, and request accounting for every route."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from inference_service.decoders import decode_instances, decode_npy
from shared.web.errors import ApiError
from tests.service_support import error_of, expected_proba, publish

RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, size=(5, 784)).astype(np.uint8)
URL = "/v1/models/digits/predict"
NPY = "application/x-npy"


def parse_v1_json(raw: bytes, max_images: int) -> np.ndarray:
    return decode_instances(raw, 784, max_images)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def post_npy(client, body: bytes):
    return client.post(URL, data=body, content_type=NPY)


@pytest.mark.parametrize(
    "array",
    [
        IMAGES,  # uint8 0-255
        IMAGES.reshape(5, 28, 28),
        IMAGES.astype(np.int64),
        IMAGES.astype(np.float32) / 255,  # float 0-1
        IMAGES.astype(np.float64) / 255,
        np.asfortranarray(IMAGES.astype(">f4") / 255),  # big-endian, Fortran order
    ],
    ids=["uint8", "uint8-28x28", "int64", "float32", "float64", "f4-big-endian-fortran"],
)
def test_npy_body_predicts_like_the_model(inference_client, registry, tmp_path, array) -> None:
    publish(registry, tmp_path)
    resp = post_npy(inference_client, npy(array))
    assert resp.status_code == 200, resp.get_data()[:300]
    body = resp.get_json()
    want = expected_proba(registry, "digits", 1, IMAGES / 255.0)
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-7)
    assert body["predictions"] == want.argmax(axis=1).tolist()
    assert resp.headers["X-Model-Version"] == "1"


def test_npy_matches_json_exactly() -> None:
    x_npy = decode_npy(npy(IMAGES), 784, 1024)
    x_json = parse_v1_json(orjson.dumps({"instances": IMAGES.tolist()}), 1024)
    assert x_npy.dtype == x_json.dtype == np.float32
    np.testing.assert_array_equal(x_npy, x_json)


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "words"),
    [
        (b"", 400, "malformed_npy", "body", "empty"),
        (b'{"instances": []}', 400, "malformed_npy", "body", "not a .npy file"),
        (b"\x93NUMPY\x01\x00\xff\xffgarbage", 400, "malformed_npy", "body", "not a readable"),
        (npy(IMAGES)[:-5], 400, "malformed_npy", "body", "bytes of array data"),
        (npy(IMAGES) + b"x", 400, "malformed_npy", "body", "bytes of array data"),
        (npy(IMAGES[:, :100]), 400, "bad_request", "body.shape", "[N, 784]"),
        (npy(IMAGES.reshape(-1)), 400, "bad_request", "body.shape", "[N, 784]"),
        (npy(np.zeros((0, 784), np.uint8)), 422, "empty_batch", "body.shape", "no image"),
        (npy(IMAGES.astype(bool)), 422, "unsupported_dtype", "body.dtype", "uint8"),
        (npy(IMAGES.astype(np.complex64)), 422, "unsupported_dtype", "body.dtype", "float32"),
        (npy(np.array(["a"] * 784).reshape(1, 784)), 422, "unsupported_dtype", "body.dtype", ""),
        (npy(IMAGES.astype(np.float32)), 400, "bad_request", "body[0][0]", "0-1"),
        (npy(IMAGES.astype(np.int64) + 1), None, None, None, None),  # 256 somewhere (or not)
        (npy(np.full((1, 784), np.nan, np.float32)), 400, "bad_request", "body[0][0]", "finite"),
        (npy(-np.ones((1, 28, 28), np.int16)), 400, "bad_request", "body[0][0][0]", "range"),
    ],
)
def test_npy_errors_name_the_field(
    inference_client, registry, tmp_path, body, status, code, field, words
):
    publish(registry, tmp_path)
    resp = post_npy(inference_client, body)
    if status is None:  # 0-255 + 1: out of range only if some pixel was 255
        assert resp.status_code == (400 if IMAGES.max() == 255 else 200)
        return
    assert resp.status_code == status, resp.get_data()[:300]
    err = error_of(resp)
    assert err["code"] == code and err.get("field") == field, err
    assert words in err["message"]


def test_npy_object_arrays_are_refused_without_unpickling(
    inference_client, registry, tmp_path
) -> None:
    publish(registry, tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.array([[object()] * 784], dtype=object), allow_pickle=True)
    resp = post_npy(inference_client, buf.getvalue())
    assert resp.status_code == 422
    assert error_of(resp)["field"] == "body.dtype"


def test_npy_header_shape_is_checked_before_allocation(
    inference_client, registry, tmp_path
) -> None:
    """A header claiming 10^9 images must not make the worker allocate them."""
    publish(registry, tmp_path)
    header = npy(IMAGES[:1]).replace(b"(1, 784)", b"(1000000000, 784)")
    resp = post_npy(inference_client, header)
    assert resp.status_code in (400, 413)
    assert error_of(resp)["field"] in ("body", "body.shape")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_header_versions_are_read_from_the_bodys_first_bytes(version) -> None:
    """Each format version decodes, from a bytearray (what the worker receives a body into)
    as from bytes; a header past NumPy's own limit (10,000 bytes) is refused as malformed."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, IMAGES, version=version, allow_pickle=False)
    for raw in (buf.getvalue(), bytearray(buf.getvalue())):
        np.testing.assert_allclose(decode_npy(raw, 784, 10), IMAGES / 255, rtol=1e-6)
    text = b"{'descr': '|u1', 'fortran_order': False, 'shape': (5, 784), }"
    text += b" " * (20_000 - len(text)) + b"\n"
    long_header = b"\x93NUMPY\x02\x00" + len(text).to_bytes(4, "little") + text + IMAGES.tobytes()
    with pytest.raises(ApiError) as caught:
        decode_npy(bytearray(long_header), 784, 10)
    assert caught.value.status == 400 and caught.value.field == "body"


def test_npy_batch_limit_is_413(make_inference_app, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    small = make_inference_app(MAX_BATCH_IMAGES=4)
    resp = small.test_client().post(URL, data=npy(IMAGES), content_type=NPY)
    assert resp.status_code == 413
    err = error_of(resp)
    assert err["code"] == "too_many_images" and err["field"] == "body.shape"


def test_unsupported_media_type_lists_npy(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    resp = inference_client.post(URL, data=b"x", content_type="text/plain")
    assert resp.status_code == 415
    assert NPY in error_of(resp)["message"]


# ---- the JSON fast path (bytes() for integers 0-255) must agree with the general path ----------


@pytest.mark.parametrize(
    "instances",
    [
        IMAGES.tolist(),
        IMAGES.reshape(5, 28, 28).tolist(),
        [IMAGES[0].tolist(), IMAGES[1].reshape(28, 28).tolist()],  # mixed layouts
        (IMAGES.astype(np.float64) + 0.5).clip(0, 255).tolist(),  # floats: general path
    ],
    ids=["flat", "nested", "mixed", "floats"],
)
def test_json_fast_path_equals_general_path(instances) -> None:
    raw = orjson.dumps({"instances": instances})
    got = parse_v1_json(raw, 1024)
    want = np.asarray([np.asarray(i, dtype=np.float64).reshape(784) for i in instances]) / 255.0
    assert got.dtype == np.float32 and got.shape == (len(instances), 784)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    ("instances", "scale", "field"),
    [
        ([[0] * 783 + [256]], "raw", "instances[0][783]"),
        ([[0] * 783 + [-1]], "raw", "instances[0][783]"),
        ([[0] * 783 + [True]], "raw", "instances[0][783]"),
        ([[0] * 783 + [None]], "raw", "instances[0][783]"),
        ([[0] * 783 + ["7"]], "raw", "instances[0][783]"),
        ([[0] * 783 + [[1]]], "raw", "instances[0][783]"),
        ([[[0] * 28] * 27 + [[0] * 27 + [2]]], "unit", "instances[0][27][27]"),
        ([[[0] * 28] * 27 + [[0] * 27]], "raw", "instances[0][27]"),
        ([[0] * 784, [0] * 783], "raw", "instances[1]"),
        ([[0] * 28] * 28 + [[0] * 784], "raw", "instances[0]"),
    ],
)
def test_json_bad_values_are_still_named(instances, scale, field) -> None:
    with pytest.raises(ApiError) as info:
        parse_v1_json(orjson.dumps({"instances": instances, "scale": scale}), 1024)
    assert info.value.status == 400
    assert info.value.field == field, info.value.message


# ---- request accounting (the front counts every request, Flask's and plain WSGI's) ------------------------------------------


def test_every_request_is_counted_even_a_500(
    inference_app, inference_client, registry, tmp_path
) -> None:
    publish(registry, tmp_path)

    def boom():
        raise RuntimeError("kaboom")

    inference_app.add_url_rule("/boom", "boom", boom)
    inference_client.post(URL, data=npy(IMAGES), content_type=NPY)
    inference_client.get("/nowhere")
    assert inference_client.get("/boom").status_code == 500
    text = inference_client.get("/metrics").get_data(as_text=True)
    assert 'method="POST",route="/v1/models/<name>/predict",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert 'route="/boom",status="500"} 1.0' in text
    assert 'digitflow_inference_request_duration_seconds_count{route="/boom"} 1.0' in text
