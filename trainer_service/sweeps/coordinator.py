"""Sweeps: an Optuna study on the queue's Redis, its trials ordinary training jobs.

There is no coordinator process. `advance` is one short step, run under a per-sweep Redis lock,
that (1) fails in the study the trials whose job ended without telling it, retrying once a trial
whose job *died* (worker or work horse killed: RQ marks it failed once its heartbeat expired),
(2) asks the study for trials and enqueues them until `parallelism` are queued or running, and
(3) when every trial is done, promotes the best trial's version and removes those beyond `keep`.
Trial versions are published *staged* (`"staged": true` in the manifest): never "latest" nor an
unpinned default, so nothing a route serves changes until that promotion (an alias, or the pin).

`advance` runs in the RQ workers: at the very end of every trial job (so the next trial starts at
once), and every SWEEP_RECONCILE_SECONDS in a thread of every worker (`reconcile`), which moves
a sweep on when the worker running its trial died. API reads of a sweep never enqueue, tell or
promote anything (a GET that moved work would make the outcome depend on who looks, and would
need the API to hold Optuna's sampler state). With no worker alive nothing moves, but then no
trial could run either.

Retry once: a dead trial is told FAIL and re-created as a WAITING trial with the same params
(Optuna's own `RetryHeartbeatStaleTrialCallback(max_retry=1)`: it records `failed_trial` and
`retry_history`, and keeps the grid point), which the next ask pops and enqueues as a new job.
The retry does not count against `trials`; its result counts like any trial's. A retry that dies
too stays failed. A trial that failed by itself (an exception, a time-out) or was stopped is
never retried: it would fail the same way.

The study lives in Optuna's journal storage on the same Redis (see `storage`); the sweep's own
record (request, `SweepPlan`, trial ↔ job ids, outcome) is one JSON value next to it. A running
sweep never expires; an ended one is kept as long as its jobs (`lifetime`), its journal 10 s
longer (`JOURNAL_GRACE`), and `reconcile` drops expired sweeps and jobs from their indexes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import uuid
import warnings
from dataclasses import asdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from rq.job import Job
from rq.registry import CanceledJobRegistry, StartedJobRegistry

from shared.config import TrainConfig
from shared.registry import RegistryError
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.sweeps.models import SweepPlan, SweepRequest, SweepTrial, SweepView

if TYPE_CHECKING:
    import optuna
    from rq import Queue

log = logging.getLogger(__name__)


_ACTIVE = ("queued", "started")
#: Seconds an ended sweep's journal outlives its record: a reader that found the record finds the
#: whole journal (Optuna's journal reader waits forever for a line that is missing).
JOURNAL_GRACE = 10


def sweep_key(queue: str, sweep_id: str) -> str:
    return f"digitflow:{queue}:sweep:{sweep_id}"


def sweeps_index_key(queue: str) -> str:
    return f"digitflow:{queue}:sweeps"


def running_key(queue: str) -> str:
    """The ids of the sweeps still running: what `reconcile` moves on."""
    return f"digitflow:{queue}:sweeps-running"


def _lock(conn: redis.Redis, queue: str, sweep_id: str, wait: float = 30.0):
    """The sweep's lock: one coordinator step (or cancel) at a time. A step takes well under a
    second; `timeout` frees the lock of a process that died holding it."""
    return conn.lock(f"digitflow:{queue}:sweep-lock:{sweep_id}", timeout=60, blocking_timeout=wait)


def now_iso() -> str:
    return str(queueing.iso(datetime.now(UTC)))


def load_record(conn: redis.Redis, queue: str, sweep_id: str) -> dict[str, Any] | None:
    return next(iter(load_records(conn, queue, [sweep_id])), None)


def load_records(conn: redis.Redis, queue: str, sweep_ids: list[str]) -> list[dict[str, Any]]:
    """The records of `sweep_ids` that still exist, in that order, in one round trip (a listing
    of 500 sweeps would otherwise wait for 500)."""
    raws = conn.mget([sweep_key(queue, i) for i in sweep_ids]) if sweep_ids else []
    return [json.loads(raw) for raw in raws if raw is not None]


def lifetime(settings: TrainerSettings, record: dict[str, Any]) -> int | None:
    """Seconds an ended sweep is kept, as its jobs are: RESULT_TTL finished, FAILURE_TTL
    canceled; None (for ever) while it runs."""
    if record["status"] == "running":
        return None
    return settings.result_ttl if record["status"] == "finished" else settings.failure_ttl


def _save(conn: redis.Redis, settings: TrainerSettings, record: dict[str, Any]) -> None:
    """Write the record; an ended sweep leaves the running set, its journal expires after it."""
    ttl = lifetime(settings, record)
    conn.set(sweep_key(settings.rq_queue, record["sweep_id"]), json.dumps(record), ex=ttl)
    if ttl is not None:  # ended (a running sweep's record never expires)
        conn.srem(running_key(settings.rq_queue), record["sweep_id"])
        prefix = journal_prefix(settings.rq_queue, record["sweep_id"])
        expire_journal(conn, prefix, ttl + JOURNAL_GRACE)


def journal_prefix(queue: str, sweep_id: str) -> str:
    """Where a sweep's study keeps its journal: a line counter and one key per line."""
    return f"digitflow:{queue}:optuna:{sweep_id}"


def expire_journal(conn: redis.Redis, prefix: str, ttl: int) -> None:
    """Expire a journal: its line counter in `ttl` seconds, every line 5 s later (a reader that
    got the counter finds every line it counts). The counter first: a line appended (counter
    and line at once) before the counter is read here is expired here, one appended after
    sees the counter expiring and expires itself (`storage`)."""
    conn.expire(f"{prefix}:log_number", ttl)
    last = int(conn.get(f"{prefix}:log_number") or -1)
    with conn.pipeline(transaction=False) as pipe:
        for number in range(last + 1):
            pipe.expire(f"{prefix}:log:{number}", ttl + 5)
        pipe.execute()


def _trial_jobs(conn: redis.Redis, record: dict[str, Any]) -> list[Job | None]:
    """The job of each of the record's trials, in order (None: its record expired)."""
    ids = [t["job_id"] for t in record["trials"]]
    return Job.fetch_many(ids, connection=conn, serializer=queueing.SERIALIZER)


def storage(settings: TrainerSettings, sweep_id: str) -> optuna.storages.BaseStorage:
    """The sweep's journal on the queue's Redis (Optuna's own Redis backend; Optuna flags it
    experimental, a warning per process we silence), its log and nothing else. The backend also
    keeps snapshots, which `JournalStorage` writes with pickle (every 100 trials) and unpickles
    whenever it is built; the product never unpickles what it reads (README, Guarantees), so the
    storage gets only the backend's log methods (not being a `BaseJournalSnapshot` is the point)
    and the study is always replayed from its JSON log lines. One journal per sweep, so that it
    expires with the sweep (`_save`); a line appended after that (a stopped trial's last
    report) expires with the rest."""
    import optuna  # heavy: only for sweeps

    prefix = journal_prefix(settings.rq_queue, sweep_id)
    # Optuna builds its client from a URL: redis-py reads the timeouts from its query.
    parts = urlsplit(settings.redis_url)
    timeout = settings.redis_socket_timeout
    timeouts = [("socket_timeout", timeout), ("socket_connect_timeout", timeout)]
    url = urlunsplit(parts._replace(query=urlencode([*parse_qsl(parts.query), *timeouts])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = optuna.storages.journal.JournalRedisBackend(url, prefix=prefix)

        def append_logs(logs: list[dict[str, Any]]) -> None:
            backend.append_logs(logs)
            ttl = backend._redis.ttl(f"{prefix}:log_number")  # Optuna's client for its journal
            if ttl > 0:  # the sweep has ended (`_save`)
                expire_journal(backend._redis, prefix, ttl)

        log_only = SimpleNamespace(read_logs=backend.read_logs, append_logs=append_logs)
        return optuna.storages.JournalStorage(log_only)  # type: ignore[arg-type]


def distributions(plan: SweepPlan) -> dict[str, Any]:
    """Optuna distributions of the space. Choices are JSON strings (Optuna's categorical values
    are scalars; a choice may be a list such as hidden_layers)."""
    import optuna  # heavy: only for sweeps

    out: dict[str, Any] = {}
    for key, dim in plan.space.items():
        kind, value = ("choice", dim) if isinstance(dim, list) else next(iter(dim.items()))
        if kind == "choice":
            out[key] = optuna.distributions.CategoricalDistribution(_encoded(value))
        elif kind == "int":
            out[key] = optuna.distributions.IntDistribution(*value)
        else:
            out[key] = optuna.distributions.FloatDistribution(*value, log=kind == "log_uniform")
    return out


def _encoded(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))


def decode_params(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's params → TrainConfig values."""
    categorical = {k for k, dim in plan.space.items() if isinstance(dim, list) or "choice" in dim}
    return {k: json.loads(v) if k in categorical else v for k, v in params.items()}


def sampler(plan: SweepPlan, asked: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler, rebuilt for each ask (the study's history is in the storage).

    The grid sampler shuffles the grid with its seed and gives trial n the n-th point, so every
    ask must use the same seed (else points repeat): the request's, or 0. A random or TPE draw
    with a seed uses seed + asked: one fixed seed would repeat the same draw."""
    import optuna  # heavy: only for sweeps

    if plan.sampler == "grid":
        space = {k: _encoded(v) for k, v in plan.space.items()}
        return optuna.samplers.GridSampler(space, seed=plan.seed or 0)
    seed = None if plan.seed is None else plan.seed + asked
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(10, max(2, plan.n_trials // 3))
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed)


def pruner(name: str) -> optuna.pruners.BasePruner:
    """Epochs are the budget: a trial reports its objective after every epoch."""
    import optuna  # heavy: only for sweeps

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(settings: TrainerSettings, sweep_id: str, pruner_name: str) -> optuna.Study:
    """The sweep's study, for reading and telling. Its sampler is a plain one: the search's
    sampler is set only to ask (the grid sampler's after-tell hook stops an exhausted study,
    which Optuna allows only inside its own optimize loop)."""
    import optuna  # heavy: only for sweeps

    return optuna.load_study(
        study_name=sweep_id,
        storage=storage(settings, sweep_id),
        sampler=optuna.samplers.RandomSampler(),
        pruner=pruner(pruner_name),
    )


def objective_value(history: list[dict[str, Any]], objective: str, best_epoch: int) -> float | None:
    """The objective of the published weights: the validation metric of `best_epoch` (the
    weights the pipeline keeps), from validation only."""
    value = next((r.get(objective) for r in history if r.get("epoch") == best_epoch), None)
    return None if value is None else float(value)


def new_record(request: SweepRequest, sweep_id: str) -> dict[str, Any]:
    """A new sweep's record: the request as submitted (for readers) and its `SweepPlan`, which
    is what everything after this reads (the request is not validated again)."""
    return {
        "sweep_id": sweep_id,
        "status": "running",
        "model": request.base.model_name,
        "request": request.model_dump(mode="json", exclude_none=True),
        "plan": asdict(SweepPlan.of(request)),
        "trials": [],
        "created_at": now_iso(),
        "ended_at": None,
        "promotion": None,
        "removed_versions": [],
    }


def create(
    conn: redis.Redis, queue: Queue, settings: TrainerSettings, request: SweepRequest, sweep_id: str
) -> dict[str, Any]:
    """Create the study and the record of `sweep_id`, enqueue the first trials; the record."""
    import optuna  # heavy: only for sweeps

    direction = "maximize" if request.objective == "val_accuracy" else "minimize"
    optuna.create_study(
        study_name=sweep_id, storage=storage(settings, sweep_id), direction=direction
    )
    record = new_record(request, sweep_id)
    _save(conn, settings, record)
    with conn.pipeline() as pipe:
        queueing.add_to_index(pipe, sweeps_index_key(settings.rq_queue), sweep_id)
        pipe.sadd(running_key(settings.rq_queue), sweep_id)
        pipe.execute()
    advance(conn, queue, settings, sweep_id)
    return load_record(conn, settings.rq_queue, sweep_id) or record


def advance(
    conn: redis.Redis,
    queue: Queue,
    settings: TrainerSettings,
    sweep_id: str,
    *,
    finishing: str | None = None,
    wait: float = 30.0,
) -> None:
    """One coordinator step (see the module docstring). `finishing`: the job id of the trial
    calling this at its very end (still `started` in RQ, but done). Raises redis LockError if
    another step holds the lock for longer than `wait` seconds."""
    import optuna  # heavy: only for sweeps

    StartedJobRegistry(queue=queue).cleanup()  # a dead worker's trial shows failed now
    with _lock(conn, settings.rq_queue, sweep_id, wait):
        record = load_record(conn, settings.rq_queue, sweep_id)
        if record is None or record["status"] != "running":
            conn.srem(running_key(settings.rq_queue), sweep_id)
            return
        plan = SweepPlan.of_record(record)
        study = load_study(settings, sweep_id, plan.pruner)
        active = _settle(conn, study, record, finishing)
        waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        fresh = started_trials(record)
        while active < plan.parallelism and (waiting or fresh < plan.n_trials):
            if _enqueue_trial(queue, settings, study, plan, record):
                waiting -= 1
            else:
                fresh += 1
            active += 1
        if active == 0 and waiting <= 0 and fresh >= plan.n_trials:
            _finish(settings, study, plan, record)
        _save(conn, settings, record)


def started_trials(record: dict[str, Any]) -> int:
    """Trials started out of the sweep's `trials` (retries do not count)."""
    return sum(1 for t in record["trials"] if "retry_of" not in t)


def reconcile(conn: redis.Redis, queue: Queue, settings: TrainerSettings) -> None:
    """One `advance` of every running sweep whose lock is free (a busy lock means another
    process is moving that sweep on right now); then expired jobs and sweeps leave the indexes
    (and RQ's canceled registry, which RQ never cleans), so that those stay bounded without
    a read having to write."""
    for sweep_id in conn.smembers(running_key(settings.rq_queue)):
        with contextlib.suppress(redis.exceptions.LockError):
            advance(conn, queue, settings, sweep_id.decode(), wait=0.0)
    name = settings.rq_queue
    indexes = {
        queueing.jobs_index_key(name): Job.key_for,
        CanceledJobRegistry(name, connection=conn).key: Job.key_for,
        sweeps_index_key(name): lambda sweep_id: sweep_key(name, sweep_id),
    }
    for key, record_key in indexes.items():
        queueing.prune_index(conn, key, record_key, settings)


def _settle(
    conn: redis.Redis, study: optuna.Study, record: dict[str, Any], finishing: str | None
) -> int:
    """Fail in the study the trials whose job ended without telling it, retrying once those whose
    job died (see the module docstring); count the active ones."""
    import optuna  # heavy: only for sweeps

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    active = 0
    for entry, job in zip(record["trials"], _trial_jobs(conn, record), strict=True):
        status = "failed" if job is None else queueing.public_status(job)
        if status in _ACTIVE:
            active += entry["job_id"] != finishing
            continue
        trial = trials.get(entry["number"])
        if trial is None or trial.state != optuna.trial.TrialState.RUNNING:
            continue
        dead = copy.deepcopy(trial)  # the callback below must not edit Optuna's cached copy
        study.tell(entry["number"], state=optuna.trial.TrialState.FAIL)
        if status == "failed":  # killed: a stopped or canceled trial was meant to end
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, dead)
    return active


def _enqueue_trial(
    queue: Queue,
    settings: TrainerSettings,
    study: optuna.Study,
    plan: SweepPlan,
    record: dict[str, Any],
) -> bool:
    """Ask the study for a trial (a waiting retry first) and enqueue its job. Returns whether
    it was a retry."""
    import optuna  # heavy: only for sweeps

    asking = optuna.load_study(
        study_name=study.study_name,
        storage=study._storage,
        sampler=sampler(plan, len(record["trials"])),
    )
    trial = asking.ask(distributions(plan))
    history = study._storage.get_trial(trial._trial_id).system_attrs.get("retry_history") or []
    retry_of = history[-1] if history else None
    params = decode_params(plan, trial.params)
    config = TrainConfig.model_validate({**plan.base, **params})
    job_id = uuid.uuid4().hex
    sweep_id = record["sweep_id"]
    sweep = {
        "sweep_id": sweep_id,
        "trial": trial.number,
        "trial_id": trial._trial_id,
        "params": params,
        "objective": plan.objective,
        "pruner": plan.pruner,
    }
    entry = {"number": trial.number, "job_id": job_id, "params": params}
    description = f"sweep {sweep_id} trial {trial.number}"
    if retry_of is not None:
        entry["retry_of"] = retry_of
        description += f" (retry of trial {retry_of})"
        log.info("sweep %s: trial %d retries trial %d", sweep_id, trial.number, retry_of)
    queueing.enqueue(
        queue, settings, config.public_dict(), config.model_name, job_id, description, sweep
    )
    record["trials"].append(entry)
    return retry_of is not None


def _finish(
    settings: TrainerSettings, study: optuna.Study, plan: SweepPlan, record: dict[str, Any]
) -> None:
    """Every trial is done: promote the best version (only on improvement), keep the best `keep`."""
    import optuna  # heavy: only for sweeps

    record["status"] = "finished"
    record["ended_at"] = now_iso()
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get("model_version") is not None
    ]
    sign = 1 if plan.objective == "val_accuracy" else -1  # accuracy up, loss down
    done.sort(key=lambda t: sign * t.value, reverse=True)  # type: ignore[operator]
    registry = settings.open_registry()
    model = record["model"]
    sweep_id = record["sweep_id"]
    actor = f"sweep {sweep_id}"
    if done and plan.promote_to:
        best, objective, target = done[0].value, plan.objective, plan.promote_to
        version = int(done[0].user_attrs["model_version"])
        if target == "default":
            current, what = registry.default_version(model), "the model had no default version"
        else:
            current, what = registry.state(model)["aliases"].get(target), "the alias was not set"
        kept = "default kept" if target == "default" else "alias kept"
        verdict = None
        if current is None:
            verdict, reason = version, what
        else:  # compared with the validation objective its manifest records
            manifest = registry.manifest(model, current)
            history = manifest.get("history") or []
            theirs = objective_value(history, objective, manifest.get("best_epoch", 0))
            if theirs is None:
                reason = f"version {current} has no {objective} to compare with; {kept}"
            elif sign * best > sign * theirs:  # type: ignore[operator]
                verdict = version
                reason = f"{objective} {best:.6g} beats version {current}'s {theirs:.6g}"
            else:
                reason = (
                    f"{objective} {best:.6g} does not beat version {current}'s {theirs:.6g}; {kept}"
                )
        registry.record_promotion(model, target, verdict, reason, sweep_id, actor)
        record["promotion"] = {
            "alias": target,
            "promoted": verdict is not None,
            "version": verdict if verdict is not None else current,
            "reason": reason,
        }
    for trial in done[plan.keep :]:
        version = int(trial.user_attrs["model_version"])
        try:
            registry.delete_version(model, version, actor=actor)
            record["removed_versions"].append(version)
        except RegistryError as exc:  # pinned or aliased meanwhile: it stays
            log.info("sweep %s: version %d stays: %s", sweep_id, version, exc)


def cancel(conn: redis.Redis, settings: TrainerSettings, sweep_id: str) -> None:
    """Mark the sweep canceled (no trial is enqueued after this), cancel its queued trials and
    stop its running ones. Versions already published stay; nothing is promoted."""
    import optuna  # heavy: only for sweeps

    with _lock(conn, settings.rq_queue, sweep_id):
        record = load_record(conn, settings.rq_queue, sweep_id)
        if record is None or record["status"] != "running":
            return
        jobs = _trial_jobs(conn, record)
        statuses = [None if job is None else queueing.public_status(job) for job in jobs]
        record["status"] = "canceled"
        record["ended_at"] = now_iso()
        for entry, status in zip(record["trials"], statuses, strict=True):
            if status in _ACTIVE:  # what the cancel ends: its job reads canceled, not stopped
                entry["canceled"] = True
        _save(conn, settings, record)
        for job, status in zip(jobs, statuses, strict=True):  # status None: no job
            if status == "queued":
                queueing.cancel_queued(job, settings.failure_ttl)
            elif status == "started":
                try:
                    queueing.send_stop(conn, job)
                except redis.exceptions.RedisError:  # its heartbeat expiry fails the trial
                    log.info("sweep %s: could not stop trial job %s", sweep_id, job.id)
        study = load_study(settings, sweep_id, SweepPlan.of_record(record).pruner)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


#: A trial's Optuna state → its status in the sweep view (RUNNING: running, or queued).
_TRIAL_STATUS = {"complete": "finished", "fail": "failed", "waiting": "queued", "pruned": "pruned"}


def canceled_with_sweep(conn: redis.Redis, queue: str, job: Job) -> bool:
    """Whether `job` is a trial its sweep's cancel ended (queued or running at the cancel)."""
    sweep = queueing.sweep_of(job)
    if sweep is None:
        return False
    record = load_record(conn, queue, str(sweep.get("sweep_id"))) or {"trials": []}
    return any(t["job_id"] == job.id and t.get("canceled") for t in record["trials"])


def view(conn: redis.Redis, settings: TrainerSettings, record: dict[str, Any]) -> SweepView:
    """A sweep as the API shows it: every trial with its curve, and the best so far."""
    plan = SweepPlan.of_record(record)
    study = load_study(settings, record["sweep_id"], plan.pruner)
    study_trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    retried_by = {t["retry_of"]: t["number"] for t in record["trials"] if "retry_of" in t}
    trials = []
    for entry, job in zip(record["trials"], _trial_jobs(conn, record), strict=True):
        st = study_trials.get(entry["number"])
        meta = (job.meta or {}) if job is not None else {}
        curve = [
            {"epoch": int(step), plan.objective: value}
            for step, value in sorted((st.intermediate_values if st else {}).items())
        ]
        canceled = bool(entry.get("canceled"))
        job_status = (
            "expired" if job is None else queueing.public_status(job, canceled_with_sweep=canceled)
        )
        state = st.state.name.lower() if st else "fail"
        status = _TRIAL_STATUS.get(state, "running")
        if status == "running" and job_status == "queued":
            status = "queued"
        if canceled and status not in ("finished", "pruned"):  # it ended with the sweep
            status = "canceled"
        trials.append(
            SweepTrial(
                number=entry["number"],
                job_id=entry["job_id"],
                params=entry["params"],
                status=status,
                job_status=job_status,
                pruned=state == "pruned",
                # Optuna gives a pruned trial its last report as value; ours is the published
                # weights' objective, so only a finished trial has one.
                value=st.value if state == "complete" else None,
                curve=curve,
                model_version=st.user_attrs.get("model_version") if st else None,
                retry_of=entry.get("retry_of"),
                retried_by=retried_by.get(entry["number"]),
                started_at=meta.get("trial_started_at"),
                ended_at=meta.get("trial_ended_at"),
            )
        )
    scored = [t for t in trials if t.status == "finished" and t.value is not None]
    sign = 1 if plan.objective == "val_accuracy" else -1
    best = max(scored, key=lambda t: sign * t.value, default=None)  # type: ignore[operator]
    as_stored = "sweep_id status model created_at ended_at promotion removed_versions request"
    return SweepView(
        **{key: record[key] for key in as_stored.split()},
        objective=plan.objective,
        n_trials=plan.n_trials,
        parallelism=plan.parallelism,
        sampler=plan.sampler,
        pruner=plan.pruner,
        trials=trials,
        best=best,
    )
