"""Trainer API registry routes (no Redis needed): pin/unpin, aliases, traffic split, shadow,
retention, listing, and their 404/409/422 answers; plus the OpenAPI document generated from the same route declarations."""

from __future__ import annotations

import pytest

from shared.config import TrainConfig
from shared.registry import ModelDetail, ModelList, ModelSummary
from trainer_service.sweeps.models import README_EXAMPLE


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
        {"name": "mnist", "versions": [1, 2, 3], "staged_versions": [], "latest_version": 3, "default_version": 3,
         "pinned_version": None, "aliases": {}, "traffic": None, "shadow": None, "keep_last": None}
    ]  # fmt: skip
    one = trainer_client.get("/v1/models/mnist").json
    ModelDetail.model_validate(one)
    assert set(one) == set(ModelDetail.model_fields)  # inference's detail adds its serving fields
    assert one["latest_version"] == 3 and one["history"] == []
    assert [v["version"] for v in one["versions"]] == [1, 2, 3]
    assert one["versions"][2]["default"] and one["versions"][0]["status"] == "ok"
    r = trainer_client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "model_not_found"
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
    # A missing version is the registry's answer, the same as inference gives (404).
    r = trainer_client.put("/v1/models/mnist/pin", json={"version": 9})
    assert r.status_code == 404 and r.json["error"]["code"] == "version_not_found"
    assert r.json["error"]["field"] == "version"
    (registry.root / "mnist" / "2" / "weights.npz").write_bytes(b"tampered")
    # A broken version: the registry's answer, the same as inference gives (409).
    for path in ("/v1/models/mnist/pin", "/v1/models/mnist/aliases/champion"):
        r = trainer_client.put(path, json={"version": 2})
        assert r.status_code == 409 and r.json["error"]["code"] == "version_broken", r.json
    assert registry.default_version("mnist") == 3 and registry.resolve("mnist", "latest") == 3
    r = trainer_client.put("/v1/models/ghost/pin", json={"version": 1})
    assert r.status_code == 404 and r.json["error"]["code"] == "model_not_found"
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
    r = trainer_client.delete("/v1/models/mnist/aliases/champion")
    assert r.status_code == 404 and r.json["error"]["field"] == "alias"
    r = trainer_client.put("/v1/models/mnist/aliases/champion", json={"version": 7})
    assert r.status_code == 404 and r.json["error"]["field"] == "version"


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
    schema = TrainConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, part in [*schema.pop("$defs").items(), ("TrainConfig", schema)]:
        assert doc["components"]["schemas"][name] == part
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
    assert len(served) == 23  # jobs 4, sweeps 5, models 12, health 2
    sweep_post = doc["paths"]["/v1/sweeps"]["post"]["requestBody"]["content"]["application/json"]
    assert sweep_post["examples"]["readme"]["value"] == README_EXAMPLE


def test_traffic_split_and_shadow_with_history(trainer_client, registry):
    trainer_client.put("/v1/models/mnist/aliases/champion", json={"version": 2})
    split = [{"version": "champion", "weight": 90}, {"version": 3, "weight": 10}]
    r = trainer_client.put("/v1/models/mnist/traffic", json={"routes": split})
    assert r.status_code == 200, r.json
    ModelSummary.model_validate(r.json)
    assert r.json["traffic"] == split and registry.state("mnist")["traffic"] == split
    r = trainer_client.put("/v1/models/mnist/shadow", json={"version": "champion"})
    assert r.status_code == 200 and r.json["shadow"] == {"version": "champion"}
    one = trainer_client.get("/v1/models/mnist").json
    assert one["traffic"] == split and one["shadow"] == {"version": "champion"}
    assert trainer_client.delete("/v1/models/mnist/traffic").json["traffic"] is None
    assert trainer_client.delete("/v1/models/mnist/shadow").json["shadow"] is None
    history = trainer_client.get("/v1/models/mnist").json["history"]
    got = [(h["action"], h["from"], h["to"]) for h in history[1:]]
    assert got == [
        ("traffic_set", None, split),
        ("shadow_set", None, "champion"),
        ("traffic_clear", split, None),
        ("shadow_clear", "champion", None),
    ]
    assert all(h["actor"].startswith("trainer-api") for h in history)


@pytest.mark.parametrize(
    ("routes", "field"),
    [
        ([{"version": 1, "weight": 90}], "routes"),  # sums to 90
        ([{"version": 1, "weight": 50}, {"version": 1, "weight": 50}], "routes"),
        ([], "routes"),
        ([{"version": 1, "weight": 101}], "routes[0].weight"),
        ([{"version": 0, "weight": 100}], "routes[0].version"),
        ([{"version": 1, "weight": True}], "routes[0].weight"),
        ([{"version": 1}], "routes[0].weight"),
        ([{"version": "latest", "weight": 100}], "routes[0].version"),
    ],
)
def test_bad_splits_are_422_naming_the_field(trainer_client, registry, routes, field):
    r = trainer_client.put("/v1/models/mnist/traffic", json={"routes": routes})
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"] == field
    assert registry.state("mnist")["traffic"] is None


@pytest.mark.parametrize(
    ("routes", "field"),
    [
        ([{"version": 1, "weight": 60}, {"version": 9, "weight": 40}], "routes[1].version"),
        ([{"version": 1, "weight": 60}, {"version": "nope", "weight": 40}], "routes[1].version"),
    ],
)
def test_splits_naming_missing_versions_are_404_naming_the_field(
    trainer_client, registry, routes, field
):
    """The registry resolves each route (the route does not pre-check): a version or alias that
    does not exist is its 404, the same status and code as inference gives for it."""
    r = trainer_client.put("/v1/models/mnist/traffic", json={"routes": routes})
    assert r.status_code == 404 and r.json["error"]["code"] == "version_not_found", r.json
    assert r.json["error"]["field"] == field
    assert registry.state("mnist")["traffic"] is None


def test_bad_shadows_and_broken_versions(trainer_client, registry):
    for body, status in (({"version": 9}, 404), ({"version": "nope"}, 404),
                         ({"version": -1}, 422), ({}, 422)):  # fmt: skip
        r = trainer_client.put("/v1/models/mnist/shadow", json=body)
        assert r.status_code == status and r.json["error"]["field"] == "version", r.json
    (registry.root / "mnist" / "2" / "weights.npz").write_bytes(b"tampered")
    r = trainer_client.put("/v1/models/mnist/shadow", json={"version": 2})
    assert r.status_code == 409
    r = trainer_client.put(
        "/v1/models/mnist/traffic", json={"routes": [{"version": 2, "weight": 100}]}
    )
    assert r.status_code == 409
    assert trainer_client.put("/v1/models/ghost/shadow", json={"version": 1}).status_code == 404
    state = registry.state("mnist")
    assert state["shadow"] is None and state["traffic"] is None


def test_retention_is_set_shown_and_cleared(trainer_client, registry):
    r = trainer_client.put("/v1/models/mnist/retention", json={"keep_last": 2})
    assert r.status_code == 200 and r.json["keep_last"] == 2, r.json
    ModelSummary.model_validate(r.json)
    assert registry.state("mnist")["keep_last"] == 2
    assert registry.versions("mnist") == [1, 2, 3], "applied after the next publish, not now"
    one = trainer_client.get("/v1/models/mnist").json
    assert one["keep_last"] == 2 and one["history"][-1]["action"] == "retention_set"
    assert trainer_client.get("/v1/models").json["models"][0]["keep_last"] == 2
    r = trainer_client.delete("/v1/models/mnist/retention")
    assert r.status_code == 200 and r.json["keep_last"] is None
    assert registry.state("mnist")["history"][-1]["action"] == "retention_clear"


@pytest.mark.parametrize(
    "body", [{}, {"keep_last": 0}, {"keep_last": -1}, {"keep_last": "2"}, {"keep_last": True},
             {"keep_last": 1.5}, {"keep_last": None}, {"keep_last": 2, "extra": 1}]
)  # fmt: skip
def test_retention_rejects_bad_bodies(trainer_client, registry, body):
    r = trainer_client.put("/v1/models/mnist/retention", json=body)
    assert r.status_code == 422, r.json
    if "extra" not in body:
        assert r.json["error"]["invalid_fields"] == ["keep_last"]
    assert registry.state("mnist")["keep_last"] is None
    r = trainer_client.put("/v1/models/ghost/retention", json={"keep_last": 2})
    assert r.status_code == 404 and r.json["error"]["code"] == "model_not_found"
