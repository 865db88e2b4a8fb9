"""The inference service's one route table (`inference_service.routes`): the app is built from it,
nothing registers itself at import time, and the document the CLI prints without an app is the
one the app serves."""

from __future__ import annotations

import subprocess
import sys

import orjson
from pydantic import BaseModel

from inference_service import routes
from shared.web.openapi import Answer, Operation
from tests.service_support import TINY_CNN, publish


def test_the_cli_prints_the_served_document_without_importing_the_app(inference_client) -> None:
    """``python -m inference_service.openapi`` builds the document from the table alone (no
    import of the app back into a cycle), the very document ``GET /openapi.json`` serves, its
    paths in the table's order."""
    script = (
        "import runpy, sys\n"
        "runpy.run_module('inference_service.openapi', run_name='__main__')\n"
        "assert 'inference_service.app' not in sys.modules, 'the CLI imported the app'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    served = inference_client.get("/openapi.json").get_json()
    assert orjson.loads(done.stdout) == served
    assert list(served["paths"]) == list(dict.fromkeys(r.operation.path for r in routes.ROUTES))


def test_every_app_is_built_from_the_table_alone(make_inference_app) -> None:
    """Two apps in one process serve exactly the table's Flask views once each (nothing
    accumulates in a module global between them), plus the kit's document and Flask's static
    files, which the table documents without a view."""
    expected = sorted(
        [(op.flask_rule, op.method) for op, _ in routes.VIEWS]
        + [("/openapi.json", "GET"), ("/static/<path:filename>", "GET")]
    )
    unserved = sorted(r.operation.path for r in routes.ROUTES if r.serve is None)
    assert unserved == ["/openapi.json", "/static/{filename}"]
    for _ in range(2):
        app = make_inference_app()
        served = sorted(
            (rule.rule, method)
            for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}
        )
        assert served == expected


def _json_models(operation: Operation) -> dict[int, type[BaseModel]]:
    """Status → the response model the route documents for a JSON answer."""
    out = {}
    for status, spec in operation.responses.items():
        if isinstance(spec, Answer):
            spec = spec.content.get("application/json")
        if isinstance(spec, type) and issubclass(spec, BaseModel):
            out[status] = spec
    return out


def test_every_json_answer_is_what_its_model_documents(make_inference_app, registry, tmp_path):
    """Each route of the table that documents a JSON model answers exactly that model: its body,
    validated by the model and dumped again (the fields sent, no others), is the body sent. A key
    the model does not declare, a value of another type (a number where it promises a string) or
    a missing required field fails here — schemathesis's response check (tests/reliability) lets
    undeclared keys through, as the document allows them. The predict, infer, explain and feature
    maps routes are called with the document's own examples (version 1 is convolutional); every (route, status) documented with a model is
    answered at least once (503: the readiness routes on an empty registry)."""
    checked = set()
    for published in (False, True):
        if published:
            publish(registry, tmp_path, seed=1, network=TINY_CNN)  # a version with feature maps
            publish(registry, tmp_path, seed=2)
        client = make_inference_app().test_client()
        for route in routes.ROUTES:
            op, models = route.operation, _json_models(route.operation)
            if not models:
                continue
            path = op.path.format(name="digits", ref="1")
            examples = list(op.examples.get("application/json", {}).values()) or [None]
            for body in examples:
                resp = client.open(path, method=op.method, json=body)
                if not published and resp.status_code == 404:
                    continue  # no model yet: an error, the error shape is checked elsewhere
                assert resp.status_code in models, (path, resp.status_code, resp.data[:300])
                sent = resp.get_json()
                model = models[resp.status_code]
                again = model.model_validate(sent).model_dump(mode="json", exclude_unset=True)
                assert again == sent, (path, model.__name__)
                checked.add((op.method, op.path, resp.status_code))
    documented = {
        (r.operation.method, r.operation.path, status)
        for r in routes.ROUTES
        for status in _json_models(r.operation)
    }
    assert checked == documented
