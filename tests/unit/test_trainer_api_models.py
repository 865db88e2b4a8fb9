"""Trainer API registry routes (no Redis needed): pin/unpin, aliases, listing, and their
404/409/422 answers; plus the OpenAPI document generated from the same route declarations."""

from __future__ import annotations

import pytest

from shared.config import TrainConfig
from trainer_service.routes_models import ModelDetail, ModelList, ModelSummary


@pytest.fixture(autouse=True)
def three_versions(registry, tmp_path):
    """mnist v1, v2, v3 in the registry (trainer_client's Redis is dead: registry routes never
    touch it)."""
    weights = tmp_path / "w.npz"
    for i in range(3):
        weights.write_bytes(b"fake weights %d" % i)  # the registry only copies and hashes bytes
        registry.publish("mnist", weights, {"job_id": f"job{i}"})


def test_list_and_show_models(trainer_client):
    listing = trainer_client.get("/v1/models").json
    ModelList.model_validate(listing)  # what the OpenAPI document promises
    models = listing["models"]
    assert models == [
        {"name": "mnist", "versions": [1, 2, 3], "latest_version": 3, "default_version": 3,
         "pinned_version": None, "aliases": {}}
    ]  # fmt: skip
    one = trainer_client.get("/v1/models/mnist").json
    ModelDetail.model_validate(one)
    assert one["latest_version"] == 3 and one["history"] == []
    assert trainer_client.get("/v1/models/nope").status_code == 404
    assert trainer_client.get("/v1/models/..").status_code == 404


def test_pin_and_unpin(trainer_client, registry):
    r = trainer_client.put("/v1/models/mnist/pin", json={"version": 1})
    assert r.status_code == 200, r.json
    assert r.json["default_version"] == 1 and r.json["pinned_version"] == 1
    ModelSummary.model_validate(r.json)
    assert registry.default_version("mnist") == 1
    history = trainer_client.get("/v1/models/mnist").json["history"]
    assert history[-1]["action"] == "pin" and history[-1]["to"] == 1
    assert history[-1]["actor"].startswith("trainer-api")

    r = trainer_client.delete("/v1/models/mnist/pin")
    assert r.status_code == 200 and r.json["default_version"] == 3
    assert r.json["pinned_version"] is None


@pytest.mark.parametrize(
    "body", [{}, {"version": 0}, {"version": -1}, {"version": "2"}, {"version": True},
             {"version": 1.5}, {"version": 2, "extra": 1}, [2]]
)  # fmt: skip
def test_pin_rejects_bad_bodies(trainer_client, body):
    r = trainer_client.put("/v1/models/mnist/pin", json=body)
    assert r.status_code == 422, r.json
    if isinstance(body, dict) and body != {"version": 2, "extra": 1}:
        assert r.json["error"]["invalid_fields"] == ["version"]


def test_pin_rejects_missing_broken_and_unknown(trainer_client, registry):
    r = trainer_client.put("/v1/models/mnist/pin", json={"version": 9})
    assert r.status_code == 422 and r.json["error"]["versions"] == [1, 2, 3]
    assert r.json["error"]["field"] == "version"
    (registry.root / "mnist" / "2" / "weights.npz").write_bytes(b"tampered")
    # A broken version: the registry's answer, the same as inference gives (409).
    for path in ("/v1/models/mnist/pin", "/v1/models/mnist/aliases/champion"):
        r = trainer_client.put(path, json={"version": 2})
        assert r.status_code == 409 and r.json["error"]["code"] == "version_broken", r.json
    assert registry.default_version("mnist") == 3 and registry.resolve("mnist", "latest") == 3
    assert trainer_client.put("/v1/models/ghost/pin", json={"version": 1}).status_code == 404
    assert trainer_client.put("/v1/models/BAD NAME/pin", json={"version": 1}).status_code == 404
    assert trainer_client.delete("/v1/models/ghost/pin").status_code == 404
    r = trainer_client.put("/v1/models/mnist/pin", data="2", content_type="text/plain")
    assert r.status_code == 415


def test_aliases(trainer_client, registry):
    r = trainer_client.put("/v1/models/mnist/aliases/champion", json={"version": 2})
    assert r.status_code == 200 and r.json["aliases"] == {"champion": 2}
    assert registry.resolve("mnist", "champion") == 2
    r = trainer_client.put("/v1/models/mnist/aliases/champion", json={"version": 3})
    assert r.json["aliases"] == {"champion": 3}
    r = trainer_client.delete("/v1/models/mnist/aliases/champion")
    assert r.status_code == 200 and r.json["aliases"] == {}
    assert trainer_client.delete("/v1/models/mnist/aliases/champion").status_code == 404
    assert (
        trainer_client.put("/v1/models/mnist/aliases/champion", json={"version": 7}).status_code
        == 422
    )


@pytest.mark.parametrize("alias", ["123", "latest", "default", "Bad", "-x"])
def test_invalid_aliases_are_422(trainer_client, alias):
    r = trainer_client.put(f"/v1/models/mnist/aliases/{alias}", json={"version": 1})
    assert r.status_code == 422, r.json
    assert r.json["error"]["invalid_fields"] == ["alias"]


def test_openapi_document_and_url_map_agree(trainer_client):
    """Every served route is documented with its method, and every documented operation is
    served: both come from the same `api.route` declarations."""
    doc = trainer_client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["schemas"]["TrainConfig"] == TrainConfig.model_json_schema()
    post = doc["paths"]["/v1/jobs"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TrainConfig"
    }
    served = set()
    for rule in trainer_client.application.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method.lower(), path))
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert len(served) == 12  # jobs 4, models 6, health 2
