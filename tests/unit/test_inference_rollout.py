"""Traffic splits and shadow versions in one inference app (Flask's test client, the registry
re-read on every request): which version answers, sticky routing keys, broken routes, and the
shadow's figures. The same behaviours across real gunicorn workers are in
tests/integration/test_inference_rollout.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inference_service.rollout import Split
from tests.service_support import flip_weights_byte, publish

BODY = {"instances": np.random.default_rng(3).integers(0, 256, size=(2, 784)).tolist()}


@pytest.fixture
def two_versions(registry, tmp_path):
    assert publish(registry, tmp_path, seed=1) == 1
    assert publish(registry, tmp_path, seed=2) == 2
    return registry


def served_by(client, n: int, **headers) -> list[str]:
    out = []
    for _ in range(n):
        r = client.post("/v1/models/digits/predict", json=BODY, headers=headers)
        assert r.status_code == 200, r.json
        out.append(r.headers["X-Model-Version"])
    return out


def test_split_pick_is_sha256_of_the_key_against_cumulative_weights() -> None:
    a, b = object(), object()
    split = Split((a, b), (90, 100))  # type: ignore[arg-type]
    import hashlib

    for key in ("alice", "bob", "k-17", "ünï"):
        point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
        assert split.pick(key) is (a if point < 90 else b)
    picks = [split.pick(None) for _ in range(5000)]
    assert 0.87 < picks.count(a) / 5000 < 0.93


def test_the_default_route_follows_the_split_and_its_aliases(
    two_versions, inference_client
) -> None:
    registry = two_versions
    assert set(served_by(inference_client, 5)) == {"2"}
    registry.set_alias("digits", "candidate", 1)
    registry.set_traffic("digits", [{"version": "candidate", "weight": 100}])
    assert set(served_by(inference_client, 5)) == {"1"}
    # the explicit "default" still names the registry's default version (latest: 2)
    r = inference_client.post("/v1/models/digits/versions/default/predict", json=BODY)
    assert r.headers["X-Model-Version"] == "2"
    publish(registry, two_versions.root.parent, seed=3)
    registry.set_alias("digits", "candidate", 3)  # the alias moves: so does the traffic
    assert set(served_by(inference_client, 5)) == {"3"}
    r = inference_client.post(
        "/v2/models/digits/infer",
        json={"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 784],
                          "data": [0] * 784}]},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "3"
    registry.clear_traffic("digits")
    assert set(served_by(inference_client, 5)) == {"3"}  # latest again


def test_sticky_keys_and_both_sides_served(two_versions, inference_client) -> None:
    two_versions.set_traffic("digits", [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}])
    for key in ("user-1", "user-2", "user-3"):
        assert len(set(served_by(inference_client, 20, **{"X-Routing-Key": key}))) == 1
    seen = {served_by(inference_client, 1, **{"X-Routing-Key": f"k{i}"})[0] for i in range(40)}
    assert seen == {"1", "2"}


def test_a_broken_route_gets_no_traffic_and_readyz_says_why(two_versions, inference_client):
    registry = two_versions
    registry.set_traffic("digits", [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}])
    assert set(served_by(inference_client, 30)) == {"1", "2"}
    flip_weights_byte(registry.weights_path("digits", 1).parent)  # damaged in place
    assert set(served_by(inference_client, 30)) == {"2"}
    ready = inference_client.get("/readyz")
    assert ready.status_code == 200
    routes = ready.json["models"]["digits"]["traffic"]
    assert routes[0]["serving"] is None and "gets no traffic" in routes[0]["problem"]
    assert "sha256" in routes[0]["problem"] or "broken" in routes[0]["problem"]
    assert routes[1]["serving"] == 2 and "problem" not in routes[1]


def test_shadow_runs_after_the_answer_and_is_counted(two_versions, inference_client) -> None:
    registry = two_versions
    registry.pin("digits", 1)
    registry.set_shadow("digits", 2)
    answers = [inference_client.post("/v1/models/digits/predict", json=BODY) for _ in range(6)]
    assert {r.headers["X-Model-Version"] for r in answers} == {"1"}
    for r in answers:
        r.close()  # the WSGI server's close(): the answer is sent, the shadow run is scheduled
    # a request naming a version is not shadowed
    inference_client.post("/v1/models/digits/versions/1/predict", json=BODY)
    deadline = time.monotonic() + 5
    while True:
        live = inference_client.get("/v1/models/digits").json["live"]
        shadow = live["shadows"].get("2")
        if shadow and shadow["requests"] == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert shadow["requests"] == 6 and shadow["images"] == 12
    assert sum(map(sum, shadow["confusion"])) == 12 and len(shadow["confusion"]) == 10
    assert 0 <= shadow["agreement"] <= 1
    assert live["versions"]["1"]["requests"] == 7 and live["versions"]["1"]["images"] == 14
    assert sum(live["versions"]["1"]["predicted_classes"]) == 14
    metrics = inference_client.get("/metrics").get_data(as_text=True)
    assert 'digitflow_shadow_requests_total{model="digits",shadow="2"} 6.0' in metrics
    detail = inference_client.get("/v1/models/digits").json
    assert detail["shadow"] == {"version": 2, "serving": 2, "problem": None}


def test_a_new_shadow_has_its_series_at_zero_and_no_figures(two_versions, inference_client) -> None:
    """Known before it compares anything: the shadow's series are in /metrics at 0 (and the
    loaded versions' too), while the live figures list nothing until a request is answered."""
    registry = two_versions
    registry.pin("digits", 1)
    registry.set_shadow("digits", 2)
    detail = inference_client.get("/v1/models/digits").json
    assert detail["shadow"] == {"version": 2, "serving": 2, "problem": None}
    assert detail["live"] == {"versions": {}, "shadows": {}, "shadow_dropped": 0}
    metrics = inference_client.get("/metrics").get_data(as_text=True)
    for series in (
        'digitflow_shadow_requests_total{model="digits",shadow="2"} 0.0',
        'digitflow_shadow_errors_total{model="digits",shadow="2"} 0.0',
        'digitflow_shadow_predictions_total{model="digits",predicted="9",served="0",shadow="2"} 0.0',
        'digitflow_shadow_dropped_total{model="digits"} 0.0',
        'digitflow_inference_version_requests_total{model="digits",version="1"} 0.0',
        'digitflow_inference_version_predictions_total{model="digits",predicted="7",version="2"} 0.0',
        'digitflow_registry_poll_errors_total{kind="scan"} 0.0',
    ):
        assert series in metrics, series
