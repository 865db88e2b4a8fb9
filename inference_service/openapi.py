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
    "Predictions from the versioned model registry (V1 JSON, .npy, pictures; Open Inference "
    "Protocol V2 with the binary tensor extension), model listing, training reports, health.",
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
