"""A convolutional model served through every inference route (Flask's test client, a real
temporary registry): v1 `instances` (784 values or 28 rows), `.npy`, V2 JSON and binary with
shapes [N, 784], [N, 28, 28] and [N, 1, 28, 28] (the channel axis, accepted for every 784-pixel
model), pictures; the V2 metadata names the shape its layers take; explanations run through the
convolutions and pass the completeness check; the feature maps route answers the first
convolution's filters and maps (409 for a perceptron); the listing gives each version's layers."""

from __future__ import annotations

import io

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.modelfile import load_model, save_model
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


FEATURES = "/v1/models/digits/versions/1/feature-maps"


def test_feature_maps_are_what_the_first_convolution_sees(served, registry):
    """A CNN version answers its first conv's filters and its maps of the very pixels predict
    reads (JSON instances, a picture through the MNIST preprocessing); a perceptron a 409."""
    client, _, kind = served
    resp = post_json(client, FEATURES, {"instances": BATCH[:2].tolist()})
    if kind == "mlp":
        assert resp.status_code == 409 and error_of(resp)["code"] == "no_convolution"
        return
    assert resp.status_code == 200, resp.data[:300]
    assert resp.headers["X-Model-Version"] == "1"
    body = resp.get_json()
    model = load_model(registry.weights_path("digits", 1)).model
    want = model.first_convolution((BATCH[:2] / 255).astype(np.float32))
    assert body["layer"] == want.layer == 2  # standardize, reshape, conv2d
    assert np.array(body["filters"]).shape == (4, 1, 5, 5)
    np.testing.assert_allclose(body["filters"], want.filters, rtol=1e-6)
    assert np.array(body["feature_maps"]).shape == (2, 4, 24, 24)  # TINY_CNN: conv 4, kernel 5
    np.testing.assert_allclose(body["feature_maps"], want.feature_maps, rtol=1e-5, atol=1e-6)
    assert min(np.ravel(body["feature_maps"])) == 0.0  # after the ReLU
    png = digit_picture("PNG")
    resp = client.post(FEATURES, data=png, content_type="image/png")
    assert resp.status_code == 200
    pixels = picture_to_mnist(png)[None, :]
    maps = model.first_convolution(pixels).feature_maps
    np.testing.assert_allclose(resp.get_json()["feature_maps"], maps, rtol=1e-5, atol=1e-6)


def test_feature_maps_refuse_what_predict_refuses(served, inference_app):
    client, _, _ = served
    limit = inference_app.extensions["digitflow"].settings.max_explain_images
    resp = post_json(client, FEATURES, {"instances": [[0] * 784] * (limit + 1)})
    assert resp.status_code == 413 and error_of(resp)["field"] == "instances"
    resp = post_json(client, FEATURES, {"instances": [[0] * 783]})
    assert resp.status_code == 400 and error_of(resp)["field"] == "instances[0]"
    resp = post_json(
        client, "/v1/models/digits/versions/9/feature-maps", {"instances": [[0] * 784]}
    )
    assert resp.status_code == 404


def test_the_listing_draws_each_versions_network(served, registry, tmp_path):
    """GET /v1/models/<name>: each version's layers with output shapes and parameter counts, the
    engine's description of the network its config builds; null for a hand-published version."""
    client, _, kind = served
    path = tmp_path / "by-hand.npz"
    save_model(path, TrainConfig(hidden_layers=[8]).build_model())
    assert registry.publish("digits", path, {"metrics": {}}) == 2
    rows = {row["version"]: row for row in client.get("/v1/models/digits").get_json()["versions"]}
    assert rows[2]["network"] is None
    network = rows[1]["network"]
    model = load_model(registry.weights_path("digits", 1)).model
    assert network == model.describe()
    first = [(layer["kind"], layer["output_shape"], layer["params"]) for layer in network[:4]]
    if kind == "cnn":
        assert first[2:] == [("conv2d", [4, 24, 24], 5 * 5 * 4 + 4), ("maxpool2d", [4, 12, 12], 0)]
    else:
        assert first[1:3] == [("dense", [16], 784 * 16 + 16), ("relu", [16], 0)]
    assert sum(layer["params"] for layer in network) == model.n_params
