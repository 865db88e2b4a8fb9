"""Trainer API registry routes: pin/unpin, aliases, listing, and their 404/422 answers;
plus the OpenAPI document staying in step with the app and TrainConfig."""

from __future__ import annotations

import json

import pytest

from shared.config import TrainConfig
from shared.registry import Registry
from trainer_service.api import OPENAPI_PATH, create_app


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path / "models")
    weights = tmp_path / "w.npz"
    for i in range(3):
        weights.write_bytes(b"fake weights %d" % i)  # the registry only copies and hashes bytes
        reg.publish("mnist", weights, {"job_id": f"job{i}"})
    return reg


@pytest.fixture
def client(registry, tmp_path):
    # Registry routes never touch Redis: point at a dead port to prove it.
    app = create_app(
        {"MODEL_REGISTRY_DIR": str(registry.root), "REDIS_URL": "redis://127.0.0.1:9/0",
         "API_TOKEN": ""}
    )  # fmt: skip
    return app.test_client()


def test_list_and_show_models(client):
    models = client.get("/v1/models").json["models"]
    assert models == [
        {"name": "mnist", "versions": [1, 2, 3], "latest_version": 3, "default_version": 3,
         "pinned_version": None, "aliases": {}}
    ]  # fmt: skip
    one = client.get("/v1/models/mnist").json
    assert one["latest_version"] == 3 and one["history"] == []
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/models/..").status_code == 404


def test_pin_and_unpin(client, registry):
    r = client.put("/v1/models/mnist/pin", json={"version": 1})
    assert r.status_code == 200, r.json
    assert r.json["default_version"] == 1 and r.json["pinned_version"] == 1
    assert registry.default_version("mnist") == 1
    history = client.get("/v1/models/mnist").json["history"]
    assert history[-1]["action"] == "pin" and history[-1]["to"] == 1
    assert history[-1]["actor"].startswith("trainer-api")

    r = client.delete("/v1/models/mnist/pin")
    assert r.status_code == 200 and r.json["default_version"] == 3
    assert r.json["pinned_version"] is None


@pytest.mark.parametrize(
    "body", [{}, {"version": 0}, {"version": -1}, {"version": "2"}, {"version": True},
             {"version": 1.5}, {"version": 2, "extra": 1}, [2]]
)  # fmt: skip
def test_pin_rejects_bad_bodies(client, body):
    r = client.put("/v1/models/mnist/pin", json=body)
    assert r.status_code == 422, r.json


def test_pin_rejects_missing_broken_and_unknown(client, registry):
    r = client.put("/v1/models/mnist/pin", json={"version": 9})
    assert r.status_code == 422 and r.json["error"]["versions"] == [1, 2, 3]
    (registry.root / "mnist" / "2" / "weights.npz").write_bytes(b"tampered")
    r = client.put("/v1/models/mnist/pin", json={"version": 2})
    assert r.status_code == 422 and "broken" in r.json["error"]["message"]
    assert client.put("/v1/models/ghost/pin", json={"version": 1}).status_code == 404
    assert client.put("/v1/models/BAD NAME/pin", json={"version": 1}).status_code == 404
    assert client.delete("/v1/models/ghost/pin").status_code == 404
    r = client.put("/v1/models/mnist/pin", data="2", content_type="text/plain")
    assert r.status_code == 415


def test_aliases(client, registry):
    r = client.put("/v1/models/mnist/aliases/champion", json={"version": 2})
    assert r.status_code == 200 and r.json["aliases"] == {"champion": 2}
    assert registry.resolve("mnist", "champion") == 2
    r = client.put("/v1/models/mnist/aliases/champion", json={"version": 3})
    assert r.json["aliases"] == {"champion": 3}
    r = client.delete("/v1/models/mnist/aliases/champion")
    assert r.status_code == 200 and r.json["aliases"] == {}
    assert client.delete("/v1/models/mnist/aliases/champion").status_code == 404
    assert client.put("/v1/models/mnist/aliases/champion", json={"version": 7}).status_code == 422


@pytest.mark.parametrize("alias", ["123", "latest", "default", "Bad", "-x"])
def test_invalid_aliases_are_422(client, alias):
    r = client.put(f"/v1/models/mnist/aliases/{alias}", json={"version": 1})
    assert r.status_code == 422, r.json
    assert r.json["error"]["invalid_fields"] == ["alias"]


def test_openapi_documents_every_route_and_the_current_trainconfig(client):
    doc = client.get("/openapi.json").json
    assert doc["paths"] == json.loads(OPENAPI_PATH.read_text())["paths"]
    assert doc["components"]["schemas"]["TrainConfig"] == TrainConfig.model_json_schema()
    app = create_app({"REDIS_URL": "redis://127.0.0.1:9/0"})
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in doc["paths"], f"{path} is not in openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], f"{method} {path} undocumented"
