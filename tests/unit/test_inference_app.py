"""The inference app through Flask's test client, on a real temporary registry with tiny models.

REGISTRY_POLL_SECONDS=0 makes the app re-check the registry at the start of every request, so a
publish or pin is visible on the very next request: deterministic without sleeping. The background
poller itself is tested separately (and for real, across gunicorn workers, in the integration
test).
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import orjson
import pytest
from PIL import Image
from werkzeug.exceptions import NotFound

from inference_service import predict, routes
from inference_service.app import create_app
from inference_service.serving import ModelCache
from inference_service.telemetry import Telemetry
from shared.config import TrainConfig
from shared.modelfile import save_model
from shared.registry import ModelDetail, VersionSummary
from tests.cache_support import is_polling, stop_polling
from tests.service_support import (
    digit_picture,
    error_of,
    expected_proba,
    flip_weights_byte,
    post_json,
    publish,
    v2_binary,
)

RNG = np.random.default_rng(1)
BATCH = RNG.integers(0, 256, size=(3, 784))


# ---- helpers ------------------------------------------------------------------------------------


# ---- empty registry, health ----------------------------------------------------------------------


def test_empty_registry(inference_client) -> None:
    assert inference_client.get("/healthz").status_code == 200
    resp = inference_client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["reason"] == "no models in the registry"
    assert inference_client.get("/v2/health/live").get_json() == {"live": True}
    assert inference_client.get("/v2/health/ready").status_code == 503
    assert inference_client.get("/v1/models").get_json() == {"models": []}
    resp = post_json(inference_client, "/v1/models/digits/predict", {"instances": BATCH.tolist()})
    assert resp.status_code == 404 and error_of(resp)["code"] == "model_not_found"


def test_readyz_before_and_after_publish(inference_client, registry, tmp_path) -> None:
    assert inference_client.get("/readyz").status_code == 503
    publish(registry, tmp_path)
    resp = inference_client.get("/readyz")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["ready"] is True
    assert body["models"]["digits"] == {"registry_default": 1, "serving": 1}
    assert inference_client.get("/v2/health/ready").get_json() == {"ready": True}


# ---- V1 predict ----------------------------------------------------------------------------------


def test_predict_default_matches_in_process_model(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    resp = post_json(inference_client, "/v1/models/digits/predict", {"instances": BATCH.tolist()})
    assert resp.status_code == 200, resp.data
    assert resp.headers["X-Model-Version"] == "1"
    body = resp.get_json()
    assert body["model"] == "digits" and body["model_version"] == 1
    proba = np.asarray(body["probabilities"], dtype=np.float32)
    want = expected_proba(registry, "digits", 1, BATCH / 255.0)
    np.testing.assert_allclose(proba, want, rtol=1e-6, atol=1e-7)
    assert body["predictions"] == want.argmax(axis=1).tolist()
    # nested 28x28 and unit scale give the same answer
    nested = post_json(
        inference_client,
        "/v1/models/digits/predict",
        {"instances": (BATCH / 255.0).reshape(3, 28, 28).tolist(), "scale": "unit"},
    ).get_json()
    np.testing.assert_allclose(nested["probabilities"], body["probabilities"], rtol=1e-5)


def test_versions_latest_alias_and_pin(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path, seed=1)
    assert (
        post_json(
            inference_client, "/v1/models/digits/predict", {"instances": BATCH.tolist()}
        ).headers["X-Model-Version"]
        == "1"
    )
    publish(registry, tmp_path, seed=2)

    def version(url: str) -> str:
        resp = post_json(inference_client, url, {"instances": BATCH[:1].tolist()})
        assert resp.status_code == 200, resp.data
        return resp.headers["X-Model-Version"]

    assert version("/v1/models/digits/predict") == "2"  # latest is the default
    assert version("/v1/models/digits/versions/1/predict") == "1"
    assert version("/v1/models/digits/versions/latest/predict") == "2"
    assert version("/v1/models/digits/versions/default/predict") == "2"
    registry.set_alias("digits", "champion", 1)
    assert version("/v1/models/digits/versions/champion/predict") == "1"
    registry.pin("digits", 1)
    assert version("/v1/models/digits/predict") == "1"
    assert version("/v1/models/digits/versions/latest/predict") == "2"
    registry.unpin("digits")
    assert version("/v1/models/digits/predict") == "2"
    # answers come from the right weights
    p1 = post_json(
        inference_client, "/v1/models/digits/versions/1/predict", {"instances": BATCH.tolist()}
    ).get_json()["probabilities"]
    np.testing.assert_allclose(
        p1, expected_proba(registry, "digits", 1, BATCH / 255.0), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize(
    "url",
    [
        "/v1/models/nope/predict",
        "/v1/models/Digits/predict",
        "/v1/models/..%2F..%2Fetc/predict",
        "/v1/models/digits/versions/9/predict",
        "/v1/models/digits/versions/0/predict",
        "/v1/models/digits/versions/01/predict",
        "/v1/models/digits/versions/-1/predict",
        "/v1/models/digits/versions/99999999999999999999/predict",
        "/v1/models/digits/versions/nosuchalias/predict",
        "/v1/models/digits/versions/Bad.Alias/predict",
        "/v1/models/nope",
        "/v1/models/digits/versions/7",
        "/v1/models/digits/versions/unknown",
        "/v2/models/nope",
        "/v2/models/digits/versions/5",
        "/v2/models/digits/versions/5/ready",
        "/v2/models/nope/ready",
        "/nothing/here",
    ],
)
def test_unknown_things_are_404(inference_client, registry, tmp_path, url: str) -> None:
    publish(registry, tmp_path)
    if url.endswith("/predict"):
        resp = post_json(inference_client, url, {"instances": BATCH.tolist()})
    else:
        resp = inference_client.get(url)
    assert resp.status_code == 404, resp.data
    error_of(resp)


def test_listing_and_manifest(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path, seed=1)
    publish(registry, tmp_path, seed=2)
    registry.set_alias("digits", "champion", 1)
    registry.pin("digits", 1)
    post_json(inference_client, "/v1/models/digits/predict", {"instances": BATCH[:1].tolist()})

    models = inference_client.get("/v1/models").get_json()["models"]
    assert models == [
        {
            "name": "digits",
            "latest_version": 2,
            "default_version": 1,
            "pinned_version": 1,
            "serving_version": 1,
            "versions": [1, 2],
            "staged_versions": [],
            "aliases": {"champion": 1},
            "traffic": None,
            "shadow": None,
            "keep_last": None,
        }
    ]
    detail = inference_client.get("/v1/models/digits").get_json()
    ModelDetail.model_validate(detail)  # the registry's shape (the trainer's too)...
    assert set(detail) == set(ModelDetail.model_fields) | {"serving_version", "live"}  # ...plus
    assert set(detail["versions"][0]) == set(VersionSummary.model_fields) | {"loaded", "network"}
    assert detail["default_version"] == 1 and detail["latest_version"] == 2
    v1, v2 = detail["versions"]
    assert v1["version"] == 1 and v1["default"] and v1["pinned"] and v1["loaded"]
    assert v1["staged"] is False and v2["staged"] is False
    assert v1["aliases"] == ["champion"] and v1["status"] == "ok"
    assert v1["metrics"] == {"test_accuracy": 0.11}
    assert v1["config"]["hidden_layers"] == [16]
    assert v1["created_at"] and len(v1["sha256"]) == 64
    assert not v2["default"] and not v2["loaded"] and v2["aliases"] == []
    assert [h["action"] for h in detail["history"]] == ["alias_set", "pin"]

    manifest = inference_client.get("/v1/models/digits/versions/2").get_json()
    assert manifest["version"] == 2 and manifest["status"] == "ok"
    assert manifest["metrics"] == {"test_accuracy": 0.12}
    assert manifest["default"] is False and manifest["loaded"] is False
    assert inference_client.get("/v1/models/digits/versions/champion").get_json()["version"] == 1
    assert inference_client.get("/v1/models/digits/versions/latest").get_json()["version"] == 2


def test_broken_version_is_listed_and_never_served(
    inference_client, registry, tmp_path, caplog
) -> None:
    publish(registry, tmp_path, seed=1)
    publish(registry, tmp_path, seed=2)
    url = "/v1/models/digits/predict"
    assert (
        post_json(inference_client, url, {"instances": BATCH.tolist()}).headers["X-Model-Version"]
        == "2"
    )
    publish(registry, tmp_path, seed=3)
    flip_weights_byte(registry.weights_path("digits", 3).parent)
    # the default stays on the last good version
    for _ in range(3):
        resp = post_json(inference_client, url, {"instances": BATCH.tolist()})
        assert resp.headers["X-Model-Version"] == "2"
    resp = post_json(
        inference_client, "/v1/models/digits/versions/3/predict", {"instances": BATCH.tolist()}
    )
    assert resp.status_code == 409 and error_of(resp)["code"] == "version_broken"
    rows = {
        r["version"]: r for r in inference_client.get("/v1/models/digits").get_json()["versions"]
    }
    assert rows[3]["status"] == "broken" and "sha256" in rows[3]["error"]
    assert rows[3]["loaded"] is False and rows[2]["default"] is True
    assert inference_client.get("/v1/models/digits/versions/3").status_code == 409
    assert inference_client.get("/v2/models/digits").get_json()["versions"] == ["1", "2"]
    assert inference_client.get("/readyz").status_code == 200


def test_unloadable_file_with_valid_hash_falls_back(inference_client, registry, tmp_path) -> None:
    """Hash OK (published that way) but not a model file: load_model refuses, never served."""
    publish(registry, tmp_path, seed=1)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a numpy file at all")
    assert registry.publish("digits", junk, {"config": {}}) == 2
    resp = post_json(inference_client, "/v1/models/digits/predict", {"instances": BATCH.tolist()})
    assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "1"
    resp = post_json(
        inference_client, "/v1/models/digits/versions/2/predict", {"instances": BATCH.tolist()}
    )
    assert resp.status_code == 409
    assert inference_client.get("/readyz").status_code == 200


def test_fresh_worker_with_unloadable_pin_serves_latest_good(
    make_inference_app, registry, tmp_path
) -> None:
    publish(registry, tmp_path, seed=1)
    publish(registry, tmp_path, seed=2)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 truncated zip")
    assert registry.publish("digits", junk, {}) == 3
    registry.pin("digits", 3)  # the hash verifies, so the registry accepts the pin
    client = make_inference_app().test_client()
    resp = post_json(client, "/v1/models/digits/predict", {"instances": BATCH.tolist()})
    assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "2"
    body = client.get("/readyz").get_json()
    digits = body["models"]["digits"]
    assert body["ready"] and (digits["registry_default"], digits["serving"]) == (3, 2)
    assert digits["problem"].startswith("default version 3 cannot be served")  # readyz says why


def test_model_with_only_broken_versions(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path, name="bad")
    flip_weights_byte(registry.weights_path("bad", 1).parent)
    resp = post_json(inference_client, "/v1/models/bad/predict", {"instances": BATCH.tolist()})
    assert resp.status_code == 409
    body = inference_client.get("/readyz").get_json()
    assert body["ready"] is False
    assert body["models"]["bad"]["problem"] == "no usable version in the registry"
    publish(registry, tmp_path, name="good")
    body = inference_client.get("/readyz").get_json()
    assert body["ready"] is True, body  # "bad" has nothing to load: it does not block readiness


# ---- V1 errors -----------------------------------------------------------------------------------


def test_error_codes(make_inference_app, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    client = make_inference_app(MAX_CONTENT_LENGTH=64 * 1024, MAX_BATCH_IMAGES=4).test_client()
    url = "/v1/models/digits/predict"

    resp = client.get(url)
    assert resp.status_code == 405 and "POST" in resp.headers["Allow"]
    assert error_of(resp)["code"] == "method_not_allowed"

    resp = client.post(url, data=b"{bad", content_type="application/json")
    assert resp.status_code == 400 and error_of(resp)["code"] == "malformed_json"

    resp = client.post(url, data=b'{"instances": [[NaN]]}', content_type="application/json")
    assert resp.status_code == 400

    resp = post_json(client, url, {"instances": [[0] * 783 + [256]]})
    err = error_of(resp)
    assert resp.status_code == 400 and err["field"] == "instances[0][783]"

    resp = post_json(client, url, {"instances": []})
    assert resp.status_code == 422 and error_of(resp)["code"] == "empty_batch"

    resp = post_json(client, url, {"instances": [[0] * 784] * 5})
    assert resp.status_code == 413 and error_of(resp)["code"] == "too_many_images"

    resp = client.post(url, data=b"x" * (65 * 1024), content_type="application/json")
    assert resp.status_code == 413 and error_of(resp)["code"] == "payload_too_large"

    resp = client.post(url, data=b"instances=1", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and error_of(resp)["code"] == "unsupported_media_type"
    resp = client.post(url, data=b"hello", content_type="text/plain")
    assert resp.status_code == 415

    # no Content-Type at all: treated as JSON
    resp = client.post(url, data=orjson.dumps({"instances": BATCH[:1].tolist()}))
    assert resp.status_code == 200

    resp = client.delete("/v1/models/digits")
    assert resp.status_code == 405


def test_a_real_bug_is_a_json_500(inference_app, caplog) -> None:
    def boom():
        raise RuntimeError("kaboom")

    inference_app.add_url_rule("/boom", "boom", boom)
    resp = inference_app.test_client().get("/boom")
    assert resp.status_code == 500
    assert error_of(resp)["code"] == "internal_error"
    assert "kaboom" not in resp.get_data(as_text=True)
    assert "kaboom" in caplog.text


# ---- picture uploads -----------------------------------------------------------------------------


def test_picture_upload_png_jpeg_and_multipart(inference_client, registry, tmp_path) -> None:
    from shared.preprocess import picture_to_mnist

    publish(registry, tmp_path)
    url = "/v1/models/digits/predict"
    png = digit_picture("PNG", dark_on_light=True)
    jpeg = digit_picture("JPEG", dark_on_light=False)

    resp = inference_client.post(url, data=png, content_type="image/png")
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    want = expected_proba(registry, "digits", 1, picture_to_mnist(png)[None, :])
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-7)
    assert len(body["predictions"]) == 1

    resp = inference_client.post(url, data=jpeg, content_type="image/jpeg")
    assert resp.status_code == 200 and len(resp.get_json()["predictions"]) == 1

    resp = inference_client.post(
        "/v1/models/digits/versions/1/predict",
        data={"image": [(io.BytesIO(png), "a.png"), (io.BytesIO(jpeg), "b.jpg")]},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.data
    assert len(resp.get_json()["predictions"]) == 2

    resp = inference_client.post(
        url, data={"picture": (io.BytesIO(png), "a.png")}, content_type="multipart/form-data"
    )
    assert resp.status_code == 400 and error_of(resp)["field"] == "image"

    resp = inference_client.post(url, data=b"GIF89a not really", content_type="image/png")
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_image"

    blank = io.BytesIO()
    Image.new("L", (50, 50), 255).save(blank, format="PNG")
    resp = inference_client.post(url, data=blank.getvalue(), content_type="image/png")
    assert resp.status_code == 422 and error_of(resp)["code"] == "blank_image"

    resp = inference_client.post(url, data=b"", content_type="image/png")
    assert resp.status_code == 400


# ---- V2 ------------------------------------------------------------------------------------------


def test_v2_metadata_and_ready(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path, seed=1)
    publish(registry, tmp_path, seed=2)
    meta = inference_client.get("/v2/models/digits").get_json()
    assert meta["name"] == "digits" and meta["versions"] == ["1", "2"]
    assert meta["inputs"][0]["name"] == "input" and meta["inputs"][0]["shape"] == [-1, 784]
    assert meta["inputs"][0]["datatype"] == "FP32"
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "probabilities": ("FP32", [-1, 10]),
        "predictions": ("INT64", [-1]),
    }
    assert inference_client.get("/v2/models/digits/versions/1").status_code == 200
    assert inference_client.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]
    resp = inference_client.get("/v2/models/digits/ready")
    assert resp.status_code == 200 and resp.get_json()["version"] == "2"
    assert inference_client.get("/v2/models/digits/versions/1/ready").get_json()["ready"] is True


def test_v2_infer_json(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    want = expected_proba(registry, "digits", 1, BATCH / 255.0)
    for datatype, data, shape in [
        ("UINT8", BATCH.reshape(-1).tolist(), [3, 784]),
        ("UINT8", BATCH.reshape(3, 28, 28).tolist(), [3, 28, 28]),
        ("FP32", (BATCH / 255.0).reshape(-1).tolist(), [3, 784]),
    ]:
        resp = post_json(
            inference_client,
            "/v2/models/digits/infer",
            {
                "id": "req-7",
                "inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}],
            },
        )
        assert resp.status_code == 200, resp.data
        body = resp.get_json()
        assert body["model_name"] == "digits" and body["model_version"] == "1"
        assert body["id"] == "req-7"
        outs = {o["name"]: o for o in body["outputs"]}
        assert outs["probabilities"]["datatype"] == "FP32"
        assert outs["probabilities"]["shape"] == [3, 10]
        got = np.asarray(outs["probabilities"]["data"], dtype=np.float32).reshape(3, 10)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert outs["predictions"] == {
            "name": "predictions",
            "datatype": "INT64",
            "shape": [3],
            "data": want.argmax(axis=1).tolist(),
        }
    # only the requested output
    resp = post_json(
        inference_client,
        "/v2/models/digits/versions/1/infer",
        {
            "inputs": [
                {"name": "input", "shape": [3, 784], "datatype": "UINT8", "data": BATCH.tolist()}
            ],
            "outputs": [{"name": "predictions"}],
        },
    )
    assert [o["name"] for o in resp.get_json()["outputs"]] == ["predictions"]


def test_v2_infer_binary(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    x = (BATCH / 255.0).astype("<f4")
    want = expected_proba(registry, "digits", 1, x)
    outputs = [
        {"name": "probabilities", "parameters": {"binary_data": True}},
        {"name": "predictions", "parameters": {"binary_data": False}},
    ]
    body, head_length = v2_binary(x, [3, 28, 28], outputs=outputs)
    resp = inference_client.post(
        "/v2/models/digits/infer",
        data=body,
        content_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": head_length},
    )
    assert resp.status_code == 200, resp.data[:300]
    assert resp.mimetype == "application/octet-stream"
    n = int(resp.headers["Inference-Header-Content-Length"])
    header = orjson.loads(resp.data[:n])
    probs, preds = header["outputs"]
    assert probs["parameters"] == {"binary_data_size": 3 * 10 * 4} and "data" not in probs
    got = np.frombuffer(resp.data[n:], dtype="<f4").reshape(3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert preds["data"] == want.argmax(axis=1).tolist()

    # UINT8 binary in, everything binary out
    body, head_length = v2_binary(
        BATCH.astype(np.uint8), [3, 784], "UINT8", parameters={"binary_data_output": True}
    )
    resp = inference_client.post(
        "/v2/models/digits/infer",
        data=body,
        headers={"Inference-Header-Content-Length": head_length},
    )
    assert resp.status_code == 200
    n = int(resp.headers["Inference-Header-Content-Length"])
    header = orjson.loads(resp.data[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [120, 24]
    tail = resp.data[n:]
    np.testing.assert_allclose(
        np.frombuffer(tail[:120], "<f4").reshape(3, 10), want, rtol=1e-5, atol=1e-7
    )
    assert np.frombuffer(tail[120:], "<i8").tolist() == want.argmax(axis=1).tolist()


def test_v2_errors(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    url = "/v2/models/digits/infer"
    resp = inference_client.post(url, data=b"{", content_type="application/json")
    assert resp.status_code == 400
    resp = post_json(
        inference_client,
        url,
        {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP16"}]},
    )
    assert resp.status_code == 400 and error_of(resp)["field"] == "inputs[0].datatype"
    resp = inference_client.post(url, data=b"abc", content_type="text/csv")
    assert resp.status_code == 415
    resp = inference_client.post(url, data=b"{}", headers={"Inference-Header-Content-Length": "99"})
    assert resp.status_code == 400
    assert inference_client.get(url).status_code == 405


# ---- hot reload with the background thread --------------------------------------------------------


def test_background_poller_swaps_default_without_requests(registry, tmp_path) -> None:
    app = create_app({"MODEL_REGISTRY_DIR": str(registry.root), "REGISTRY_POLL_SECONDS": 0.05})
    cache: ModelCache = app.extensions["digitflow"].cache
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 503  # starts the poller
        assert is_polling(cache)
        publish(registry, tmp_path, seed=1)
        deadline = time.monotonic() + 2
        while cache.served_default("digits") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.served_default("digits") == 1
        old = cache.get("digits")  # an "in-flight request" holding version 1
        publish(registry, tmp_path, seed=2)
        deadline = time.monotonic() + 2
        while cache.served_default("digits") != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.served_default("digits") == 2
        # the old object still works after the swap (load-before-drop)
        assert old.version == 1 and old.predict_proba(np.zeros((1, 784), np.float32)).shape == (
            1,
            10,
        )
        assert client.get("/readyz").status_code == 200
    finally:
        stop_polling(cache)
    assert not is_polling(cache)


def test_lru_never_evicts_defaults(registry, tmp_path) -> None:
    for seed in range(1, 5):
        publish(registry, tmp_path, seed=seed)
    registry.pin("digits", 2)
    cache = ModelCache(registry, telemetry=Telemetry(), capacity=2, poll_seconds=0)
    cache.refresh()
    assert cache.served_default("digits") == 2
    for v in (1, 3, 4, 1):
        assert cache.get("digits", v).version == v
    assert cache.versions.is_loaded("digits", 2)  # the default survives every eviction
    assert len(cache.versions.loaded_versions()) == 2
    assert set(cache.versions.loaded_versions()) == {("digits", 2), ("digits", 1)}


def test_defaults_split_versions_and_shadows_are_kept_beyond_the_cache_size(
    registry, tmp_path
) -> None:
    """The README's MODEL_CACHE_SIZE example: a model with a default, two other split versions
    and a shadow, plus a second model, is 5 versions loaded with the default 4 (the second
    model's default too, though it loaded when the first model's alone filled the cache); a
    version asked for by number stays until another loads; a route of weight 0 is not kept."""
    for seed in range(1, 7):
        publish(registry, tmp_path, seed=seed)
    publish(registry, tmp_path, seed=1, name="other")
    registry.pin("digits", 1)
    split = [{"version": 2, "weight": 50}, {"version": 3, "weight": 50}]
    registry.set_traffic("digits", [*split, {"version": 5, "weight": 0}])
    registry.set_shadow("digits", 4)
    cache = ModelCache(registry, telemetry=Telemetry(), capacity=4, poll_seconds=0)
    cache.refresh()
    kept = {("digits", 1), ("digits", 2), ("digits", 3), ("digits", 4), ("other", 1)}
    assert set(cache.versions.loaded_versions()) == kept
    assert cache.get("digits", 5).version == 5
    assert set(cache.versions.loaded_versions()) == kept | {("digits", 5)}
    assert cache.get("digits", 6).version == 6
    assert set(cache.versions.loaded_versions()) == kept | {("digits", 6)}


# ---- metrics & OpenAPI ------------------------------------------------------------------------------


def test_metrics(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    post_json(inference_client, "/v1/models/digits/predict", {"instances": BATCH.tolist()})
    post_json(inference_client, "/v1/models/digits/predict", {"instances": []})
    resp = inference_client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    assert (
        'digitflow_inference_requests_total{method="POST",route="/v1/models/<name>/predict",'
        'status="200"} 1.0' in text
    )
    assert 'status="422"} 1.0' in text
    assert 'digitflow_inference_images_total{model="digits",version="1"} 3.0' in text
    assert 'digitflow_inference_default_version{model="digits"} 1.0' in text
    assert "digitflow_inference_request_duration_seconds_bucket" in text


def test_openapi_documents_every_route_and_routes_every_documented_one(
    inference_client, inference_app
) -> None:
    """Flask rules and the plain-WSGI predict routes together are exactly the documented
    operations; no path is served by both; error answers are documented with the kit's body."""
    spec = inference_client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "delete", "patch")
    }
    routed = set()
    for rule in inference_app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routed |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    plain = {(op.path, op.method) for op, _ in routes.PLAIN}
    assert len(plain) == 4 and not plain & routed
    assert documented == routed | plain
    adapter = inference_app.url_map.bind("localhost")
    router = predict.Router(routes.PLAIN)
    for op, handler in routes.PLAIN:
        concrete = op.path.replace("{name}", "digits").replace("{ref}", "latest")
        route = router.match(concrete)
        assert route is not None and route.handler is handler and route.template == op.flask_rule
        with pytest.raises(NotFound):  # one implementation: Flask has no rule for the path
            adapter.match(concrete, op.method)
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")) and path not in ("/readyz", "/v2/health/ready"):
                    assert resp["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }, (path, status)
    media = spec["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert set(media) == {
        "application/json", "application/x-npy", "image/png", "image/jpeg", "multipart/form-data"
    }  # fmt: skip
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(infer["responses"]["200"]["content"]) == {
        "application/json", "application/octet-stream"
    }  # fmt: skip


def test_never_imports_redis_or_rq(registry, tmp_path) -> None:
    """Inference must keep serving when the trainer side (Redis, RQ) is down or absent."""
    import subprocess
    import sys

    publish(registry, tmp_path)
    code = f"""
import sys, io
from PIL import Image
from inference_service.app import create_app
app = create_app({{"MODEL_REGISTRY_DIR": {str(registry.root)!r}, "REGISTRY_POLL_SECONDS": 0}})
c = app.test_client()
assert c.get("/readyz").status_code == 200
img = io.BytesIO(); Image.new("L", (40, 40), 255).save(img, "PNG")
c.post("/v1/models/digits/predict", data=img.getvalue(), content_type="image/png")
c.post("/v1/models/digits/predict", json={{"instances": [[0] * 784]}})
c.get("/metrics"); c.get("/v1/models/digits"); c.get("/v2/models/digits")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("redis", "rq"))
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unreadable_registry_is_503_not_500(inference_app, inference_client, monkeypatch) -> None:
    registry = inference_app.extensions["digitflow"].registry

    def unreadable() -> list[str]:
        raise PermissionError(13, "Permission denied", str(registry.root))

    monkeypatch.setattr(registry, "model_names", unreadable)
    resp = inference_client.get("/v1/models")
    assert resp.status_code == 503 and error_of(resp)["code"] == "registry_unavailable"
    assert inference_client.get("/healthz").status_code == 200


# ---- the plain-WSGI predict routes: bodies without a length, methods, other input sizes ----------


def test_chunked_bodies_are_read_and_bounded(make_inference_app, registry, tmp_path) -> None:
    """A body without Content-Length (chunked, terminated by the server) is read up to
    MAX_CONTENT_LENGTH; beyond it, a 413."""
    publish(registry, tmp_path)
    client = make_inference_app(MAX_CONTENT_LENGTH=8192).test_client()
    terminated = {"wsgi.input_terminated": True}
    for url in ("/v1/models/digits/predict", "/v1/models/digits/versions/1/predict"):
        body = orjson.dumps({"instances": BATCH[:1].tolist()})
        resp = client.post(url, input_stream=io.BytesIO(body), content_type="application/json",
                           environ_overrides=terminated)  # fmt: skip
        assert resp.status_code == 200, resp.data[:300]
        big = orjson.dumps({"instances": BATCH.tolist()})  # > 8 KiB
        resp = client.post(url, input_stream=io.BytesIO(big), content_type="application/json",
                           environ_overrides=terminated)  # fmt: skip
        assert resp.status_code == 413 and error_of(resp)["code"] == "payload_too_large"
    for method in ("get", "put", "delete"):
        resp = getattr(client, method)("/v2/models/digits/versions/1/infer")
        assert resp.status_code == 405 and resp.headers["Allow"] == "OPTIONS, POST"
    assert client.options("/v1/models/digits/predict").headers["Allow"] == "OPTIONS, POST"
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'method="POST",route="/v1/models/<name>/versions/<ref>/predict",status="413"} 1.0' in text
    )
    assert 'method="GET",route="/v2/models/<name>/versions/<ref>/infer",status="405"} 1.0' in text


@pytest.mark.parametrize(
    "url", ["/v2/models/digits/infer", "/v2/models/digits/versions/1/infer"]
)  # fmt: skip
@pytest.mark.parametrize("datatype", [{"a": 1}, ["FP32"], 7, None])
def test_v2_datatype_of_the_wrong_json_type_is_400(
    inference_client, registry, tmp_path, url, datatype
):
    publish(registry, tmp_path)
    tensor = {"name": "input", "shape": [1, 784], "datatype": datatype, "data": [0] * 784}
    resp = post_json(inference_client, url, {"inputs": [tensor]})
    assert resp.status_code == 400 and error_of(resp)["field"] == "inputs[0].datatype"


def test_input_size_comes_from_the_model(inference_client, registry, tmp_path) -> None:
    """A model taking 50 values: JSON, .npy and V2 bodies of 50 work, 784 is refused naming the
    field, pictures (28 x 28 by construction) are a 422."""
    config = TrainConfig(model="small", hidden_layers=[8], dropout=0.0)
    path = tmp_path / "small.npz"
    save_model(path, config.build_model(input_size=50))
    registry.publish("small", path, {"config": config.public_dict()})
    x = RNG.integers(0, 256, size=(2, 50))
    want = expected_proba(registry, "small", 1, x / 255.0)

    resp = post_json(inference_client, "/v1/models/small/predict", {"instances": x.tolist()})
    assert resp.status_code == 200, resp.data[:300]
    np.testing.assert_allclose(resp.get_json()["probabilities"], want, rtol=1e-5, atol=1e-7)
    buf = io.BytesIO()
    np.save(buf, x.astype(np.uint8))
    resp = inference_client.post("/v1/models/small/predict", data=buf.getvalue(),
                       content_type="application/x-npy")  # fmt: skip
    assert resp.status_code == 200
    v2 = {"inputs": [{"name": "input", "shape": [2, 50], "datatype": "UINT8",
                      "data": x.ravel().tolist()}]}  # fmt: skip
    assert post_json(inference_client, "/v2/models/small/infer", v2).status_code == 200
    meta = inference_client.get("/v2/models/small").get_json()
    assert meta["inputs"][0]["shape"] == [-1, 50]
    assert meta["inputs"][0]["parameters"]["accepted_shapes"] == [[-1, 50]]

    resp = post_json(inference_client, "/v1/models/small/predict", {"instances": [[0] * 784]})
    assert resp.status_code == 400 and error_of(resp)["field"] == "instances[0]"
    assert "50" in error_of(resp)["message"]
    v2["inputs"][0]["shape"] = [1, 28, 28]
    resp = post_json(inference_client, "/v2/models/small/infer", v2)
    assert resp.status_code == 400 and error_of(resp)["field"] == "inputs[0].shape"
    resp = inference_client.post("/v1/models/small/predict", data=digit_picture("png"),
                       content_type="image/png")  # fmt: skip
    assert resp.status_code == 422 and error_of(resp)["code"] == "pictures_not_supported"


def test_a_deleted_version_is_no_longer_served_by_number(
    inference_client, registry, tmp_path
) -> None:
    publish(registry, tmp_path, seed=1)
    publish(registry, tmp_path, seed=2)
    url, body = "/v1/models/digits/versions/1/predict", {"instances": BATCH[:1].tolist()}
    assert post_json(inference_client, url, body).status_code == 200  # loaded and cached
    registry.delete_version("digits", 1)
    resp = post_json(inference_client, url, body)
    assert resp.status_code == 404, resp.get_json()
    assert "version" in resp.get_json()["error"]["message"]
    # Its number is never handed out again: a cache keyed by (model, version) stays right.
    assert publish(registry, tmp_path, seed=3) == 3
