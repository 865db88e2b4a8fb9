"""Trainer job routes without Redis: everything refused at the edge (config validation, media
types, malformed ids, bad filters and idempotency keys) is answered before Redis is touched, and a
Redis outage is a 503 JSON answer. The routes that need a real Redis are in
tests/integration/test_trainer_api_queue.py."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from shared.config import TrainConfig
from tests.trainer_support import SMALL


def submit(client, body=None, **headers):
    return client.post("/v1/jobs", json=SMALL if body is None else body, headers=headers)


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ({"epochs": 2, "bogus": 1}, ["bogus"]),
        ({"hidden_layers": [0], "learning_rate": -1}, ["hidden_layers", "learning_rate"]),
        ({"optimizer": "adagrad", "dataset": "cifar"}, ["dataset", "optimizer"]),
        ({"model": "../etc", "epochs": "many"}, ["epochs", "model"]),
        ({"preset": "turbo"}, ["preset"]),
        ({"dropout": 1.5, "batch_size": -1}, ["batch_size", "dropout"]),
    ],
)
def test_invalid_fields_are_each_named_with_422(trainer_client, body, bad):
    r = submit(trainer_client, body)
    assert r.status_code == 422
    error = r.json["error"]
    assert error["code"] == "invalid_config"
    assert error["invalid_fields"] == bad
    assert {f["field"].split("[")[0] for f in error["fields"]} == set(bad)
    assert error["field"] in {f["field"] for f in error["fields"]}
    assert error["message"].startswith("invalid training config: ")
    if "bogus" in bad:
        assert any(f["message"] == "unknown field" for f in error["fields"])


@pytest.mark.parametrize("field", sorted(TrainConfig.model_fields))
@pytest.mark.parametrize("value", [["best"], {"a": 1}, [[1]]])
def test_a_wrong_json_type_in_any_field_is_422_naming_it(trainer_client, field, value):
    """Never a 500, whatever type a field gets (e.g. a preset given as a list)."""
    r = submit(trainer_client, {field: value})
    assert r.status_code == 422, r.json
    assert r.json["error"]["invalid_fields"] == [field]


def test_wrong_content_type_malformed_json_and_non_objects(trainer_client):
    r = trainer_client.post("/v1/jobs", data="epochs=2", content_type="text/plain")
    assert r.status_code == 415 and "application/json" in r.json["error"]["message"]
    r = trainer_client.post("/v1/jobs", data={"epochs": "2"})  # a form
    assert r.status_code == 415
    r = trainer_client.post("/v1/jobs", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.json["error"]["code"] == "bad_request"
    r = trainer_client.post("/v1/jobs", json=[1, 2])
    assert r.status_code == 422 and "JSON object" in r.json["error"]["message"]
    r = trainer_client.post(
        "/v1/jobs", data="x" * (2 * 1024 * 1024), content_type="application/json"
    )
    assert r.status_code == 413 and r.is_json


@pytest.mark.parametrize("job_id", ["abc", "A" * 32, "g" * 32, "a" * 33, "..%2F..%2Fetc"])
def test_malformed_job_ids_are_404_without_echo(trainer_client, job_id):
    for method in ("get", "delete"):
        r = getattr(trainer_client, method)(f"/v1/jobs/{job_id}")
        assert r.status_code == 404 and r.is_json
        assert job_id not in r.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bogus", "status"), ("status=queued,nope", "status"), ("limit=0", "limit"),
     ("limit=abc", "limit"), ("limit=100000", "limit")],
)  # fmt: skip
def test_list_rejects_bad_filters(trainer_client, query, field):
    r = trainer_client.get(f"/v1/jobs?{query}")
    assert r.status_code == 422 and r.json["error"]["invalid_fields"] == [field]
    if field == "status":
        assert "use one of queued, started" in r.json["error"]["message"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
def test_bad_idempotency_keys_are_400(trainer_client, key):
    r = trainer_client.post(
        "/v1/jobs", data=json.dumps(SMALL).encode(), headers={"Idempotency-Key": key},
        content_type="application/json",
    )  # fmt: skip
    assert r.status_code == 400, r.json


def test_redis_down_is_503_json_with_retry_after(trainer_client):
    job_id = uuid.uuid4().hex
    calls = [
        trainer_client.post("/v1/jobs", json=SMALL),
        trainer_client.get(f"/v1/jobs/{job_id}"),
        trainer_client.get("/v1/jobs"),
        trainer_client.delete(f"/v1/jobs/{job_id}"),
        trainer_client.get("/readyz"),
    ]
    for r in calls:
        assert r.status_code == 503, r.json
        assert r.json["error"]["code"] == "unavailable"
        assert "Redis" in r.json["error"]["message"] and r.headers["Retry-After"]
    assert trainer_client.get("/healthz").json == {"status": "ok"}
    assert trainer_client.get("/v1/models").status_code == 200  # the registry needs no Redis


def _readme_table(section: str, header: str) -> list[list[str]]:
    """The rows of the README table under `header` (its first row), as lists of cells."""
    lines = section[section.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_readme_lists_every_status_and_answer_of_the_job_sweep_and_model_routes(
    trainer_client,
):
    """The README's trainer tables and the OpenAPI document (which the fuzz test holds the
    service to) name the same statuses and, route by route, the same answers."""
    from tests import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("#### Statuses and answers") : readme.index("#### Sweeps")]
    doc = trainer_client.get("/openapi.json").json
    schemas = doc["components"]["schemas"]

    statuses = [row[0].strip("`") for row in _readme_table(section, "| status | meaning |")]
    stopping = schemas["JobStopping"]["properties"]["status"]["const"]
    assert statuses == [*schemas["PublicStatus"]["enum"], stopping]
    assert schemas["JobSummary"]["properties"]["status"] == {
        "$ref": "#/components/schemas/PublicStatus"
    }
    for name in ("SweepStatus", "TrialStatus"):
        for status in schemas[name]["enum"]:
            assert f"`{status}`" in section, (name, status)

    answers = {}
    for route, cell in _readme_table(section, "| route | answers |"):
        for one in route.split(", "):
            method, path = one.strip("`").split(" ")
            answers[(method.lower(), re.sub(r"<[a-z_]+>", "{}", path))] = sorted(
                re.findall(r"(?:^|· )(\d{3})\b", cell)
            )
    documented = {
        (method, re.sub(r"{[a-z_]+}", "{}", path)): sorted(op["responses"])
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if set(op.get("tags", ())) & {"jobs", "sweeps", "models"}
    }
    assert answers == documented
