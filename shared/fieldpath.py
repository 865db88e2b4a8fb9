"""How an input's field is named everywhere: pydantic's error location as a path. Kept apart (it
needs nothing) so the registry's errors and the web kit's answers write it the same way."""

from __future__ import annotations

from typing import Any


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's location as a path: ``hidden_layers[1]``, ``routes[0].weight`` ("" for none)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def top_field(path: str) -> str:
    """The top-level field a path is in: ``routes`` for ``routes[0].weight``."""
    return path.split(".")[0].split("[")[0]
