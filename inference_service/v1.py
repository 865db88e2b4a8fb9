"""``/v1``: model listing (the predict routes are plain WSGI: `inference_service.predict`;
all are listed in `inference_service.routes`)."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from flask import Response
from pydantic import ValidationError

from inference_service.responses import answer, json_response
from inference_service.schemas import (
    Manifest,
    ServedModelDetail,
    ServedModelList,
    ServedModelSummary,
    ServedVersion,
)
from inference_service.state import service
from shared.config import TrainConfig
from shared.registry import BrokenVersionError, aliases_by_version, model_detail, model_summaries

#: History entries a model's detail shows (the newest): what the page lists.
HISTORY_SHOWN = 50
#: Networks described per worker (distinct training configs: a version's never changes).
NETWORKS_KEPT = 256


def list_models() -> Response:
    st = service()
    models = [
        ServedModelSummary(**m.model_dump(), serving_version=st.cache.served_default(m.name))
        for m in model_summaries(st.registry)
    ]
    return answer(ServedModelList(models=models))


def get_model(name: str) -> Response:
    st = service()
    detail = model_detail(st.registry, name, history=HISTORY_SHOWN)  # ModelNotFoundError → 404
    versions, loaded = [], st.cache.versions
    for row in detail.versions:
        fields = row.model_dump()
        if row.status == "ok" and (reason := loaded.broken_reason(name, row.version)):
            fields.update(status="broken", error=reason)  # verifies, but this worker cannot load it
        network = None if row.config is None else _network(orjson.dumps(row.config))
        versions.append(
            ServedVersion(**fields, loaded=loaded.is_loaded(name, row.version), network=network)
        )
    served = ServedModelDetail(
        **{**detail.model_dump(exclude={"versions"}), **st.cache.rollout(name)},
        serving_version=st.cache.served_default(name),
        live=st.telemetry.live(name),
        versions=versions,
    )
    return answer(served)


@functools.lru_cache(maxsize=NETWORKS_KEPT)
def _network(config_json: bytes) -> list[dict[str, Any]] | None:
    """A version's layers (`Sequential.describe`) from its training config, the network the
    trainer built from it; None for a config no trainer wrote. Cached by the config's JSON: the
    build (random weights) costs milliseconds, a listing is asked for every few seconds."""
    try:
        return TrainConfig.model_validate_json(config_json).build_model().describe()
    except (ValidationError, ValueError):
        return None


def get_version(name: str, ref: str) -> Response:
    st = service()
    reg = st.registry
    version = reg.resolve(name, ref)  # 404 / 409 (broken) via the error handlers
    reason = st.cache.versions.broken_reason(name, version)
    if reason is not None:
        raise BrokenVersionError(reason)
    manifest = reg.manifest(name, version)
    manifest.update(
        aliases=aliases_by_version(reg.state(name)["aliases"]).get(version, []),
        default=version == reg.default_version(name),
        status="ok",
        loaded=st.cache.versions.is_loaded(name, version),
    )
    try:
        return answer(Manifest.model_validate(manifest))
    except ValidationError:  # a manifest published by hand, not by a trainer: shown as it is
        return json_response(manifest)
