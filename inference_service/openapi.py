"""The service's OpenAPI document, generated: each route declares itself once (``api.route`` on
its blueprint, ``api.add`` for the plain-WSGI predict and infer routes) with the pydantic models
of `inference_service.schemas`, and ``GET /openapi.json`` serves ``api.document()``.

``python -m inference_service.openapi`` prints it.
"""

from __future__ import annotations

import sys

import orjson

import shared
from shared.web.openapi import Answer, Api, Operation

api = Api(
    "digitflow inference",
    shared.__version__,
    "Serves the versioned models of the digitflow registry. **Predictions**: on a model's "
    "default route (the pinned or latest version, or a version of its traffic split, with a "
    "shadow version compared unseen after the answer) or on a named version (a number, latest, "
    "default or an alias), from V1 JSON, .npy arrays or PNG/JPEG pictures. **Explanations**: "
    "integrated-gradients attributions per pixel. **V2**: the Open Inference Protocol (KServe "
    "V2) REST API, with the binary tensor extension. **Listings**: models, their versions "
    "(status, metrics, aliases, live per-version and shadow figures), a version's manifest and "
    "its training report files. **Health**, readiness and Prometheus metrics; the web page and "
    "its static files; this OpenAPI document. New versions, pins, aliases, splits and shadows "
    "are picked up from the registry within a poll, no restart.",
)

#: Errors of a route that reads the registry: unknown name/version, broken version, outage.
REGISTRY_ERRORS = (404, 409, 503)

# Served by the web kit's serve_openapi (create_app).
api.add(
    Operation(
        method="GET",
        path="/openapi.json",
        summary="This document",
        responses={200: Answer("OpenAPI 3.1", content={"application/json": {"type": "object"}})},
    )
)


def main() -> None:
    # Run as __main__, this module is not the one the routes declared themselves with.
    import inference_service.app  # noqa: F401 - importing the routes declares them
    from inference_service.openapi import api as declared

    sys.stdout.buffer.write(orjson.dumps(declared.document(), option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
