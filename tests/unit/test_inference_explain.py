"""POST /v1/models/{name}/explain and /versions/{ref}/explain through Flask's test client, on a
real temporary registry: the predict bodies (JSON, .npy, pictures, multipart), `target` and
`steps` in a JSON body or as query parameters, completeness of the answer, every refusal naming
its field, and the routes in /openapi.json."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from inference_service.schemas import MAX_EXPLAIN_STEPS, MIN_EXPLAIN_STEPS
from shared.modelfile import load_model
from shared.nn.explain import integrated_gradients
from tests.service_support import digit_picture, error_of, expected_proba, post_json, publish

RNG = np.random.default_rng(3)
BATCH = RNG.integers(0, 256, size=(3, 784))
URL = "/v1/models/digits/explain"


@pytest.fixture
def client(registry, tmp_path, inference_client):
    assert publish(registry, tmp_path, seed=1) == 1
    assert publish(registry, tmp_path, seed=2) == 2
    registry.set_alias("digits", "champion", 1)
    return inference_client


def _relative_gaps(body: dict) -> np.ndarray:
    gap, diff = np.array(body["completeness_gap"]), np.array(body["logit_difference"])
    return np.abs(gap) / (np.abs(diff) + 1)


def test_explains_the_predicted_class_of_each_image(client, registry):
    resp = post_json(client, URL, {"instances": BATCH.tolist()})
    assert resp.status_code == 200, resp.data[:300]
    assert resp.headers["X-Model-Version"] == "2"
    body = resp.get_json()
    assert body["model"] == "digits" and body["model_version"] == 2
    assert body["steps"] == 32 and "black" in body["baseline"]
    want = expected_proba(registry, "digits", 2, BATCH / 255)
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-6)
    assert body["predictions"] == want.argmax(axis=1).tolist() == body["target"]
    attributions = np.array(body["attributions"])
    assert attributions.shape == (3, 784)
    # The engine's answer for the same model and images, through the JSON round trip.
    model = load_model(registry.weights_path("digits", 2)).model
    x = (BATCH / 255).astype(np.float32)
    found = integrated_gradients(model, x, want.argmax(axis=1), steps=32)
    np.testing.assert_allclose(attributions, found.attributions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["completeness_gap"], found.completeness_gap, atol=1e-6)
    # The gap is what it says: the attributions' sum minus the logit difference.
    np.testing.assert_allclose(
        attributions.sum(axis=1) - body["logit_difference"], body["completeness_gap"], atol=1e-4
    )
    assert _relative_gaps(body).max() <= 2e-2


def test_a_named_target_and_steps_in_a_json_body(client):
    payload = {"instances": BATCH.tolist(), "target": 1, "steps": 64}
    body = post_json(client, URL, payload).get_json()
    assert body["target"] == [1, 1, 1] and body["steps"] == 64
    assert _relative_gaps(body).max() <= 1e-2  # the engine's stated tolerance at 64 steps
    other = post_json(client, URL, {**payload, "target": 7}).get_json()
    assert other["target"] == [7, 7, 7]
    assert not np.allclose(other["attributions"], body["attributions"])
    assert other["predictions"] == body["predictions"]  # the answer is still the prediction


def test_versioned_route_and_aliases(client):
    for ref, version in (("1", 1), ("champion", 1), ("latest", 2)):
        resp = post_json(
            client, f"/v1/models/digits/versions/{ref}/explain", {"instances": [[0] * 784]}
        )
        assert resp.status_code == 200 and resp.get_json()["model_version"] == version
        assert resp.headers["X-Model-Version"] == str(version)
        # A blank image is the baseline: nothing to attribute.
        assert np.count_nonzero(resp.get_json()["attributions"]) == 0


def test_other_media_types_take_target_and_steps_as_query_parameters(client):
    buf = io.BytesIO()
    np.save(buf, BATCH.astype(np.uint8).reshape(3, 28, 28))
    resp = client.post(
        f"{URL}?target=4&steps=16", data=buf.getvalue(), content_type="application/x-npy"
    )
    assert resp.status_code == 200, resp.data[:300]
    body = resp.get_json()
    assert body["target"] == [4, 4, 4] and body["steps"] == 16
    picture = digit_picture("PNG")
    resp = client.post(f"{URL}?target=1", data=picture, content_type="image/png")
    assert resp.status_code == 200 and resp.get_json()["target"] == [1]
    form = {"image": [(io.BytesIO(picture), "a.png"), (io.BytesIO(picture), "b.png")]}
    resp = client.post(URL, data=form, content_type="multipart/form-data")
    assert resp.status_code == 200 and len(resp.get_json()["attributions"]) == 2


@pytest.mark.parametrize(
    ("url", "payload", "status", "field"),
    [
        (URL, {"instances": BATCH.tolist(), "target": 10}, 422, "target"),
        (URL, {"instances": BATCH.tolist(), "target": -1}, 422, "target"),
        (URL, {"instances": BATCH.tolist(), "target": "1"}, 400, "target"),
        (URL, {"instances": BATCH.tolist(), "steps": MIN_EXPLAIN_STEPS - 1}, 400, "steps"),
        (URL, {"instances": BATCH.tolist(), "steps": MAX_EXPLAIN_STEPS + 1}, 400, "steps"),
        (URL, {"instances": BATCH.tolist(), "extra": 1}, 400, "extra"),
        (URL, {"instances": [[0] * 783]}, 400, "instances[0]"),
        (URL, {"instances": [[0] * 784] * 17}, 413, "instances"),
        (f"{URL}?target=1", {"instances": BATCH.tolist()}, 422, "target"),
        ("/v1/models/nope/explain", {"instances": BATCH.tolist()}, 404, None),
        ("/v1/models/digits/versions/9/explain", {"instances": BATCH.tolist()}, 404, None),
    ],
)
def test_bad_requests_name_their_field(client, url, payload, status, field):
    resp = post_json(client, url, payload)
    assert resp.status_code == status, resp.data[:300]
    assert error_of(resp).get("field") == field


def test_bad_query_parameters_and_media_types(client):
    buf = io.BytesIO()
    np.save(buf, BATCH.astype(np.uint8))
    for query, field in (("target=x", "target"), ("steps=1000", "steps"), ("target=12", "target")):
        resp = client.post(f"{URL}?{query}", data=buf.getvalue(), content_type="application/x-npy")
        assert resp.status_code == 422, (query, resp.data[:300])
        assert error_of(resp)["field"] == field
    resp = client.post(URL, data=b"hello", content_type="text/plain")
    assert resp.status_code == 415 and error_of(resp)["field"] == "Content-Type"
    assert client.get(URL).status_code == 405


def test_the_batch_limit_is_a_setting(make_inference_app, registry, tmp_path):
    publish(registry, tmp_path, seed=1)
    client = make_inference_app(MAX_EXPLAIN_IMAGES=2).test_client()
    assert post_json(client, URL, {"instances": BATCH[:2].tolist()}).status_code == 200
    resp = post_json(client, URL, {"instances": BATCH.tolist()})
    assert resp.status_code == 413 and "MAX_EXPLAIN_IMAGES is 2" in error_of(resp)["message"]


def test_documented_in_openapi_with_examples_that_work(client):
    doc = client.get("/openapi.json").get_json()
    for path in ("/v1/models/{name}/explain", "/v1/models/{name}/versions/{ref}/explain"):
        op = doc["paths"][path]["post"]
        assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"target", "steps"}
        assert "X-Model-Version" in op["responses"]["200"]["headers"]
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        for example in examples.values():
            url = path.replace("{name}", "digits").replace("{ref}", "latest")
            resp = client.post(
                url, data=orjson.dumps(example["value"]), content_type="application/json"
            )
            assert resp.status_code == 200, resp.data[:300]
    schemas = doc["components"]["schemas"]
    assert {"attributions", "completeness_gap", "target"} <= set(
        schemas["ExplainResponse"]["properties"]
    )


def test_the_default_route_explains_the_version_the_split_picks(client, registry):
    """Like predict, the default explain route follows the traffic split; a routing key lands
    both on the same version."""
    registry.set_traffic("digits", [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}])
    seen = set()
    for key in (f"user-{i}" for i in range(24)):
        headers = {"X-Routing-Key": key}
        predicted = post_json(
            client, "/v1/models/digits/predict", {"instances": BATCH[:1].tolist()}, headers=headers
        )
        explained = post_json(client, URL, {"instances": BATCH[:1].tolist()}, headers=headers)
        assert explained.status_code == 200, explained.data[:300]
        version = predicted.headers["X-Model-Version"]
        assert explained.headers["X-Model-Version"] == version
        seen.add(version)
    assert seen == {"1", "2"}
