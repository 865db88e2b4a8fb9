"""Fuzz every route of both services from the OpenAPI documents they serve at /openapi.json,
with every schemathesis phase, against real gunicorn processes.

The phases (`schemathesis run --phases examples,coverage,fuzzing,stateful`): the documents'
own examples; coverage (boundary values and every kind of schema violation, field by field);
fuzzing (Hypothesis-generated valid and invalid requests); stateful (sequences that follow the
links between operations, e.g. a queued job's id into GET/DELETE /v1/jobs/{job_id}). What is
checked on every response:

* not_a_server_error — never a 5xx;
* status_code_conformance — every status code answered is one the document declares for that
  operation, so an answer missing from the route's declaration fails (the README's table of the
  trainer's answers is held to the document by tests/unit/test_trainer_api_jobs.py);
* content_type_conformance — the Content-Type is one the document declares for that status;
* response_schema_conformance — the body matches the declared response schema;
* json_error_body (tests/reliability/fuzz_checks.py) — every error is
  ``{"error": {"code": str, "message": str, ...}}``;
* documented_json_is_accepted_as_well_formed (same file) — the document promises nothing the
  route refuses: a schema-valid JSON request is never a 400 (a 422 for what JSON Schema cannot
  say, e.g. a V2 tensor whose data does not fill its shape, is fine).

Bounded and reproducible: a fixed seed, a fixed number of examples per operation, a per-request
timeout, one worker. The test reads schemathesis's event log to prove each phase really ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from shared.registry import Registry
from tests import REPO_ROOT
from tests.service_support import inference_service, publish, trainer_api
from tests.trainer_support import delete_queue_keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHASES = ("examples", "coverage", "fuzzing", "stateful")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "json_error_body",
        "documented_json_is_accepted_as_well_formed",
    )
)
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 10  # seconds: a hang fails the run instead of stalling it
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    tmp = tmp_path_factory.mktemp("fuzz")
    registry = Registry(tmp / "models")
    registry.root.mkdir()
    assert publish(registry, tmp, seed=1) == 1  # something real behind the model routes
    assert publish(registry, tmp, seed=2) == 2
    registry.set_alias("digits", "champion", 1)
    return registry


def fuzz(base: str, out: Path) -> tuple[dict[str, str], int, str]:
    """Run schemathesis with every phase against `base`: (phase → status, cases, output)."""
    out.mkdir(parents=True, exist_ok=True)
    events = out / "events.ndjson"
    command = [
        str(SCHEMATHESIS), "run", f"{base}/openapi.json",
        "--phases", ",".join(PHASES),
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "1",
        "--request-timeout", str(REQUEST_TIMEOUT),
        "--workers", "1",
        "--no-shrink",
        "--no-color",
        "--generation-database", "none",
        "--report", "ndjson",
        "--report-ndjson-path", str(events),
    ]  # fmt: skip
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS="tests.reliability.fuzz_checks",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    run = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=out, timeout=600, check=False
    )
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert events.exists(), output
    phases: dict[str, str] = {}
    cases = 0
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if "PhaseFinished" in event:
            finished = event["PhaseFinished"]
            phases[finished["phase"]["name"]] = finished["status"]
        if "ScenarioFinished" in event:
            cases += len(event["ScenarioFinished"].get("recorder", {}).get("cases", {}))
    assert run.returncode == 0, output
    return phases, cases, output


def check_run(name: str, phases: dict[str, str], cases: int, output: str, minimum: int) -> None:
    print(f"\n{name} fuzz: {cases} cases; phases {phases}")
    for phase in PHASES:
        assert phases.get(phase) == "success", f"phase {phase}: {phases.get(phase)}\n{output}"
    assert cases >= minimum, output


def test_fuzz_inference(registry, tmp_path):
    with inference_service(registry.root, tmp_path) as svc:
        phases, cases, output = fuzz(svc.base, tmp_path / "st")
        log = svc.log(400)
    check_run("inference", phases, cases, output, minimum=300)
    assert "Traceback" not in log


def test_fuzz_trainer(registry, tmp_path, redis_url):
    queue = f"fuzz{uuid.uuid4().hex[:8]}"  # no worker listens: fuzzed jobs only ever queue
    try:
        with trainer_api(registry.root, tmp_path, redis_url, queue) as svc:
            phases, cases, output = fuzz(svc.base, tmp_path / "st")
            log = svc.log(400)
    finally:
        delete_queue_keys(redis_url, queue)
    check_run("trainer", phases, cases, output, minimum=150)
    assert "Traceback" not in log


def test_long_urls_are_answered_by_the_apps_in_json(registry, tmp_path, redis_url):
    """gunicorn's default request-line limit (4094) answered longer URLs itself, with an HTML 414
    (found by the trainer fuzz run: a 4,157-byte GET /v1/jobs); both configs raise it to gunicorn's
    maximum, 8190, so such URLs reach the app and get its JSON answers."""
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
