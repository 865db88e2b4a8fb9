"""API_TOKEN: mutating trainer routes need the bearer token, reads stay open, nothing leaks.
No Redis needed: a request that passes the check reaches its route, which answers 503 (the queue
is down) or from the registry; a refused one never gets that far."""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.trainer_support import SMALL
from trainer_service.settings import TrainerSettings

TOKEN = "s3cret-token-" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def one_version(registry, tmp_path):
    """mnist v1 in the registry, so the pin and alias routes have something to act on."""
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"fake weights")  # the registry only copies and hashes bytes
    registry.publish("mnist", weights, {})


@pytest.fixture
def guarded_client(make_trainer_client):
    """A trainer app whose mutating routes need the bearer token TOKEN."""
    return make_trainer_client(API_TOKEN=TOKEN)


MUTATIONS = [
    ("post", "/v1/jobs", SMALL),
    ("delete", f"/v1/jobs/{'0' * 32}", None),
    ("put", "/v1/models/mnist/pin", {"version": 1}),
    ("delete", "/v1/models/mnist/pin", None),
    ("put", "/v1/models/mnist/aliases/champion", {"version": 1}),
    ("delete", "/v1/models/mnist/aliases/champion", None),
    ("put", "/v1/models/mnist/traffic", {"routes": [{"version": 1, "weight": 100}]}),
    ("delete", "/v1/models/mnist/traffic", None),
    ("put", "/v1/models/mnist/shadow", {"version": 1}),
    ("delete", "/v1/models/mnist/shadow", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), MUTATIONS, ids=[f"{m}-{p}" for m, p, _ in MUTATIONS]
)
@pytest.mark.parametrize(  # ids without the (random) token: the same test ids on every run
    "header",
    [None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer ", f"bearer {TOKEN[:-1]}"],
    ids=["none", "wrong-token", "basic-scheme", "no-scheme", "empty-bearer", "truncated-token"],
)
def test_mutations_without_the_right_token_are_401(guarded_client, method, path, body, header):
    headers = {"Authorization": header} if header is not None else {}
    r = getattr(guarded_client, method)(path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.is_json and r.json["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in r.get_data(as_text=True)


def test_right_token_is_accepted_and_never_echoed(guarded_client, registry, caplog):
    caplog.set_level(logging.DEBUG)
    r = guarded_client.post("/v1/jobs", json=SMALL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 503  # past the check: the (dead) queue answered
    # The scheme is case-insensitive, as HTTP says.
    p = guarded_client.put(
        "/v1/models/mnist/pin", json={"version": 1}, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert p.status_code == 200 and registry.default_version("mnist") == 1
    assert TOKEN not in r.get_data(as_text=True) + p.get_data(as_text=True)
    assert TOKEN not in caplog.text


def test_reads_stay_open(guarded_client):
    assert guarded_client.get("/v1/models").status_code == 200
    assert guarded_client.get("/v1/models/mnist").status_code == 200
    assert guarded_client.get("/healthz").status_code == 200
    assert guarded_client.get("/openapi.json").status_code == 200
    assert guarded_client.get(f"/v1/jobs/{uuid.uuid4().hex}").status_code == 503  # not 401


def test_no_token_configured_means_open_mutations(make_trainer_client):
    for token in ("", None):
        assert (
            make_trainer_client(API_TOKEN=token)
            .put("/v1/models/mnist/pin", json={"version": 1})
            .status_code
            == 200
        )


def test_readyz_says_whether_writes_need_the_token(make_trainer_client, redis_url):
    """The page reads this before its first write, to ask for the token up front."""
    guarded = make_trainer_client(API_TOKEN=TOKEN, REDIS_URL=redis_url).get("/readyz")
    assert guarded.status_code == 200 and guarded.json["auth"] == "bearer"
    assert TOKEN not in guarded.get_data(as_text=True)
    open_ = make_trainer_client(REDIS_URL=redis_url).get("/readyz")
    assert open_.status_code == 200 and open_.json["auth"] == "none"


def test_settings_never_show_the_token(monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    settings = TrainerSettings.load()
    assert settings.token() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
