"""JSON responses, serialised with orjson (NumPy arrays included, no Python round trip)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response
from pydantic import BaseModel

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
#: The response header naming the model version that answered.
MODEL_VERSION = "X-Model-Version"


def dumps(payload: Any) -> bytes:
    """orjson for speed; the stdlib for what orjson refuses (ints beyond 64 bits in a manifest
    someone published by hand) so odd registry content can never turn into a 500."""
    try:
        return orjson.dumps(payload, option=_JSON_OPTS)
    except TypeError:
        return json.dumps(payload, default=str, allow_nan=False).encode()


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(dumps(payload), status, headers, mimetype="application/json")


def answer(view: BaseModel, status: int = 200, *, exclude_unset: bool = False) -> Response:
    """A documented answer (its response model, the one the route table declares) as JSON.
    `exclude_unset`: the optional fields the handler left unset, because they do not apply (a
    ready worker's ``reason``), are left out rather than sent as null. The predict and explain
    answers skip this (and pydantic): their arrays go straight from NumPy to orjson."""
    return json_response(view.model_dump(mode="json", exclude_unset=exclude_unset), status)
