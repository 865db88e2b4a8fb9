"""``python -m inference_service.openapi`` prints the service's OpenAPI document, the one
``GET /openapi.json`` serves: built from the route table (`inference_service.routes`) with the
pydantic models of `inference_service.schemas`, without building an app."""

from __future__ import annotations

import sys

import orjson

from inference_service.routes import build_api

if __name__ == "__main__":
    document = build_api().document()
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
