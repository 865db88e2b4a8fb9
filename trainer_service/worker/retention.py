"""A model's retention rule ("keep the last N versions"), applied by the job that just published.

The registry deletes only what no pin, alias, traffic route or shadow names (`delete_version`
refuses those atomically). What the registry cannot know is asked of Redis here: a version is also
kept while the job that published it is still running (it is about to report it) and while the
sweep that published it as a trial is still running (its promotion may name it; once the sweep
has finished, its `keep` has already removed the trials it did not want). Both are read after
the registry listed the versions, so a version published later is not a candidate and one
listed was published by a job or sweep already known to Redis.
"""

from __future__ import annotations

import logging

import redis
from rq.registry import StartedJobRegistry

from shared.registry import BrokenVersionError, Registry, RegistryError
from trainer_service.sweeps import coordinator as sweeps

log = logging.getLogger(__name__)


def apply_retention(
    registry: Registry, conn: redis.Redis, queue: str, model: str, job_id: str
) -> list[int]:
    """Delete `model`'s versions beyond its retention rule, none in use (see the module
    docstring). Housekeeping: a failure is logged, never raised (the job has published)."""
    running: dict[str, set[str]] = {}

    def in_use(version: int) -> bool:
        if not running:  # read once, after the listing
            jobs = StartedJobRegistry(queue, connection=conn).get_job_ids(cleanup=False)
            running["jobs"] = {job_id, *jobs}
            running["sweeps"] = {s.decode() for s in conn.smembers(sweeps.running_key(queue))}
        try:
            manifest = registry.manifest(model, version)
        except BrokenVersionError:
            return False  # no job or sweep can use it
        sweep = manifest.get("sweep")
        return manifest.get("job_id") in running["jobs"] or (
            isinstance(sweep, dict) and sweep.get("sweep_id") in running["sweeps"]
        )

    try:
        deleted = registry.apply_retention(model, in_use, actor=f"retention (job {job_id})")
    except (RegistryError, OSError, redis.RedisError) as exc:
        log.warning("job %s: retention of model %r not applied: %s", job_id, model, exc)
        return []
    if deleted:
        log.info("job %s: retention deleted model %r versions %s", job_id, model, deleted)
    return deleted
