"""Fuzz every route of both services from the OpenAPI documents they serve at /openapi.json
(schemathesis), against real gunicorn processes: no 500, no hang, every error a JSON body.

Bounded: a fixed number of examples per operation, a per-request timeout, no Hypothesis deadline
(a request's time is the server's, not the generator's). Both schema-valid ("positive") and
schema-violating ("negative") inputs are sent. What is checked on every response:

* not_a_server_error — never a 5xx;
* content_type_conformance — the Content-Type is one the document declares for that status;
* response_schema_conformance — the body matches the declared response schema (where declared);
* json_error_body (ours) — every 4xx is `{"error": {"code": str, "message": str, ...}}`.

Known, legitimate 4xx answers to schema-valid requests (a blank picture is 422, a V2 tensor whose
data does not fill its shape is 422, a fuzzed model name is 404) are fine: only the checks above
apply, not "a valid request must succeed".
"""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from shared.registry import Registry
from tests.service_support import inference_service, publish, trainer_api
from tests.trainer_support import delete_queue_keys

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 10  # seconds: a hang fails the test instead of stalling it


def json_error_body(ctx, response, case) -> None:
    """Every error answer is a JSON object {"error": {"code", "message"}}."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} with Content-Type {content_type!r}"
    )
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"error body is not {{'error': {{...}}}}: {body!r}"
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body


CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as found
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    tmp = tmp_path_factory.mktemp("fuzz")
    registry = Registry(tmp / "models")
    registry.root.mkdir()
    assert publish(registry, tmp, seed=1) == 1  # something real behind the model routes
    assert publish(registry, tmp, seed=2) == 2
    registry.set_alias("digits", "champion", 1)
    return registry


def fuzz(base: str) -> tuple[int, list[str]]:
    """Run every operation of the document served at `base` in both generation modes.

    (schemathesis's own pytest integration, `from_fixture`, does not run on pytest 9.2, so the
    operations' Hypothesis strategies are driven directly.) Returns (cases sent, failures).
    """
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=10)
    schema.config.update(base_url=base, request_timeout=REQUEST_TIMEOUT)
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @SETTINGS
            def run(case) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(
                    checks=CHECKS, additional_checks=[json_error_body], timeout=REQUEST_TIMEOUT
                )

            try:
                run()
            except Unsatisfiable:  # nothing to violate: no parameters, no body
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # one failure must not hide others
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    return sent, failures


def test_fuzz_inference(registry, tmp_path):
    with inference_service(registry.root, tmp_path) as svc:
        sent, failures = fuzz(svc.base)
        log = svc.log(400)
    print(f"\ninference fuzz: {sent} cases")
    assert not failures, "\n\n".join(failures)
    assert sent > 300
    assert "Traceback" not in log


def test_fuzz_trainer(registry, tmp_path, redis_url):
    queue = f"fuzz{uuid.uuid4().hex[:8]}"  # no worker listens: fuzzed jobs only ever queue
    try:
        with trainer_api(registry.root, tmp_path, redis_url, queue) as svc:
            sent, failures = fuzz(svc.base)
            log = svc.log(400)
    finally:
        delete_queue_keys(redis_url, queue)
    print(f"\ntrainer fuzz: {sent} cases")
    assert not failures, "\n\n".join(failures)
    assert sent > 150
    assert "Traceback" not in log


def test_long_urls_are_answered_by_the_apps_in_json(registry, tmp_path, redis_url):
    """gunicorn's default request-line limit (4094) answered longer URLs itself, with an HTML 414
    (found by the trainer fuzz run: a 4,157-byte GET /v1/jobs); both configs raise it to gunicorn's
    maximum, 8190, so such URLs reach the app and get its JSON answers."""
    import requests

    long_query = "?filter=" + "x" * 6000
    queue = f"fuzz{uuid.uuid4().hex[:8]}"
    try:
        with (
            inference_service(registry.root, tmp_path) as inf,
            trainer_api(registry.root, tmp_path, redis_url, queue) as tr,
        ):
            for url in (f"{inf.base}/v1/models{long_query}", f"{tr.base}/v1/jobs{long_query}"):
                resp = requests.get(url, timeout=10)
                assert resp.status_code != 414, url[:60]
                assert resp.headers["Content-Type"].startswith("application/json"), resp.text[:200]
                resp.json()
    finally:
        delete_queue_keys(redis_url, queue)
