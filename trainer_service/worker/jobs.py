"""The RQ job: train one model from a TrainConfig dict and publish it as a new registry version.

`train_job` is a plain importable function with JSON arguments (validated by the API when the job
was submitted), so any RQ worker whose environment has the registry's settings and the data
directories can run it. It trains through `shared.pipeline.run_training`, as the `train` CLI does,
so both give the same model for the same config.

Failure modes and what they leave behind:
* transient error (dataset download hit a network problem) → RQ retries it a few times;
* stopped by the API (work horse SIGKILLed), timed out, or the worker died → nothing published:
  the registry's publish is one atomic step at the very end, after everything else succeeded;
  the scratch folder of a killed work horse is removed by the next job on that machine;
* Redis unreachable mid-training → progress is not recorded meanwhile, training goes on; before
  publishing, the job waits (up to JOB_HEARTBEAT_GRACE seconds) until Redis answers, and fails
  without publishing if it does not, so no version appears that its job cannot report.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import Any

from redis.exceptions import LockError
from rq import Retry, get_current_job
from rq.job import Job, JobStatus

from shared.config import TrainConfig
from shared.manifest import Manifest, SweepTrial, json_value
from shared.registry import process_running
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.sweeps import coordinator as sweeps
from trainer_service.worker.preload import preloaded_dataset
from trainer_service.worker.retention import apply_retention

log = logging.getLogger(__name__)

#: Per-job scratch folders in the system temp dir are named `<prefix><pid>-<random>`.
SCRATCH_PREFIX = "digitflow-job-"


class JobCanceled(RuntimeError):
    """The API canceled the job in the same instant a worker dequeued it."""


class WorkerGone(RuntimeError):
    """The worker process that forked this work horse has died: do not publish anything."""


class RedisUnavailable(RuntimeError):
    """Redis stayed unreachable when the job had to record a step (before publishing)."""


def remove_orphan_scratch() -> None:
    """Delete scratch folders of work horses on this machine that no longer run (SIGKILLed by a
    stop, a timeout or a dying worker mid-save)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed the scratch folder %s of a work horse that died", path)


def is_transient(exc: BaseException) -> bool:
    """Network trouble (the dataset download), nothing else: a bad config, a corrupt file or a
    bug fails the same way every time. Recognised: network exception types anywhere in the chain,
    an explicit `transient` attribute (shared.datasets.DatasetError sets it when every mirror
    failed for a network reason; a 404 or a checksum mismatch is not transient)."""
    import requests  # only on this network path

    network_types = (
        urllib.error.URLError,
        ConnectionError,
        TimeoutError,  # socket.timeout too
        socket.gaierror,
        requests.ConnectionError,
        requests.Timeout,
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        flag = getattr(current, "transient", None)
        if isinstance(flag, bool):
            return flag
        if isinstance(current, network_types):
            return True
        current = current.__cause__ or current.__context__
    return False


def _load_dataset(cfg: TrainConfig, settings: TrainerSettings) -> Any:
    """The worker's preloaded copy when its files are unchanged, else loaded from the folder the
    settings name (MNIST_DATA_DIR, ..., else DATA_DIR/<name>), downloaded there if missing."""
    from shared.datasets import load_dataset  # heavy (NumPy): only in the work horse

    locations = settings.data_locations()
    folder = locations.folder(cfg.dataset)
    preloaded = preloaded_dataset(cfg.dataset, folder)
    if preloaded is None:
        return load_dataset(cfg.dataset, folder, download=True, mirrors=locations.mirrors)
    return preloaded


class _Progress:
    """Writes per-epoch progress and history into the RQ job's meta, where the API reads them."""

    def __init__(self, job: Job, redis_wait_seconds: float) -> None:
        self.job = job
        #: How long a required write waits for Redis: past the heartbeat grace the job counts
        #: as abandoned anyway, so waiting longer could not save it.
        self.redis_wait_seconds = redis_wait_seconds
        self.parent_pid = os.getppid()
        self.history: list[dict[str, Any]] = []
        self.redis_down = False

    def update(self, *, required: bool = False, **fields: Any) -> None:
        """Merge `fields` into the job's meta and save it: best effort (while Redis is down the
        fields wait for the next successful write and training carries on), except a `required`
        write, which retries for up to JOB_HEARTBEAT_GRACE seconds, then raises RedisUnavailable."""
        self.job.meta.update(json_value(fields, nan_as_none=True))
        deadline = time.monotonic() + (self.redis_wait_seconds if required else 0.0)
        delay = 0.2
        while True:
            try:
                self.job.save_meta()
                break
            except queueing.REDIS_ERRORS as exc:
                if not self.redis_down:
                    log.warning(
                        "job %s: Redis unreachable (%s); progress is not recorded meanwhile",
                        self.job.id,
                        exc,
                    )
                self.redis_down = True
                if time.monotonic() >= deadline:
                    if required:
                        raise RedisUnavailable(
                            f"Redis stayed unreachable for {self.redis_wait_seconds:.0f} s "
                            f"while the job had to record {sorted(fields)}"
                        ) from exc
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        if self.redis_down:
            log.info("job %s: Redis answers again; progress recorded", self.job.id)
            self.redis_down = False

    def check_still_started(self) -> None:
        """A job already reported failed must not publish: after a Redis outage longer than the
        heartbeat grace the API marks it abandoned, even though this horse kept training."""
        status = self.job.get_status(refresh=True)
        if status != JobStatus.STARTED:
            raise WorkerGone(
                f"the job is already {getattr(status, 'value', status)} (its heartbeat expired "
                "while Redis was unreachable); not publishing"
            )

    def check_worker_alive(self) -> None:
        """A work horse whose worker died must not publish: nobody would record the outcome."""
        if os.getppid() != self.parent_pid:
            raise WorkerGone(
                "the RQ worker that started this job died; aborting without publishing"
            )

    def on_epoch(self, record: dict[str, Any]) -> None:
        self.check_worker_alive()
        progress = json_value(record, nan_as_none=True)
        self.history.append(progress)
        self.update(phase="training", progress=progress, history=self.history)
        log.info(
            "job %s: epoch %s/%s train_loss=%.4f val_accuracy=%s",
            self.job.id,
            progress["epoch"],
            progress["epochs"],
            progress["train_loss"] or float("nan"),
            progress["val_accuracy"],
        )


def train_job(
    config: dict[str, Any], sweep: dict[str, Any] | None = None
) -> dict[str, Any] | Retry:
    """Train from a TrainConfig dict (`TrainConfig.public_dict()`), publish the model, return a
    JSON summary; an RQ `Retry` (after a short backoff) for transient errors while retries remain.
    `sweep` (a trial's, see sweeps.coordinator) makes the job report its validation objective to
    the trial after every epoch, stop without publishing when the pruner says so, tell the study
    its outcome and run the sweep's coordinator step at its very end."""
    settings = TrainerSettings.load()
    job = get_current_job()
    if job is None:  # its progress, cancel and outcome live in its RQ job
        raise RuntimeError("train_job runs as an RQ job (python -m trainer_service worker)")
    cfg = TrainConfig.model_validate(config)
    if sweep is None:
        return _train(settings, job, cfg, None)
    # Optuna's client waits for a hung Redis as long as the horse's others (main_work_horse).
    wait = settings.job_heartbeat_grace
    settings = TrainerSettings.load({"RQ_QUEUE": job.origin, "REDIS_SOCKET_TIMEOUT": wait})
    trial = _SweepTrial(settings, job, sweep)
    try:
        result = _train(settings, job, cfg, trial)
    except BaseException:
        trial.end(state="fail")
        raise
    if not isinstance(result, Retry):
        trial.end(state="pruned" if result.get("pruned") else "complete")
    return result


class _SweepTrial:
    """The Optuna trial a sweep's job runs (see trainer_service.sweeps.coordinator)."""

    def __init__(self, settings: TrainerSettings, job: Job, sweep: dict[str, Any]) -> None:
        import optuna  # heavy: only for sweeps

        self.settings = settings
        self.job = job
        self.sweep = sweep
        self.objective = sweep["objective"]
        self.study = sweeps.load_study(settings, sweep["sweep_id"], sweep["pruner"])
        self.trial = optuna.trial.Trial(self.study, sweep["trial_id"])
        self.value: float | None = None
        self.version: int | None = None
        job.meta["trial_started_at"] = sweeps.now_iso()
        job.save_meta()

    def on_epoch(self, record: dict[str, Any]) -> None:
        """Report the epoch's validation objective; raise optuna.TrialPruned to stop here."""
        import optuna  # heavy: only for sweeps

        value = record.get(self.objective)
        if value is None:
            return
        step = int(record["epoch"])
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {step}: {self.objective} {value:.4g}")

    def end(self, state: str) -> None:
        """Tell the study (a trial already told, e.g. by a cancel, is left as it is), then run
        the sweep's coordinator step."""
        import optuna  # heavy: only for sweeps

        try:
            if state == "complete" and self.value is not None:
                self.trial.set_user_attr("model_version", self.version)
                self.study.tell(self.sweep["trial"], self.value)
            else:
                told = "PRUNED" if state == "pruned" else "FAIL"
                self.study.tell(self.sweep["trial"], state=optuna.trial.TrialState[told])
        except (ValueError, RuntimeError) as exc:
            log.info("trial %s of sweep %s: %s", self.sweep["trial"], self.sweep["sweep_id"], exc)
        self.job.meta["trial_ended_at"] = sweeps.now_iso()
        self.job.save_meta()
        conn, sweep_id = self.job.connection, self.sweep["sweep_id"]
        queue = queueing.make_queue(self.settings.rq_queue, conn)
        try:
            sweeps.advance(conn, queue, self.settings, sweep_id, finishing=self.job.id)
        except (*queueing.REDIS_ERRORS, LockError) as exc:  # the reconcile threads move it on
            log.warning("sweep %s: no step now (%s); left to the reconcile", sweep_id, exc)


def _train(
    settings: TrainerSettings, job: Job, cfg: TrainConfig, trial: _SweepTrial | None
) -> dict[str, Any] | Retry:
    import optuna  # heavy: only for sweeps (preloaded by the worker, see below)

    progress = _Progress(job, redis_wait_seconds=float(settings.job_heartbeat_grace))
    if job.get_meta(refresh=True).get("cancel_requested"):
        # The cancel came as this worker took the job: RQ will call it failed, the phase says
        # it was canceled (queueing.public_status).
        progress.update(phase="canceled", required=True)
        raise JobCanceled("the job was canceled before it started")
    progress.update(model=cfg.model_name, phase="loading data", progress=None, history=[])
    remove_orphan_scratch()

    # Heavy imports (NumPy, the engine): already done by the worker before it forked this work
    # horse (trainer_service.worker.preload), so these are dictionary lookups there.
    from shared.pipeline import run_training

    try:
        dataset = _load_dataset(cfg, settings)
        progress.update(phase="training")

        def on_epoch(record: Any) -> None:
            progress.on_epoch(record.to_dict())
            if trial is not None:
                trial.on_epoch(record.to_dict())

        outcome = run_training(cfg, dataset=dataset, on_epoch=on_epoch)
    except optuna.TrialPruned as exc:
        # Required: RQ calls this job finished; only the phase says it was pruned.
        progress.update(phase="pruned", error=str(exc), required=True)
        log.info("job %s: %s; nothing published", job.id, exc)
        return {"model": cfg.model_name, "model_version": None, "pruned": True}
    except Exception as exc:
        retry = _maybe_retry(job, exc, progress, settings.retry_delays())
        if retry is not None:
            return retry
        raise

    progress.check_worker_alive()
    # Required: a version must never appear for a job that cannot say so (and the API must see
    # "publishing" to refuse a stop from now on).
    progress.update(phase="publishing", required=True)
    progress.check_still_started()
    job_id = job.id
    # The history as the job reported it, so the manifest's equals the job's.
    manifest = Manifest.from_outcome(outcome, job_id=job_id, history=progress.history or None)
    if trial is not None:
        trial.value = sweeps.objective_value(manifest.history, trial.objective, manifest.best_epoch)
        manifest.staged = True  # served only once promoted (see sweeps.coordinator)
        manifest.sweep = SweepTrial(
            sweep_id=trial.sweep["sweep_id"],
            trial=trial.sweep["trial"],
            params=trial.sweep["params"],
            objective=trial.objective,
            value=trial.value,
        )

    # heavy (NumPy, the engine, matplotlib): only in the work horse, not the API
    from shared.modelfile import save_model

    registry = settings.open_registry()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as tmp:
        weights = Path(tmp) / "weights.npz"
        save_model(weights, outcome.model, metadata=manifest.model_file_metadata())
        report = write_report_files(Path(tmp) / "report", outcome, manifest)
        progress.check_worker_alive()
        version = registry.publish(cfg.model_name, weights, manifest.to_json(), extra_files=report)

    if trial is not None:
        trial.version = version
    try:
        progress.update(phase="published", model_version=version, required=True)
    except RedisUnavailable as exc:  # published already: say so in the worker log at least
        log.error("job %s: published version %d but could not record it: %s", job_id, version, exc)
    log.info("job %s: published %s version %d (test accuracy %s)", job_id, cfg.model_name, version,
             manifest.metrics.test_accuracy)  # fmt: skip
    apply_retention(registry, job.connection, settings.rq_queue, cfg.model_name, job_id)
    return manifest.job_result(version)


def write_report_files(out_dir: Path, outcome: Any, manifest: Manifest) -> dict[str, Path]:
    """The version's report (shared.reports: PNG figures, and report.json with the manifest's
    own metrics and history), published with it. A report that cannot be drawn is logged and left
    out: losing a trained model over a plot would be the worse outcome."""
    try:
        from shared.reports import write_outcome_report  # heavy (matplotlib): only in the horse

        return write_outcome_report(out_dir, outcome, manifest)
    except Exception:
        log.exception("could not write the training report; publishing without it")
        return {}


def _maybe_retry(job: Job, exc: Exception, progress: _Progress, delays: list[int]) -> Retry | None:
    """A Retry for a transient error while `delays` has attempts left; None: let it fail now."""
    if not is_transient(exc):
        return None
    done = job.number_of_retries or 0
    if done >= len(delays):
        log.error("job %s: transient error, no retries left (%d done): %s", job.id, done, exc)
        return None
    delay = delays[done]
    log.warning(
        "job %s: transient error (%s); retry %d/%d in %d s",
        job.id,
        exc,
        done + 1,
        len(delays),
        delay,
    )
    progress.update(
        phase=f"retrying in {delay} s after a transient error",
        last_error=f"{exc.__class__.__name__}: {exc}",
    )
    # Back off here rather than with RQ's scheduled retries: those need a separate scheduler
    # process per worker, which would outlive a SIGKILLed worker.
    time.sleep(delay)
    return Retry(max=len(delays))
