"""The README's Guarantees section cites a test for every promise: each cited test must exist, so
renaming or deleting one fails here instead of leaving a promise without its proof."""

from __future__ import annotations

import ast
import re

from tests import REPO_ROOT

# `tests/x/test_y.py::test_z` or, right after one in the same cell, `::test_w` (same file).
_CITE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def _guarantees() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("\n## Guarantees")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_test_the_guarantees_cite_exists():
    cited: list[tuple[str, str | None]] = []
    for line in _guarantees().splitlines():
        current = None
        for path, name in _CITE.findall(line):
            if path:
                current = path
            if current and (path or name):
                cited.append((current, name or None))
    assert len(cited) > 20
    missing = []
    for path, name in cited:
        file = REPO_ROOT / path
        if not file.is_file():
            missing.append(path)
            continue
        if name:
            names = {
                n.name
                for n in ast.walk(ast.parse(file.read_text()))
                if isinstance(n, ast.FunctionDef)
            }
            if name not in names:
                missing.append(f"{path}::{name}")
    assert missing == [], missing
