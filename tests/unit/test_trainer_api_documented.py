"""Every trainer test client (tests.trainer_support.DocumentedClient) holds each JSON answer to
the OpenAPI document: here, that the check passes the real answers and fails an answer whose body
its documented response model does not describe (a property it does not name, a wrong type, a
missing field). The job and sweep routes are held to it by the integration tests that call them
(tests/integration/test_trainer_api_queue.py, test_trainer_worker.py, test_sweeps.py)."""

from __future__ import annotations

import json

import pytest

from tests.trainer_support import DEAD_REDIS, trainer_app


def _client_answering(registry, healthz_body=None):
    """A trainer test client whose /healthz answers `healthz_body` instead of its own."""
    app = trainer_app(
        {"REDIS_URL": DEAD_REDIS, "MODEL_REGISTRY_DIR": str(registry.root), "API_TOKEN": ""}
    )
    if healthz_body is not None:

        @app.after_request
        def _replace(response):
            if response.status_code == 200 and response.is_json:
                response.set_data(json.dumps(healthz_body))
            return response

    return app.test_client()


def test_the_real_answers_are_documented(registry, trainer_client):
    assert trainer_client.get("/healthz").json == {"status": "ok"}
    assert trainer_client.get("/readyz").status_code == 503  # the error body, documented too
    assert trainer_client.get("/v1/models").json == {"models": []}
    assert trainer_client.get("/v1/models/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"status": "ok", "uptime": 3}, "'uptime' was unexpected"),
        ({"status": 1}, "1 is not of type 'string'"),
        ({}, "'status' is a required property"),
    ],
)
def test_a_body_its_model_does_not_describe_fails(registry, body, complaint):
    client = _client_answering(registry, body)
    with pytest.raises(AssertionError, match="undocumented body") as failed:
        client.get("/healthz")
    assert complaint in str(failed.value)
