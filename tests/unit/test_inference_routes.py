"""The inference service's one route table (`inference_service.routes`): the app is built from it,
nothing registers itself at import time, and the document the CLI prints without an app is the
one the app serves."""

from __future__ import annotations

import subprocess
import sys

import orjson

from inference_service import routes


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
