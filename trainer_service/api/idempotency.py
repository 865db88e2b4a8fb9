"""``Idempotency-Key``: a retried POST answers with what the first one created.

The route picks the id of what it is about to create, then `claim`s the key: one SET NX records
that id and a digest of the body, so of two concurrent requests with one key exactly one creates.
A later request with the key gets the earlier id back (same body) or a 422 (another body). When
creating fails, `release` forgets the key — only if it still names this request's id — so a
retry can try again. Jobs and sweeps share this; `scope` keeps their keys apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis

from shared.web.errors import ApiError
from trainer_service import queueing
from trainer_service.settings import TrainerSettings

KEY_MAX = 255


def check_key(key: str) -> str:
    """400 for a key that is empty, too long or not printable ASCII."""
    if not key or len(key) > KEY_MAX or not key.isascii() or not key.isprintable():
        raise ApiError(400, f"Idempotency-Key must be 1-{KEY_MAX} printable ASCII characters")
    return key


def body_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _redis_key(settings: TrainerSettings, scope: str, key: str) -> str:
    return queueing.idempotency_redis_key(settings.rq_queue, scope + check_key(key))


def claim(
    conn: redis.Redis,
    settings: TrainerSettings,
    scope: str,
    key: str,
    payload: dict[str, Any],
    new_id: str,
) -> str | None:
    """None when `key` now names `new_id` (go ahead and create it); else the id the first request
    with this key and body created. 422 when the key was used with another body, 409 when its
    record expired in between."""
    redis_key = _redis_key(settings, scope, key)
    digest = body_digest(payload)
    record = json.dumps({"id": new_id, "body": digest})
    if conn.set(redis_key, record, nx=True, ex=settings.idempotency_ttl):
        return None
    raw = conn.get(redis_key)
    if raw is None:  # expired between SET NX and GET: vanishingly rare, ask to retry
        raise ApiError(409, "Idempotency-Key record expired while reading it; retry the request")
    earlier = json.loads(raw)
    if earlier.get("body") != digest:
        raise ApiError(422, "this Idempotency-Key was already used with a different request body")
    return earlier["id"]


def release(
    conn: redis.Redis, settings: TrainerSettings, scope: str, key: str, new_id: str
) -> None:
    """Forget `key` if it still names `new_id` (creating it failed), so a retry can try again."""
    redis_key = _redis_key(settings, scope, key)
    raw = conn.get(redis_key)
    if raw and json.loads(raw).get("id") == new_id:
        conn.delete(redis_key)
