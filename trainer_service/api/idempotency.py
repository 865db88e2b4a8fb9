"""``Idempotency-Key``: a retried POST answers with what the first one created.

The route picks the id of what it is about to create, then claims the key: one SET NX records
that id and a digest of the body, so of two concurrent requests with one key exactly one creates.
A later request with the key gets the earlier id back (same body) or a 422 (another body). When
creating fails, the key is forgotten (only if it still names this request's id) for a retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import Response, request

from shared.web.errors import ApiError
from trainer_service import queueing
from trainer_service.api.web import state

KEY_MAX = 255
#: Key scope per kind of resource (a job's keys have none: they came first).
SCOPES = {"job": "", "sweep": "sweep:"}


def once(
    what: str,
    payload: dict[str, Any],
    new_id: str,
    create: Callable[[], Response],
    replay: Callable[[str], Response | None],
) -> Response:
    """`create()` the job or sweep (`what`) `new_id` names, unless the request's Idempotency-Key
    was used before: then `replay(earlier id)` (None: not there yet, or expired: 409)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return create()
    if not key or len(key) > KEY_MAX or not key.isascii() or not key.isprintable():
        raise ApiError(400, f"Idempotency-Key must be 1-{KEY_MAX} printable ASCII characters")
    st = state()
    redis_key = queueing.idempotency_redis_key(st.settings.rq_queue, SCOPES[what] + key)
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    record = json.dumps({"id": new_id, "body": digest})
    if st.redis.set(redis_key, record, nx=True, ex=st.settings.idempotency_ttl):
        try:
            return create()
        except BaseException:  # forget the key if it still names this request's id
            raw = st.redis.get(redis_key)
            if raw and json.loads(raw).get("id") == new_id:
                st.redis.delete(redis_key)
            raise
    raw = st.redis.get(redis_key)
    if raw is None:  # expired between SET NX and GET: vanishingly rare, ask to retry
        raise ApiError(409, "Idempotency-Key record expired while reading it; retry the request")
    earlier = json.loads(raw)
    if earlier.get("body") != digest:
        raise ApiError(422, "this Idempotency-Key was already used with a different request body")
    if (answer := replay(earlier["id"])) is not None:
        return answer
    raise ApiError(
        409,
        "the request with this Idempotency-Key is still being processed, "
        f"or its {what} has expired; retry shortly or use a new key",
    )
