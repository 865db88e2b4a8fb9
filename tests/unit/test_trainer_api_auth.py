"""API_TOKEN: mutating trainer routes need the bearer token, reads stay open, nothing leaks."""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.trainer_support import delete_queue_keys
from trainer_service.api import create_app

TOKEN = "s3cret-token-" + uuid.uuid4().hex
SMALL = {"hidden_layers": [32], "epochs": 2, "train_limit": 2000}


@pytest.fixture
def client(redis_url, unique_name, tmp_path):
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "RQ_QUEUE": unique_name,
            "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
            "API_TOKEN": TOKEN,
        }
    )
    yield app.test_client()
    delete_queue_keys(redis_url, unique_name)


MUTATIONS = [
    ("post", "/v1/jobs", SMALL),
    ("delete", f"/v1/jobs/{uuid.uuid4().hex}", None),
    ("put", "/v1/models/mnist/pin", {"version": 1}),
    ("delete", "/v1/models/mnist/pin", None),
    ("put", "/v1/models/mnist/aliases/champion", {"version": 1}),
    ("delete", "/v1/models/mnist/aliases/champion", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
@pytest.mark.parametrize(
    "header",
    [None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", f"bearer {TOKEN[:-1]}"],
)
def test_mutations_without_the_right_token_are_401(client, method, path, body, header):
    headers = {"Authorization": header} if header is not None else {}
    r = getattr(client, method)(path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.is_json and r.json["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in r.get_data(as_text=True)


def test_right_token_is_accepted_and_never_echoed(client, caplog):
    caplog.set_level(logging.DEBUG)
    r = client.post("/v1/jobs", json=SMALL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202
    # The scheme is case-insensitive, as HTTP says.
    job_id = r.json["job_id"]
    d = client.delete(f"/v1/jobs/{job_id}", headers={"Authorization": f"bearer {TOKEN}"})
    assert d.status_code == 200
    assert TOKEN not in r.get_data(as_text=True) + d.get_data(as_text=True)
    assert TOKEN not in caplog.text


def test_reads_stay_open(client):
    r = client.post("/v1/jobs", json=SMALL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert client.get(f"/v1/jobs/{r.json['job_id']}").status_code == 200
    assert client.get("/v1/jobs").status_code == 200
    assert client.get("/v1/models").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_no_token_configured_means_open_mutations(redis_url, unique_name, tmp_path):
    app = create_app(
        {"REDIS_URL": redis_url, "RQ_QUEUE": unique_name, "API_TOKEN": "",
         "MODEL_REGISTRY_DIR": str(tmp_path / "models")}
    )  # fmt: skip
    try:
        assert app.test_client().post("/v1/jobs", json=SMALL).status_code == 202
    finally:
        delete_queue_keys(redis_url, unique_name)


def test_settings_repr_hides_the_token(client):
    from trainer_service.web import Settings

    settings = Settings.load({"API_TOKEN": TOKEN})
    assert TOKEN not in repr(settings)
