"""Request bodies: JSON objects read once, pydantic errors turned into answers one way.

The same `field_errors` feeds the HTTP 422 (`validation_error`) and the command line's message
(`describe`), so a bad setting is named the same way everywhere.
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson
from pydantic import ValidationError

from shared.fieldpath import field_path, top_field
from shared.web.errors import ApiError


class FieldError(TypedDict):
    field: str
    message: str
    type: str


def field_errors(exc: ValidationError, *, show_input: bool = False) -> list[FieldError]:
    """Every bad field of `exc`, with a readable message ("unknown field" for extra ones).
    `show_input` adds the offending scalar value (``(got 'x')``): for a terminal, where the
    user sees their own input; HTTP answers never echo it."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=show_input):
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        elif show_input and err.get("type") != "missing" and "input" in err:
            value = err["input"]
            if not isinstance(value, dict | list | tuple):
                message += f" (got {value!r})"
        field = field_path(err.get("loc", ())) or "(body)"
        out.append({"field": field, "message": message, "type": err["type"]})
    return out


def validation_error(
    exc: ValidationError, what: str, *, status: int = 422, code: str = "invalid_field"
) -> ApiError:
    """An answer naming every bad field: `field` is the first, `fields` all of them."""
    fields = field_errors(exc)
    names = sorted({top_field(f["field"]) for f in fields})
    first = fields[0] if fields else {"field": None, "message": "invalid"}
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    message = f"invalid {what}: {first['field']}: {first['message']}{more}"
    return ApiError(
        status, message, code=code, field=first["field"], fields=fields, invalid_fields=names
    )


def describe(exc: ValidationError, rename: dict[str, str] | None = None) -> str:
    """One line for a terminal: ``invalid --epochs: Input should be ...; invalid --lr: ...``.
    `rename` maps a field's first path segment to what the user typed (a CLI option)."""
    parts = []
    for f in field_errors(exc, show_input=True):
        head = top_field(f["field"])
        shown = (rename or {}).get(head, head) + f["field"].removeprefix(head)
        parts.append(f"invalid {shown}: {f['message']}")
    return "; ".join(parts)


def is_json_media_type(mimetype: str | None) -> bool:
    """``application/json`` or any ``+json`` type (parameters already stripped)."""
    return bool(mimetype) and (mimetype == "application/json" or mimetype.endswith("+json"))


def json_object(body: bytes, mimetype: str | None) -> dict[str, Any]:
    """A request body that must be one JSON object: 415 not JSON, 400 malformed, 422 not an
    object. The route then validates the object with its pydantic model."""
    if not is_json_media_type(mimetype):
        raise ApiError(
            415, "request body must be JSON: send 'Content-Type: application/json'",
            content_type=mimetype or None,
        )  # fmt: skip
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(422, "request body must be a JSON object", field="(body)")
    return payload
