"""Each service's OpenAPI `info.description` says what the service does: every group of routes its
document holds is named there. The groups come from the document's own paths, so a new kind of
route without a word in the description (or in the table below) fails here."""

from __future__ import annotations

import re

import pytest

#: Route group (see `group`) → the words the description must hold for it, per service.
TRAINER_GROUPS = {
    "jobs": "training job",
    "sweeps": "sweeps",
    "report.png": "report PNG",
    "models": "list models and their versions",
    "pin": "pin the default version",
    "aliases": "aliases",
    "traffic": "split the default route's traffic",
    "shadow": "shadow version",
    "retention": "retention rule",
    "healthz": "health",
    "readyz": "readiness",
}
INFERENCE_GROUPS = {
    "predict": "predictions",
    "explain": "explanations",
    "feature-maps": "first filters and feature maps",
    "v2": "Open Inference Protocol (KServe V2)",
    "models": "listings: models",
    "versions": "a version's manifest",
    "report": "training report files",
    "healthz": "health",
    "readyz": "readiness",
    "metrics": "Prometheus metrics",
    "": "web page",
    "static": "static files",
    "openapi.json": "this OpenAPI document",
}


def group(path: str) -> str:
    """A path's route group: `v2` for the whole Open Inference Protocol, else the path's last
    fixed segment (`/v1/models/{name}/aliases/{alias}` → `aliases`, `/` → ``)."""
    if path == "/v2" or path.startswith("/v2/"):
        return "v2"
    fixed = [part for part in path.split("/") if part and not part.startswith("{")]
    return fixed[-1] if fixed and fixed[-1] != "v1" else ""


def check(doc: dict, groups: dict[str, str]) -> None:
    description = doc["info"]["description"]
    found = {group(path) for path in doc["paths"]}
    unknown = found - set(groups)
    assert not unknown, f"route groups {unknown} not described: name them in the description"
    plain = re.sub(r"\*\*", "", description).lower()
    for name in sorted(found):
        assert groups[name].lower() in plain, (name, groups[name], description)
    # Every group of the table is still routed: the table cannot keep dead entries.
    assert found == set(groups), set(groups) - found


def test_group_names_a_path_by_its_last_fixed_segment() -> None:
    assert group("/v1/models/{name}/aliases/{alias}") == "aliases"
    assert group("/v1/sweeps/{sweep_id}/report.png") == "report.png"
    assert group("/v2/models/{name}/versions/{ref}/infer") == "v2"
    assert group("/") == ""
    assert group("/v2") == "v2"


def test_the_trainer_description_names_every_route_group(trainer_client) -> None:
    check(trainer_client.get("/openapi.json").json, TRAINER_GROUPS)


def test_the_inference_description_names_every_route_group(inference_client) -> None:
    check(inference_client.get("/openapi.json").get_json(), INFERENCE_GROUPS)


def test_a_route_group_missing_from_the_description_fails() -> None:
    doc = {"info": {"description": "Jobs."}, "paths": {"/v1/jobs": {}, "/v1/widgets": {}}}
    with pytest.raises(AssertionError, match="widgets"):
        check(doc, {"jobs": "jobs"})
    with pytest.raises(AssertionError, match="pin"):
        check({**doc, "paths": {"/v1/models/{name}/pin": {}}}, {"pin": "pin the default"})
