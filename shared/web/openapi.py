"""Routes declared once: the Flask rule and its OpenAPI operation come from the same call.

    api = Api("digitflow trainer", "1.0")

    @api.route(bp, "POST", "/v1/jobs", body=TrainConfig, responses={202: JobAccepted},
               errors=(400, 413, 415, 422, 429, 503), summary="Queue a training job")
    def submit_job(): ...

`Api.document()` builds the OpenAPI 3.1 document with the schemas of the very pydantic models
that validate the requests. `Api.add` records an operation without a Flask view: a plain WSGI
route, or a table of (`Operation`, view) rows served by `shared.web.app.add_views` (inference).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

_PARAM = re.compile(r"{([a-z_]+)}")

ERROR_DESCRIPTIONS = {
    400: "Malformed request: unreadable body, wrong type, out-of-range value (the field is named)",
    401: "Missing or wrong bearer token",
    404: "Unknown model, version, alias, job or route",
    405: "Method not allowed",
    409: "Conflict with the current state (e.g. the version is broken)",
    413: "Body or batch too large",
    415: "Unsupported Content-Type",
    422: "Well-formed but invalid (every bad field is named)",
    429: "Too many queued jobs",
    503: "A backing store (Redis, the registry) is unavailable; retry shortly",
}


class ErrorDetail(BaseModel):
    """What went wrong; `field` names the offending input, `fields` every bad field."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of both services."""

    error: ErrorDetail


@dataclass(frozen=True)
class Answer:
    """A documented answer that is more than one JSON body: several media types (a JSON model or
    a binary alternative), response headers, or a body that is not JSON at all."""

    description: str
    #: Media type → response model or JSON schema.
    content: Mapping[str, type[BaseModel] | Mapping[str, Any]] = field(default_factory=dict)
    #: Response header → its description.
    headers: Mapping[str, str] = field(default_factory=dict)


Schema = type[BaseModel] | Mapping[str, Any] | str | Answer


@dataclass(frozen=True)
class Operation:
    """One documented route: method, OpenAPI path template, request and answers."""

    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    #: Request media types other than JSON (or JSON described by a plain schema) → schema.
    content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    query: type[BaseModel] | None = None
    #: Status → response model, a JSON schema, or a plain description.
    responses: Mapping[int, Schema] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    description: str = ""
    #: Named request bodies that work as written (documentation, and schemathesis's examples
    #: phase sends them), keyed by media type: ``{"application/json": {"small": {...}}}``.
    examples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flask_rule(self) -> str:
        return _PARAM.sub(r"<\1>", self.path)


class Api:
    """The operations of one service, and its document."""

    def __init__(self, title: str, version: str, description: str = "") -> None:
        self.title = title
        self.version = version
        self.description = description
        self.operations: list[Operation] = []

    def add(self, operation: Operation) -> None:
        self.operations.append(operation)

    def route(
        self, target: Blueprint | Flask, method: str, path: str, **spec: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the view on `target` for `method path` and document it."""
        op = Operation(method=method.upper(), path=path, **spec)

        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            target.add_url_rule(op.flask_rule, view_func=view, methods=[op.method])
            self.add(op)
            return view

        return register

    def document(self) -> dict[str, Any]:
        template = "#/components/schemas/{model}"
        refs, defs = models_json_schema(_models(self.operations), ref_template=template)
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": {"schemas": dict(defs.get("$defs", {}))},
        }


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], str]]:
    seen: dict[tuple[type[BaseModel], str], None] = {(ErrorBody, "serialization"): None}
    for op in operations:
        for model in (op.body, op.query):
            if model is not None:
                seen[(model, "validation")] = None
        for schema in op.responses.values():
            media = schema.content.values() if isinstance(schema, Answer) else (schema,)
            for one in media:
                if isinstance(one, type):
                    seen[(one, "serialization")] = None
    return list(seen)


def _operation(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    if op.description:
        out["description"] = op.description
    if op.tags:
        out["tags"] = list(op.tags)
    string = {"type": "string"}  # a path parameter's schema unless the operation names one
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": dict(op.path_params.get(n, string))}
        for n in _PARAM.findall(op.path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", ()))
        for n, prop in schema.get("properties", {}).items():
            params.append({"name": n, "in": "query", "required": n in required, "schema": prop})
    if params:
        out["parameters"] = params
    content: dict[str, Any] = {}
    if op.body is not None:
        content["application/json"] = {"schema": dict(refs[(op.body, "validation")])}
    for media, schema in op.content.items():
        content[media] = {"schema": dict(schema)}
    for media, named in op.examples.items():
        content[media]["examples"] = {name: {"value": value} for name, value in named.items()}
    if content:
        out["requestBody"] = {"required": True, "content": content}
    answers: dict[int, Answer] = {}
    for status, schema in op.responses.items():
        if isinstance(schema, str):
            schema = Answer(schema)
        elif not isinstance(schema, Answer):  # one JSON body, described by its model's docstring
            doc = schema.__doc__ if isinstance(schema, type) else None
            schema = Answer((doc or "OK").strip().splitlines()[0], {"application/json": schema})
        answers[status] = schema
    error = {"application/json": ErrorBody}
    answers |= {s: Answer(ERROR_DESCRIPTIONS.get(s, "Error"), error) for s in op.errors}
    out["responses"] = {str(status): _answer(answer, refs) for status, answer in answers.items()}
    return out


def _answer(answer: Answer, refs: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    if answer.content:
        out["content"] = {
            media: {"schema": dict(refs[(s, "serialization")] if isinstance(s, type) else s)}
            for media, s in answer.content.items()
        }
    return out


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]", "", op.path).strip("/").replace("/", "_").replace("-", "_")
    return f"{op.method.lower()}_{words or 'root'}"
