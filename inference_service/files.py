"""``/v1/models/<name>/versions/<ref>/report/<file>``: the files published with a version.

The trainer's RQ job publishes each version's training report (``shared.reports``: PNG figures
and report.json) next to its weights; the registry lists them, with their sha256 and size, under
the manifest's ``"files"``. This route serves exactly those files and nothing else:

* the file name must be listed in the manifest, whose names the registry's verification holds
  to plain names (its own pattern), so no path, no weights.npz, no manifest.json, no stray file
  in the folder is ever reachable;
* the version must verify (every listed file's sha256 is checked, cached by file identity), so
  a tampered file is a 409 like a tampered model, never served;
* the registry is opened read-only and `Registry.read_file` returns the bytes only when they have
  the manifest's size and sha256 (a local file is opened without following symlinks; on S3 the
  object is downloaded and checked);
* a numbered version's files never change, so they are served as immutable (long cache, ETag =
  the sha256); ``latest``, ``default`` and aliases move, so those answers must be revalidated.
"""

from __future__ import annotations

import os

from flask import Response, request

from inference_service.responses import MODEL_VERSION
from inference_service.state import service
from shared.web.errors import ApiError

#: The Content-Type a report file is served with, by extension (unknown kinds: opaque bytes).
_CONTENT_TYPES = {
    ".png": "image/png",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}


def _not_found(name: str, version: int, file_name: str) -> ApiError:
    return ApiError(
        404, f"model {name!r} version {version} has no file {file_name!r}",
        code="file_not_found", field="file",
    )  # fmt: skip


def report_file(name: str, ref: str, file_name: str) -> Response:
    reg = service().registry
    version = reg.resolve(name, ref)  # 404 unknown, 409 broken
    manifest = reg.verify(name, version)  # checks every listed file's name and sha256 (cached)
    files = manifest.get("files") or {}
    if file_name not in files:
        raise _not_found(name, version, file_name)
    etag = str(files[file_name]["sha256"])
    headers = {
        "ETag": f'"{etag}"',
        MODEL_VERSION: str(version),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "public, max-age=31536000, immutable" if ref.isdigit() else "no-cache",
    }
    if etag in {tag.strip('" ') for tag in request.headers.get("If-None-Match", "").split(",")}:
        return Response(status=304, headers=headers)
    try:
        data = reg.read_file(name, version, file_name)
    except FileNotFoundError:
        raise _not_found(name, version, file_name) from None
    kind = _CONTENT_TYPES.get(os.path.splitext(file_name)[1].lower(), "application/octet-stream")
    return Response(data, content_type=kind, headers=headers)
