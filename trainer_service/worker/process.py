"""The training worker: RQ's forking Worker (`TrainingWorker`) plus what a plain `rq worker`
lacks, and why:
* the API's JSON serializer (trainer_service.queueing);
* short heartbeats (`get_heartbeat_ttl`): a SIGKILLed worker (OOM killer, `docker kill`, a lost
  machine) has its job `failed` within about JOB_HEARTBEAT_SECONDS + JOB_HEARTBEAT_GRACE seconds
  (the API runs RQ's abandoned-job cleanup on every read), not RQ's 90+ seconds;
* work horses die with their worker (`_die_with_parent`): no orphan can publish a version
  nobody is tracking;
* BLAS threads = the cores (`configure_blas_threads`); what jobs import and the local datasets
  loaded before it listens (`warm_up`, worker.preload);
* a sweep reconcile thread (`_reconcile_sweeps`), so a sweep whose trial's worker died goes on;
* an ended job leaves no execution record behind (`TrainingWorker._drop_ended_execution`: RQ 2's
  heartbeat could re-create one as the work horse exited);
* Redis outages do not kill it, at start-up neither (`_while_redis_may_be_down`, `_work`,
  `_connected_worker`): a job survives an outage shorter than JOB_HEARTBEAT_GRACE (its work horse
  waits that long for a hung Redis); after that the API reports it abandoned. Every other call
  gives up after REDIS_SOCKET_TIMEOUT (see `TrainingWorker.dequeue_timeout`);
* SIGTERM/SIGINT stop it promptly and cleanly (exit 0) at any moment of its start-up or idle
  time (`_stop_while_starting`, `TrainingWorker.bootstrap`, `TrainingWorker.unsubscribe`): RQ
  alone leaves the process to Python's default action until its handlers are in (a registration
  left behind if that was mid-bootstrap), and had a teardown race that kept it up a minute.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.utils import now

from shared.blas import BLAS_THREAD_VARIABLES
from shared.heap import freeze_loaded_heap
from shared.web.logging import configure_logging
from trainer_service import queueing
from trainer_service.settings import TrainerSettings
from trainer_service.sweeps import coordinator as sweeps
from trainer_service.worker import preload

log = logging.getLogger("trainer_service.worker.process")

_PR_SET_PDEATHSIG = 1
#: Held by the reconcile thread for each step and by the worker while it forks a work horse: a
#: fork copies every lock as it is at that instant, so the horse never inherits one held.
_FORK_GUARD = threading.Lock()
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


#: A stop signal arrived once the start-up could no longer simply exit (see
#: `_stop_while_starting`): `TrainingWorker.bootstrap` acts on it.
_STARTUP_STOP = threading.Event()
#: Set just before the reconcile thread starts: from then on a start-up stop is recorded.
_THREADS_STARTED = threading.Event()


def configure_blas_threads() -> int:
    """Use every core we may run on for BLAS, unless OMP_NUM_THREADS is set; the count. Must run
    before NumPy is imported (the env vars), with threadpoolctl as a fallback if it was."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        threads = int(configured)
    else:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            threads = os.cpu_count() or 1
    for var in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits  # best effort, only where it computes

            threadpool_limits(threads)
        except Exception:  # pragma: no cover - best effort only
            log.debug("threadpoolctl could not set BLAS threads", exc_info=True)
    return threads


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent (the worker) dies."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: jobs.py checks getppid()
        return
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(1)


class TrainingWorker(Worker):
    """RQ's forking Worker with prompt dead-worker detection and orphan-proof work horses."""

    #: How long after its last heartbeat a job's execution counts as abandoned.
    heartbeat_grace: int = 25
    executing: bool = False
    _redis_lost_at: float | None = None
    #: Seconds an idle worker's dequeue (BLMOVE) blocks before it heartbeats and blocks again.
    #: RQ's own block is worker_ttl - 15 = 405 s, with the connection's socket timeout raised
    #: above it: every call of the worker could hang that long on a hung Redis. Ours times out
    #: REDIS_SOCKET_TIMEOUT seconds after this block (`build_worker`).
    dequeue_timeout = 5

    def _set_connection(self, connection):
        """RQ's raises the socket timeout to its block + 10 s; `build_worker` set ours."""
        return connection

    def bootstrap(self, *args, **kwargs) -> None:
        """RQ's bootstrap (register the worker, subscribe to its command channel), during which a
        stop signal is only recorded: RQ installs its own handlers after bootstrap and outside the
        `try` whose `finally` tears the worker down, so a handler that raised here would leave the
        registration and the pubsub thread behind. `_install_signal_handlers` acts on it."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._record_stop_request)
        if _STARTUP_STOP.is_set():  # a stop signal after the reconcile thread started
            self._shutdown_requested_date = now()
        super().bootstrap(*args, **kwargs)

    def register_birth(self) -> None:
        """RQ's, except that a live registration under this name *by this very process* is
        retired first instead of refused as a duplicate: a worker reconnecting after an outage
        keeps its name (`_reconnect`), and its old registration may still look alive (seen once
        in about 60 outages: the worker then died with "There exists an active worker named
        ... already"). Another process's registration under the name is still refused."""
        pid, hostname, death = self.connection.hmget(self.key, ["pid", "hostname", "death"])
        mine = (
            pid is not None
            and int(pid) == os.getpid()
            and hostname == (self.hostname or "").encode()
        )
        if mine and death is None:
            self.log.warning("Worker %s: retiring this process's earlier registration", self.name)
            self.register_death()
        super().register_birth()

    def _record_stop_request(self, signum: int, frame) -> None:
        # No logging in here: the signal may land while the main thread writes a log line.
        self._shutdown_requested_date = now()

    def _install_signal_handlers(self) -> None:
        """RQ's handlers, unless a stop was recorded during bootstrap: then RQ's second-signal
        handler (cold stop) and the work loop ends at its first check, before it listens, as
        RQ's own first-signal handler would have had it. (Not RQ's `request_stop` first: it would
        raise here, outside the loop's teardown.)"""
        if self._shutdown_requested_date is None:
            super()._install_signal_handlers()
        if self._shutdown_requested_date is not None:  # also: recorded while RQ's went in
            for signum in _STOP_SIGNALS:
                signal.signal(signum, self.request_force_stop)
            self._stop_requested = True
            self.handle_warm_shutdown_request()

    def unsubscribe(self) -> None:
        """RQ's unsubscribe with the pubsub thread told to stop *before* UNSUBSCRIBE is sent.

        RQ sends UNSUBSCRIBE first and stops the thread after. If the thread reads the reply in
        between (likely on a busy machine), it is still told to run, finds nothing subscribed and
        waits up to its `sleep_time` (60 s) for a subscription, while redis-py's `stop()` waits
        for it: the worker stayed up a minute after SIGTERM. Flagged first, the thread's read is
        woken by the reply and its loop ends there."""
        thread = self.pubsub_thread
        if not thread:
            return
        self.log.info(
            "Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name
        )
        thread.stop(timeout=0)  # the flag only: the thread may be blocked reading until the reply
        try:
            if thread.is_alive():  # else it just ended on its own, closing the subscription
                self.pubsub.unsubscribe()
        finally:
            thread.join(timeout=1)  # bounded: with Redis unreachable no reply may ever come
            # A thread still reading (from a hung Redis) keeps its subscription: it is told to
            # stop and closes it itself when its read ends (its socket times out). Closed from
            # here, the connection would go back to the pool while the thread still reads from
            # it, and the pool's next user (the old worker's `register_death` in `_reconnect`)
            # would share the socket.
            if not thread.is_alive():
                self.pubsub.close()

    def get_heartbeat_ttl(self, job: Job) -> int:
        """RQ adds a fixed 60 s to every heartbeat TTL; we add `heartbeat_grace` instead."""
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            remaining = job.timeout - self.current_job_working_time
            return int(max(1, min(remaining, interval))) + self.heartbeat_grace
        return interval + self.heartbeat_grace

    def execute_job(self, job: Job, queue) -> None:
        """RQ's, flagged while it runs: a worker that loses Redis in here hands the job's
        execution (`self.execution`, set first thing) to `requeue_stranded` (`_reconnect`)."""
        self.executing = True
        super().execute_job(job, queue)
        self.executing = False
        self._while_redis_may_be_down(self._drop_ended_execution)

    def _drop_ended_execution(self) -> None:
        """The horse has exited: delete its execution's records once more. The horse deletes
        them as it finishes, but RQ 2's monitor loop may heartbeat between that and the horse's
        exit, and the heartbeat's ZADD re-creates the job's execution registry
        (`rq:executions:<job>`, expiring heartbeat TTL + 60 s later) and the execution's hash:
        keys outliving their job by a minute (RQ 3 adds with XX, rq/rq#2472). Nothing
        heartbeats this execution any more, so this removal is final."""
        execution, self.execution = self.execution, None
        if execution is None:  # RQ cleaned it up in this process (a failed horse)
            return
        with self.connection.pipeline() as pipe:
            pipe.zrem(ExecutionRegistry(execution.job_id, self.connection).key, execution.id)
            pipe.delete(execution.key)
            pipe.execute()

    def fork_work_horse(self, job: Job, queue) -> None:
        with _FORK_GUARD:  # not in the middle of a reconcile step
            super().fork_work_horse(job, queue)

    def main_work_horse(self, job: Job, queue) -> None:
        """The work horse's Redis calls (the job's and RQ's around it) may wait for a hung Redis
        up to the heartbeat grace, as the job's required writes do (jobs.py): a timed-out write
        of RQ's would fail a job that trained and published; past the grace it is abandoned."""
        _die_with_parent()
        self.connection.connection_pool.connection_kwargs["socket_timeout"] = self.heartbeat_grace
        super().main_work_horse(job, queue)

    def maintain_heartbeats(self, job: Job) -> None:
        """RQ's heartbeat while the horse works, minus its failure mode: an unreachable Redis
        raised out of the monitor loop and ended the worker (and, via PDEATHSIG, the job)."""
        self._while_redis_may_be_down(lambda: super(TrainingWorker, self).maintain_heartbeats(job))

    def set_current_job_working_time(self, current_job_working_time: float, pipeline=None) -> None:
        """Called by the monitor loop next to the heartbeat; same outage tolerance."""
        self._while_redis_may_be_down(
            lambda: super(TrainingWorker, self).set_current_job_working_time(
                current_job_working_time, pipeline
            )
        )
        self.current_job_working_time = current_job_working_time

    def _while_redis_may_be_down(self, call) -> None:
        try:
            call()
        except queueing.REDIS_ERRORS as exc:
            if self._redis_lost_at is None:
                self._redis_lost_at = time.monotonic()
                log.warning(
                    "worker %s: Redis unreachable (%s); the running job goes on, heartbeats "
                    "resume when Redis is back (within %d s, or the job counts as abandoned)",
                    self.name,
                    exc,
                    self.heartbeat_grace,
                )
            return
        if self._redis_lost_at is not None:
            log.info(
                "worker %s: Redis is back after %.1f s",
                self.name,
                time.monotonic() - self._redis_lost_at,
            )
            self._redis_lost_at = None


def _reconcile_sweeps(settings: TrainerSettings, stop: threading.Event) -> None:
    """The sweep reconcile thread: `sweeps.reconcile` every SWEEP_RECONCILE_SECONDS (±20 %, so
    the workers of one queue do not all knock at once) on a Redis connection of its own, until
    `stop` is set. Errors are logged and the loop goes on: Redis outages included."""
    conn = queueing.connect(settings)
    queue = queueing.make_queue(settings.rq_queue, conn)
    every = float(settings.sweep_reconcile_seconds)
    failing = False
    while not stop.wait(every * random.uniform(0.8, 1.2)):
        try:
            with _FORK_GUARD:
                sweeps.reconcile(conn, queue, settings)
            failing = False
        except queueing.REDIS_ERRORS as exc:
            if not failing:
                log.warning("sweep reconcile: Redis unreachable (%s); trying again", exc)
            failing = True
        except Exception:
            log.exception("sweep reconcile failed; trying again in %.0f s", every)


def warm_up(settings: TrainerSettings) -> None:
    """Imports and datasets every work horse inherits through fork (worker.preload). A failure
    here is logged, never fatal: jobs then load what they need themselves."""
    started = time.perf_counter()
    try:
        preload.import_job_modules()
        importlib.import_module(queueing.JOB_FUNC.rpartition(".")[0])
        loaded = preload.preload_datasets(
            settings.worker_preload_datasets, settings.data_locations()
        )
    except Exception:
        log.exception("warm-up failed; jobs will import and load what they need themselves")
        return
    log.info(
        "warm-up done in %.2fs (preloaded datasets: %s)",
        time.perf_counter() - started,
        ", ".join(loaded) or "none",
    )


def build_worker(settings: TrainerSettings, *, name: str | None = None) -> TrainingWorker:
    """A worker on RQ_QUEUE at REDIS_URL with the heartbeat settings of `settings`."""
    connection = queueing.connect(settings, block=TrainingWorker.dequeue_timeout)
    worker = TrainingWorker(
        [queueing.make_queue(settings.rq_queue, connection)],
        name=name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
        connection=connection,
        serializer=queueing.SERIALIZER,
        job_monitoring_interval=settings.job_heartbeat_seconds,
        default_result_ttl=settings.result_ttl,
    )
    worker.heartbeat_grace = settings.job_heartbeat_grace
    return worker


def run_worker(settings: TrainerSettings, *, burst: bool = False, name: str | None = None) -> bool:
    """Start working; returns when stopped (SIGINT/SIGTERM: warm shutdown, at any moment, start-up
    included) or, in burst mode, when the queue is empty. Returns whether any job was processed."""
    stop_reconciling = threading.Event()
    reconciler: threading.Thread | None = None
    try:  # from the first statement: a stop signal may land anywhere in here
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _stop_while_starting)
        reconciler = threading.Thread(
            target=_reconcile_sweeps, args=(settings, stop_reconciling), name="sweep-reconcile",
            daemon=True,
        )  # fmt: skip
        threads = configure_blas_threads()
        configure_logging(settings.log_level)
        log.info("training worker starting (pid %d); SIGTERM/SIGINT stop it", os.getpid())
        warm_up(settings)
        freeze_loaded_heap()  # before forking work horses
        worker = _connected_worker(settings, name, lambda: False)  # a signal exits here
        log.info(
            "training worker %s on queue %s (BLAS threads %d, heartbeat %ds + %ds grace)",
            worker.name,
            worker.queues[0].name,
            threads,
            worker.job_monitoring_interval,
            worker.heartbeat_grace,
        )
        _THREADS_STARTED.set()
        reconciler.start()
        return _work(worker, settings, burst=burst)
    except StopRequested:
        log.info("stop requested; exiting")
        return False
    finally:
        stop_reconciling.set()
        if reconciler is not None and reconciler.is_alive():
            reconciler.join(5.0)


def _stop_while_starting(signum: int, frame) -> None:
    """SIGTERM/SIGINT before RQ's work loop takes over (imports, dataset preload, connecting).
    Python's defaults would kill the process outright (SIGTERM) or raise KeyboardInterrupt. Until
    the reconcile thread starts, the process has nothing to finish or undo: nothing registered in
    Redis (`TrainingWorker.bootstrap` replaces this handler before it registers), no other thread,
    no job; so it exits at once, 0 (the `os._exit` gunicorn's workers use before their app is
    loaded, shared.web.gunicorn_common). An exception raised from here instead proved fragile: one
    that landed in a weakref callback of the import system was printed and dropped, and the
    start-up went on. From the reconcile thread's start to RQ's bootstrap (a few milliseconds) the
    stop is recorded and bootstrap acts on it."""
    _STARTUP_STOP.set()
    if not _THREADS_STARTED.is_set():
        # os.write: a log call could deadlock on the logging lock the signal interrupted.
        os.write(
            2, f"training worker (pid {os.getpid()}): stop requested while starting\n".encode()
        )
        os._exit(0)


def _work(worker: TrainingWorker, settings: TrainerSettings, *, burst: bool) -> bool:
    """RQ's work loop, reconnecting after Redis outages (see run_worker)."""
    worked = False
    quick_restarts = 0
    while True:
        started = time.monotonic()
        try:
            worked = worker.work(burst=burst, logging_level=settings.log_level) or worked
            problem = "its work loop ended"
        except queueing.REDIS_ERRORS as exc:  # raised by RQ's teardown when Redis is gone
            problem = f"Redis is unreachable ({exc})"
        if burst or _stop_asked(worker):
            return worked
        # RQ's loop quits on a Redis error between jobs; a supervisor would restart the whole
        # process, we just reconnect (and keep the name, so logs and listings stay readable).
        # A loop that keeps ending at once (a bug, not an outage) is restarted ever more slowly.
        quick_restarts = quick_restarts + 1 if time.monotonic() - started < 10 else 0
        log.error("worker %s: %s; reconnecting", worker.name, problem)
        try:
            if quick_restarts > 1:
                time.sleep(min(2.0**quick_restarts, 60.0))
            worker = _reconnect(worker, settings)
        except StopRequested:  # SIGTERM while waiting (RQ's handler raises it when idle)
            return worked


def _stop_asked(worker: TrainingWorker) -> bool:
    """SIGTERM/SIGINT arrived (RQ records the time; its flag alone misses an idle worker)."""
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


def _reconnect(old: TrainingWorker, settings: TrainerSettings) -> TrainingWorker:
    """Wait for Redis (backing off to 5 s), retire the old registration, return a fresh worker."""
    if old.horse_pid:  # never leave a horse behind that nobody monitors
        with contextlib.suppress(OSError):
            old.kill_horse(signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(old.horse_pid, 0)
    with contextlib.suppress(Exception):
        old.unsubscribe()
    # RQ's signal handlers are still the old worker's
    worker = _connected_worker(settings, old.name, lambda: _stop_asked(old))
    # The old connections may still get replies of calls that timed out: a protocol error.
    old.connection.connection_pool.disconnect()
    with contextlib.suppress(RedisError):  # best effort: the old registration expires anyway
        old.register_death()
    with contextlib.suppress(RedisError):  # best effort: RQ's own clean-up fails them later
        requeue_stranded(worker.queues[0], taken=old.execution if old.executing else None)
    log.info("worker %s: Redis answers again; listening on %s", worker.name, worker.queues[0].name)
    return worker


#: A job back to the front of its queue, if still in RQ's intermediate list (one worker of
#: several may try). KEYS: intermediate list, queue; ARGV: job id. With an execution RQ
#: registered for it, that goes too: KEYS also started registry, job's executions, execution;
#: ARGV also the execution's started-registry member, execution id.
_REQUEUE = (
    "if redis.call('lrem', KEYS[1], 1, ARGV[1]) == 0 then return 0 end "
    "if #KEYS > 2 then redis.call('zrem', KEYS[3], ARGV[2]) "
    "redis.call('zrem', KEYS[4], ARGV[3]) redis.call('del', KEYS[5]) end "
    "redis.call('lpush', KEYS[2], ARGV[1]) return 1"
)


def requeue_stranded(queue: Queue, taken: Execution | None = None) -> None:
    """Put back at the front of the queue the jobs that calls lost to a hung Redis left where no
    worker will start them. A call that timed out client-side still runs when Redis resumes
    (Redis executes what a closed connection sent before it closed), so:

    * a dequeue (BLMOVE) moves a job into RQ's intermediate list for a connection gone (RQ fails
      such a job after minutes): every queued job found there twice a second apart, never
      started (a live worker starts its job within milliseconds), goes back;
    * `taken`, the reconnecting worker's last execution: RQ's `prepare_execution` registers it in
      the started registry before the work horse starts, so a worker that lost Redis right there
      leaves a job that looks started and never ran (RQ fails it as abandoned once its heartbeat
      lapses). If that job is still in the intermediate list, no work horse took it (a horse's
      first write takes it out, with its status "started"): the execution goes and the job goes
      back. A job its horse started (and the worker killed) stays: it did run, and fails."""
    if taken is not None:
        registry = queue.started_job_registry
        keys = [queue.intermediate_queue_key, queue.key, registry.key,
                ExecutionRegistry(taken.job_id, queue.connection).key, taken.key]  # fmt: skip
        argv = [taken.job_id, taken.composite_key, taken.id]
        if queue.connection.eval(_REQUEUE, len(keys), *keys, *argv):
            log.warning("job %s: taken as Redis was lost, never started; requeued", taken.job_id)

    def stranded() -> set[str]:
        ids = queue.intermediate_queue.get_job_ids()
        return {i for i in ids if i not in queue.started_job_registry}

    suspects = stranded()
    if suspects:
        time.sleep(1.0)
    for job_id in sorted(suspects & stranded()):
        job = queue.fetch_job(job_id)
        if job is None or job.get_status() != JobStatus.QUEUED:
            continue  # RQ's own clean-up handles it
        if queue.connection.eval(_REQUEUE, 2, queue.intermediate_queue_key, queue.key, job_id):
            log.warning("job %s: dequeued for a connection lost to a hung Redis; requeued", job_id)


def _connected_worker(
    settings: TrainerSettings, name: str | None, stop_asked: Callable[[], bool]
) -> TrainingWorker:
    """`build_worker` (which talks to Redis) once Redis answers, trying again every 0.5 s
    backing off to 5 s while it does not; StopRequested when `stop_asked` meanwhile."""
    delay = 0.5
    while True:
        if stop_asked():
            raise StopRequested()
        try:
            return build_worker(settings, name=name)
        except queueing.REDIS_ERRORS as exc:
            log.warning("worker %s: Redis unreachable (%s); trying again", name or "", exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def add_worker_arguments(parser) -> None:
    parser.add_argument("--burst", action="store_true", help="quit once the queue is empty")
    parser.add_argument("--name", help="worker name (default: host.pid.random)")
    parser.add_argument("--queue", help="queue name (default: $RQ_QUEUE or 'training')")
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (default: $LOG_LEVEL or INFO)")


def worker_command(args) -> int:
    """The options override their variables (None: not given, the environment decides)."""
    settings = TrainerSettings.load(
        {"RQ_QUEUE": args.queue, "REDIS_URL": args.redis_url, "LOG_LEVEL": args.log_level}
    )
    run_worker(settings, burst=args.burst, name=args.name)
    return 0
