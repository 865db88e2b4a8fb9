"""A convolutional model served through every inference route (Flask's test client, a real
temporary registry): v1 `instances` (784 values or 28 rows), `.npy`, V2 JSON and binary with
shapes [N, 784], [N, 28, 28] and [N, 1, 28, 28] (the channel axis, accepted for every 784-pixel
model), pictures; the V2 metadata names the shape its layers take; explanations run through the
convolutions and pass the completeness check."""

from __future__ import annotations

import io

import numpy as np
import pytest

from shared.preprocess import picture_to_mnist
from tests.service_support import (
    TINY_CNN,
    digit_picture,
    error_of,
    expected_proba,
    post_json,
    publish,
    v2_binary,
)

RNG = np.random.default_rng(11)
BATCH = RNG.integers(0, 256, size=(3, 784))
SHAPES = [[3, 784], [3, 28, 28], [3, 1, 28, 28]]


@pytest.fixture(params=["cnn", "mlp"])
def served(request, registry, tmp_path, inference_client):
    """digits version 1: the tiny CNN, or the perceptron (the channel axis is for both)."""
    network = TINY_CNN if request.param == "cnn" else None
    assert publish(registry, tmp_path, seed=3, network=network) == 1
    return inference_client, expected_proba(registry, "digits", 1, BATCH / 255), request.param


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_npy_and_v2_take_every_shape(served, shape):
    client, want, _ = served
    npy = _npy(BATCH.astype(np.uint8).reshape(shape))
    answers = [client.post("/v1/models/digits/predict", data=npy, content_type="application/x-npy")]
    for datatype, x in (("UINT8", BATCH), ("FP32", BATCH / 255)):
        tensor = {"name": "input", "shape": shape, "datatype": datatype}
        nested = {**tensor, "data": x.reshape(shape).tolist()}
        flat = {**tensor, "data": x.ravel().tolist()}
        for body in (nested, flat):
            answers.append(post_json(client, "/v2/models/digits/infer", {"inputs": [body]}))
    binary, length = v2_binary((BATCH / 255).astype("<f4"), shape)
    answers.append(client.post("/v2/models/digits/infer", data=binary,
                               content_type="application/octet-stream",
                               headers={"Inference-Header-Content-Length": length}))  # fmt: skip
    for resp in answers:
        assert resp.status_code == 200, resp.data[:300]
        body = resp.get_json()
        proba = body.get("probabilities") or body["outputs"][0]["data"]
        np.testing.assert_allclose(np.reshape(proba, (3, 10)), want, rtol=1e-5, atol=1e-6)


def test_v1_instances_and_pictures(served, registry):
    client, want, _ = served
    for instances in (BATCH.tolist(), BATCH.reshape(3, 28, 28).tolist()):
        resp = post_json(client, "/v1/models/digits/predict", {"instances": instances})
        assert resp.status_code == 200, resp.data[:300]
        np.testing.assert_allclose(resp.get_json()["probabilities"], want, rtol=1e-5, atol=1e-6)
    png = digit_picture("PNG")
    resp = client.post("/v1/models/digits/predict", data=png, content_type="image/png")
    assert resp.status_code == 200
    picture = expected_proba(registry, "digits", 1, picture_to_mnist(png)[None, :])
    np.testing.assert_allclose(resp.get_json()["probabilities"], picture, rtol=1e-5, atol=1e-6)
    # A v1 instance is one image of 784 values or 28 rows: no channel axis there.
    image = [BATCH[0].reshape(28, 28).tolist()]
    resp = post_json(client, "/v1/models/digits/predict", {"instances": [image]})
    assert resp.status_code == 400 and error_of(resp)["field"] == "instances[0]"


def test_a_bad_pixel_is_named_where_it_was_sent(served):
    client, _, _ = served
    x = BATCH.astype(np.float32).reshape(3, 1, 28, 28) / 255
    x[2, 0, 5, 17] = 1.5
    resp = client.post("/v1/models/digits/predict", data=_npy(x), content_type="application/x-npy")
    assert resp.status_code == 400 and error_of(resp)["field"] == "body[2][0][5][17]"
    tensor = {"name": "input", "shape": [1, 1, 28, 29], "datatype": "UINT8", "data": [0] * 812}
    resp = post_json(client, "/v2/models/digits/infer", {"inputs": [tensor]})
    assert resp.status_code == 400 and error_of(resp)["field"] == "inputs[0].shape"
    assert "[N, 784], [N, 28, 28] or [N, 1, 28, 28]" in error_of(resp)["message"]


def test_v2_metadata_names_the_shape_the_layers_take(served):
    client, _, kind = served
    meta = client.get("/v2/models/digits").get_json()
    cnn = kind == "cnn"
    assert meta["platform"] == ("digitflow_numpy_cnn" if cnn else "digitflow_numpy_mlp")
    assert meta["inputs"][0]["shape"] == ([-1, 1, 28, 28] if cnn else [-1, 784])
    accepted = meta["inputs"][0]["parameters"]["accepted_shapes"]
    assert accepted == [[-1, 784], [-1, 28, 28], [-1, 1, 28, 28]]


def test_explanations_run_through_the_convolutions(registry, tmp_path, inference_client):
    publish(registry, tmp_path, seed=5, network=TINY_CNN)
    payload = {"instances": BATCH.tolist(), "steps": 64}
    resp = post_json(inference_client, "/v1/models/digits/explain", payload)
    assert resp.status_code == 200, resp.data[:300]
    body = resp.get_json()
    assert np.array(body["attributions"]).shape == (3, 784)
    gap, diff = np.array(body["completeness_gap"]), np.array(body["logit_difference"])
    assert np.abs(diff).min() > 1e-3  # something to attribute
    assert (np.abs(gap) / (np.abs(diff) + 1)).max() <= 1e-2  # the engine's tolerance at 64 steps
    resp = inference_client.post("/v1/models/digits/explain?steps=8",
                                 data=_npy(BATCH.astype(np.uint8).reshape(3, 1, 28, 28)),
                                 content_type="application/x-npy")  # fmt: skip
    assert resp.status_code == 200 and resp.get_json()["target"] == body["predictions"]
