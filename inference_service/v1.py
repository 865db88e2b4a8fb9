"""``/v1``: model listing (the predict routes are plain WSGI: `inference_service.predict`;
all are listed in `inference_service.routes`)."""

from __future__ import annotations

from flask import Response

from inference_service.responses import json_response
from inference_service.state import service
from shared.registry import BrokenVersionError

# ---- listing --------------------------------------------------------------------------------


def list_models() -> Response:
    st = service()
    reg = st.registry
    models = []
    for name in reg.model_names():
        try:
            state = reg.state(name)
            models.append(
                {
                    "name": name,
                    "latest_version": reg.latest_version(name),
                    "default_version": reg.default_version(name),
                    "pinned_version": state["pinned"],
                    "serving_version": st.cache.served_default(name),
                    "versions": reg.versions(name),
                    "staged_versions": reg.staged_versions(name),
                    "aliases": state["aliases"],
                }
            )
        except LookupError:
            continue  # removed while listing
    return json_response({"models": models})


def _aliases_by_version(aliases: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        out.setdefault(version, []).append(alias)
    return out


def get_model(name: str) -> Response:
    st = service()
    reg = st.registry
    versions = reg.describe_versions(name)  # validates the name; ModelNotFoundError → 404
    state = reg.state(name)
    default = reg.default_version(name)
    by_version = _aliases_by_version(state["aliases"])
    rows = []
    for entry in versions:
        v = entry["version"]
        manifest = entry["manifest"] or {}
        status, error = entry["status"], entry["error"]
        if status == "ok" and (reason := st.cache.broken_reason(name, v)) is not None:
            status, error = "broken", reason  # verifies, but this worker could not load it
        rows.append(
            {
                "version": v,
                "status": status,
                "error": error,
                "created_at": manifest.get("created_at"),
                "sha256": manifest.get("sha256"),
                "metrics": manifest.get("metrics"),
                "config": manifest.get("config"),
                "files": sorted(manifest.get("files") or {}),
                "sweep": manifest.get("sweep"),
                "staged": bool(manifest.get("staged")),
                "aliases": by_version.get(v, []),
                "default": v == default,
                "pinned": v == state["pinned"],
                "loaded": st.cache.is_loaded(name, v),
            }
        )
    return json_response(
        {
            "name": name,
            "latest_version": reg.latest_version(name),
            "default_version": default,
            "pinned_version": state["pinned"],
            "serving_version": st.cache.served_default(name),
            "aliases": state["aliases"],
            **st.cache.rollout(name),
            "live": st.telemetry.live(name),
            "versions": rows,
            "history": state["history"][-50:],
        }
    )


def get_version(name: str, ref: str) -> Response:
    st = service()
    reg = st.registry
    version = reg.resolve(name, ref)  # 404 / 409 (broken) via the error handlers
    reason = st.cache.broken_reason(name, version)
    if reason is not None:
        raise BrokenVersionError(reason)
    manifest = reg.manifest(name, version)
    state = reg.state(name)
    manifest["aliases"] = _aliases_by_version(state["aliases"]).get(version, [])
    manifest["default"] = version == reg.default_version(name)
    manifest["status"] = "ok"
    manifest["loaded"] = st.cache.is_loaded(name, version)
    return json_response(manifest)
