"""A digitflow deployment over several "hosts" on this one machine: network namespaces.

Used by tests/integration/test_multihost.py (what must hold when the services run on separate
machines) and benchmarks/scaling.py (what it costs). Not product code: it only starts the
services' real entry points (the commands of docker-compose.yml and the Procfile) with the
environment each host would have, so that every byte between services crosses a network link.

Topology (needs root, `ip` from iproute2, and Debian's haproxy):

    root namespace (the test or benchmark: the client)  10.A.B.1 on bridge dfb-<run>
      ├─ veth ─ redis      redis-server :6379            (the queue)
      ├─ veth ─ store      moto's S3 server :5000        (only when the registry is S3)
      ├─ veth ─ api        trainer API (gunicorn) :8001
      ├─ veth ─ worker1..N python -m trainer_service worker (one BLAS thread each)
      ├─ veth ─ infer1..M  inference (gunicorn) :8000
      └─ veth ─ lb         haproxy :8080 → infer1..M (health checks on /readyz, retries,
                           redispatch), stats on :8404

Every host is a namespace `dfc-<run>-<owner pid>-<host>` with its loopback and one veth on the
run's bridge; the subnet is a random free 10.x.y.0/24, so parallel runs (other helpers, CI) never
meet. Each namespace has its own port space, so every service listens on its usual port. The
hosts share the file system (that is what makes the local-directory registry "a shared volume";
with an S3 registry nothing but the datasets is shared). Traffic only goes to loopback and the
namespaces' own addresses: no route leaves the bridge.

`Cluster.close()` (also on `with` exit) kills every process in every namespace (`ip netns pids`),
deletes the namespaces and the bridge; namespaces left by a run whose process died (SIGKILL of
the test runner) are removed by the next `Cluster` that starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import REPO_ROOT, stop_process_group
from shared.blas import BLAS_THREAD_VARIABLES

PREFIX = "dfc"  # namespace names: dfc-<run>-<owner pid>-<host>
NS_PATTERN = re.compile(rf"^{PREFIX}-([0-9a-f]{{6}})-(\d+)-")
REDIS_PORT = 6379
STORE_PORT = 5000
API_PORT = 8001
INFERENCE_PORT = 8000
BALANCER_PORT = 8080
STATS_PORT = 8404


class ClusterError(RuntimeError):
    """The cluster could not be built (no root, no `ip`, no haproxy, a service did not start)."""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (ip, mostly); on failure raise ClusterError with its stderr."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise ClusterError(f"{args[0]} is not installed: {exc}") from None
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_pids(ns: str) -> list[int]:
    """Every process whose network namespace is `ns`."""
    out = sh("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace(ns: str, timeout: float = 10.0) -> int:
    """SIGKILL every process in `ns` until none is left; how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := namespace_pids(ns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        if time.monotonic() > deadline:
            raise ClusterError(f"processes {pids} in {ns} survive SIGKILL")
        time.sleep(0.05)
    return len(killed)


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces (and bridges) of runs whose owner process no longer exists."""
    removed = []
    names = [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]
    bridges: set[str] = set()
    for ns in names:
        match = NS_PATTERN.match(ns)
        if not match or _pid_alive(int(match.group(2))):
            continue
        kill_namespace(ns)
        sh("ip", "netns", "del", ns, check=False)
        bridges.add(f"dfb-{match.group(1)}")
        removed.append(ns)
    for bridge in bridges:
        run = bridge.removeprefix("dfb-")
        for line in sh("ip", "-o", "link", "show").stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(f"dv{run}"):
                sh("ip", "link", "del", name, check=False)
        sh("ip", "link", "del", bridge, check=False)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address or route of this machine overlaps."""
    used = []
    for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    for line in sh("ip", "-4", "-o", "addr").stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.ip_network(line.split()[3], strict=False))
    used = [n for n in used if n.prefixlen > 0]  # the default route overlaps everything
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(1, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise ClusterError("no free 10.x.y.0/24 subnet found")


@dataclass
class Proc:
    """A process started in a host's namespace."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class Host:
    """One namespace: a name, an address on the bridge, the processes started in it."""

    name: str
    ns: str
    ip: str
    logs: Path
    veth: str = ""  # its end on the bridge: deleting it deletes the pair at once
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        """`ip netns exec <ns> argv` with exactly `env`, in the repository, logging to a file."""
        log_path = self.logs / f"{self.name}-{name}-{len(self.procs)}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed by close()
        try:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> int:
        """SIGKILL every process in this host's namespace (a lost machine); reap ours."""
        n = kill_namespace(self.ns)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
        return n

    def stop(self, proc: Proc, timeout: float = 15.0) -> None:
        """SIGTERM a process group we started, SIGKILL after `timeout`."""
        stop_process_group(proc.popen, timeout)


# --- where the registry lives -------------------------------------------------------------------


@dataclass
class LocalRegistry:
    """The registry in a folder every host sees (the shared volume of docker-compose)."""

    root: Path
    label: str = "local directory"

    def env(self, cluster: Cluster, host: str) -> dict[str, str]:
        return {"MODEL_REGISTRY_DIR": str(self.root)}

    def prepare(self, cluster: Cluster) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def open(self, cluster: Cluster, writable: bool = False) -> Any:
        """A Registry for the observer (the test, the benchmark): read-only unless asked."""
        from shared.registry import Registry

        return Registry(self.root, read_only=not writable)


@dataclass
class S3Registry:
    """The registry in an S3 bucket: moto's S3 server (`moto[server]`) on host `store`.

    Each host gets MODEL_REGISTRY_URL and the standard AWS variables, and a download cache of its
    own (REGISTRY_CACHE_DIR): machines share nothing but the bucket. `Cluster.store_down()` takes
    the store's link down (the data survives: moto keeps it in memory), `store_up()` brings it
    back.
    """

    bucket: str = "digitflow"
    prefix: str = "models"
    label: str = "S3 (moto server)"
    region: str = "us-east-1"
    access_key: str = "digitflow-cluster"
    secret_key: str = "digitflow-cluster-secret"  # moto accepts any; nothing real is reached

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def aws_env(self, cluster: Cluster) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": f"http://{cluster.hosts['store'].ip}:{STORE_PORT}",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def env(self, cluster: Cluster, host: str) -> dict[str, str]:
        cache = cluster._private_dir(f"{host}-registry-cache")
        return {
            "MODEL_REGISTRY_URL": self.url,
            "REGISTRY_CACHE_DIR": str(cache),
            **self.aws_env(cluster),
        }

    def prepare(self, cluster: Cluster) -> None:
        """moto's S3 server on its own host, and the bucket. It runs as tests/s3_server.py runs
        it (moto's server app, one request at a time): moto checks a conditional write's
        If-Match and then stores without a lock, and S3 makes that atomic, which the registry's
        version numbering relies on when two worker hosts publish at once."""
        host = cluster.hosts.get("store") or cluster.add_host("store")
        argv = [sys.executable, "-m", "tests.s3_server", "serve", str(STORE_PORT), host.ip]
        proc = host.start("s3", argv, _python_env({}))
        endpoint = self.aws_env(cluster)["AWS_ENDPOINT_URL"]
        cluster.wait(
            lambda: requests.get(endpoint, timeout=2).status_code < 500, proc, 30, "the S3 server"
        )
        self.client(cluster).create_bucket(Bucket=self.bucket)

    def client(self, cluster: Cluster) -> Any:
        """A boto3 S3 client for the bucket (the observer's, never a service's)."""
        import boto3

        aws = self.aws_env(cluster)
        return boto3.client(
            "s3",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def open(self, cluster: Cluster, writable: bool = False) -> Any:
        """A Registry on the bucket for the observer. The endpoint and credentials are the
        standard AWS variables, so they are set in this process's environment."""
        from shared.registry import Registry

        os.environ.update(self.aws_env(cluster))
        cache = cluster._private_dir("observer-registry-cache")
        return Registry(self.url, read_only=not writable, cache_dir=cache)


# --- the cluster --------------------------------------------------------------------------------


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    """What every Python service gets: the machine's PATH and locale, one BLAS thread, no proxy
    settings (all traffic is to namespace addresses), unbuffered output, plus `extra`."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    env.update(extra)
    return env


HAPROXY_CFG = """\
# digitflow cluster balancer: health-checked replicas, retries that move to another replica.
global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    timeout http-request 10s
    # a health check may wait behind the requests a saturated replica is answering (sync
    # workers answer one at a time): without this, haproxy would give it only `inter` (250 ms),
    # mark every busy replica DOWN and answer 503 itself. A dead replica refuses at once anyway.
    timeout check 2s
    # a request that hits a dead or dying replica (refused, reset, empty answer, 502-504) is
    # sent again, each time to another replica (redispatch every retry): the client sees nothing
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    option http-buffer-request
frontend predictions
    bind {ip}:{port}
    default_backend inference
backend inference
    balance roundrobin
    # a replica gets traffic once /readyz is 200 (its default versions loaded) twice in a row,
    # and none after two failed checks
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 250ms fastinter 150ms downinter 250ms fall 2 rise 2
{servers}
listen stats
    bind {ip}:{stats_port}
    stats enable
    stats uri /stats
    stats refresh 0
"""


class Cluster:
    """The hosts of one run. Use as a context manager; every method raises ClusterError (with
    the relevant log) when something does not come up."""

    def __init__(
        self,
        workdir: Path,
        *,
        data_dir: Path,
        registry: LocalRegistry | S3Registry | None = None,
        queue: str = "training",
        heartbeat_seconds: int = 1,
        heartbeat_grace: int = 3,
        registry_poll_seconds: float = 0.5,
        inference_workers: int = 2,
        worker_preload: str = "mnist",
    ) -> None:
        if os.geteuid() != 0:
            raise ClusterError("network namespaces need root (CI runs as root)")
        if shutil.which("ip") is None:
            raise ClusterError("`ip` (iproute2) is not installed")
        self.workdir = Path(workdir)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir)
        self.registry = registry or LocalRegistry(self.workdir / "models")
        self.queue = queue
        self.heartbeat = (heartbeat_seconds, heartbeat_grace)
        self.poll_seconds = registry_poll_seconds
        self.inference_workers = inference_workers
        self.worker_preload = worker_preload
        self.run_id = uuid.uuid4().hex[:6]
        self.bridge = f"dfb-{self.run_id}"
        self.hosts: dict[str, Host] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self._addresses: Iterator[ipaddress.IPv4Address] | None = None
        self._balanced: list[str] = []
        self.balancer_proc: Proc | None = None
        self._observer: Any = None
        self.stale_removed = remove_stale_namespaces()
        try:
            self._make_bridge()
        except BaseException:
            self.close()
            raise

    # -- network ---------------------------------------------------------------------------------

    def _make_bridge(self) -> None:
        self.subnet = _free_subnet()
        self._addresses = self.subnet.hosts()
        self.gateway = str(next(self._addresses))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        """A new namespace with loopback up and one veth on the bridge."""
        if name in self.hosts:
            raise ClusterError(f"host {name} exists")
        assert self._addresses is not None
        ip = str(next(self._addresses))
        ns = f"{PREFIX}-{self.run_id}-{os.getpid()}-{name}"
        index = len(self.hosts)
        outside, inside = f"dv{self.run_id}{index}", f"dp{self.run_id}{index}"
        sh("ip", "netns", "add", ns)
        host = Host(name, ns, ip, self.logs, veth=outside)
        self.hosts[name] = host
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", outside, "master", self.bridge)
        sh("ip", "link", "set", outside, "up")
        sh("ip", "link", "set", inside, "netns", ns)
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "set", inside, "name", "eth0"),
            ("addr", "add", f"{ip}/24", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
        ):
            sh("ip", "-n", ns, *args)
        return host

    # -- services --------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://{self.hosts['redis'].ip}:{REDIS_PORT}/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.hosts['api'].ip}:{API_PORT}"

    @property
    def balancer_url(self) -> str:
        return f"http://{self.hosts['lb'].ip}:{BALANCER_PORT}"

    def replica_url(self, name: str) -> str:
        return f"http://{self.hosts[name].ip}:{INFERENCE_PORT}"

    @property
    def replicas(self) -> list[str]:
        return sorted(h for h in self.hosts if h.startswith("infer"))

    @property
    def workers(self) -> list[str]:
        return sorted(h for h in self.hosts if h.startswith("worker"))

    def up(self, workers: int = 2, replicas: int = 2, balancer: bool = True) -> Cluster:
        """Redis, the registry, the API, `workers` worker hosts, `replicas` inference hosts and
        the balancer, each on its own host; returns once each answers."""
        self.start_redis()
        self.registry.prepare(self)
        self.start_api()
        for i in range(1, workers + 1):
            self.start_worker(f"worker{i}", wait=False)
        for i in range(1, replicas + 1):
            self.start_inference(f"infer{i}", wait=False)
        for name in self.workers:
            self.wait_worker(name)
        for name in self.replicas:
            self.wait_http(self.hosts[name].procs[-1], self.replica_url(name) + "/healthz")
        if balancer:
            self.start_balancer(self.replicas)
        return self

    def start_redis(self) -> Proc:
        from shared.redis_embedded import redis_server_binary

        host = self.hosts.get("redis") or self.add_host("redis")
        folder = self.workdir / "redis"
        folder.mkdir(exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind", host.ip, "127.0.0.1",
            "--port", str(REDIS_PORT),
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        proc = host.start("redis", argv, {"PATH": os.environ.get("PATH", "")})
        import redis

        def pong() -> bool:
            try:
                with redis.Redis.from_url(self.redis_url, socket_timeout=1) as r:
                    return bool(r.ping())
            except redis.RedisError:
                return False

        self.wait(pong, proc, 15, "Redis to answer PING")
        return proc

    def service_env(self, host: str, **extra: str) -> dict[str, str]:
        """The environment digitflow gets on `host`: the registry's variables plus `extra`."""
        return _python_env({**self.registry.env(self, host), "LOG_LEVEL": "INFO", **extra})

    def store_down(self) -> None:
        """The object store becomes unreachable (its link goes down; its data is kept)."""
        sh("ip", "-n", self.hosts["store"].ns, "link", "set", "eth0", "down")

    def store_up(self) -> None:
        sh("ip", "-n", self.hosts["store"].ns, "link", "set", "eth0", "up")

    def start_api(self) -> Proc:
        host = self.hosts.get("api") or self.add_host("api")
        env = self.service_env(
            "api",
            REDIS_URL=self.redis_url,
            RQ_QUEUE=self.queue,
            TRAINER_PORT=str(API_PORT),
            WEB_CONCURRENCY="2",
            JOB_HEARTBEAT_SECONDS=str(self.heartbeat[0]),
            JOB_HEARTBEAT_GRACE=str(self.heartbeat[1]),
            XDG_RUNTIME_DIR=str(self._private_dir("api-run")),
        )
        argv = [
            sys.executable, "-m", "gunicorn",
            "-c", "trainer_service/api/gunicorn.conf.py", "trainer_service.api.app:create_app()",
        ]  # fmt: skip
        proc = host.start("trainer-api", argv, env)
        self.wait_http(proc, self.api_url + "/healthz")
        return proc

    def start_worker(self, name: str, wait: bool = True) -> Proc:
        """`python -m trainer_service worker` on host `name` (created if new), one BLAS thread."""
        host = self.hosts.get(name) or self.add_host(name)
        env = self.service_env(
            name,
            REDIS_URL=self.redis_url,
            RQ_QUEUE=self.queue,
            DATA_DIR=str(self.workdir / "data"),
            MNIST_DATA_DIR=str(self.data_dir),
            JOB_HEARTBEAT_SECONDS=str(self.heartbeat[0]),
            JOB_HEARTBEAT_GRACE=str(self.heartbeat[1]),
            JOB_RETRIES="0",
            WORKER_PRELOAD_DATASETS=self.worker_preload,
            MPLCONFIGDIR=str(self._private_dir(f"{name}-mpl")),
        )
        worker_name = f"{name}.{self.run_id}.{len(host.procs)}"
        argv = [sys.executable, "-m", "trainer_service", "worker", "--name", worker_name]
        proc = host.start("worker", argv, env)
        proc.worker_name = worker_name  # type: ignore[attr-defined]
        if wait:
            self.wait_worker(name)
        return proc

    def wait_worker(self, name: str, timeout: float = 60) -> None:
        """Until the newest worker of host `name` is registered on the queue in Redis."""
        import redis

        proc = self.hosts[name].procs[-1]
        wanted = f"rq:worker:{proc.worker_name}"  # type: ignore[attr-defined]

        def registered() -> bool:
            with redis.Redis.from_url(self.redis_url, socket_timeout=2) as r:
                return bool(r.sismember(f"rq:workers:{self.queue}", wanted))

        self.wait(registered, proc, timeout, f"worker {proc.worker_name} to register")  # type: ignore[attr-defined]

    def worker_host(self, worker_name: str | None) -> str | None:
        """The host a worker name (as the jobs API reports it) runs on."""
        return worker_name.split(".", 1)[0] if worker_name else None

    def start_inference(self, name: str, wait: bool = True) -> Proc:
        """The inference service under gunicorn on host `name` (created if new)."""
        host = self.hosts.get(name) or self.add_host(name)
        prom = self._private_dir(f"{name}-prom-{len(host.procs)}")
        env = self.service_env(
            name,
            INFERENCE_PORT=str(INFERENCE_PORT),
            WEB_CONCURRENCY=str(self.inference_workers),
            GUNICORN_THREADS="1",
            REGISTRY_POLL_SECONDS=str(self.poll_seconds),
            ACCESS_LOG="off",
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            XDG_RUNTIME_DIR=str(self._private_dir(f"{name}-run")),
        )
        argv = [
            sys.executable, "-m", "gunicorn",
            "-c", "inference_service/gunicorn.conf.py", "inference_service.app:create_app()",
        ]  # fmt: skip
        proc = host.start("inference", argv, env)
        if wait:
            self.wait_http(proc, self.replica_url(name) + "/healthz")
        return proc

    def start_balancer(self, replicas: list[str]) -> Proc:
        """haproxy in front of `replicas`, on host `lb`."""
        binary = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
        )
        if binary is None:
            raise ClusterError("haproxy is not installed (scripts/ensure-system-tools.sh)")
        host = self.hosts.get("lb") or self.add_host("lb")
        servers = "\n".join(
            f"    server {r} {self.hosts[r].ip}:{INFERENCE_PORT} check" for r in replicas
        )
        cfg = self.workdir / f"haproxy-{len(host.procs)}.cfg"
        cfg.write_text(
            HAPROXY_CFG.format(
                ip=host.ip, port=BALANCER_PORT, stats_port=STATS_PORT, servers=servers
            )
        )
        sh(binary, "-c", "-q", "-f", str(cfg))
        if self.balancer_proc is not None:
            host.stop(self.balancer_proc)
        proc = host.start(
            "haproxy", [binary, "-db", "-f", str(cfg)], {"PATH": "/usr/sbin:/usr/bin"}
        )
        self.balancer_proc = proc
        self._balanced = list(replicas)
        self.wait_http(proc, f"http://{host.ip}:{STATS_PORT}/stats")
        return proc

    def balancer_stats(self) -> dict[str, dict[str, str]]:
        """haproxy's counters per row (`inference/infer1`, `inference/BACKEND`, ...): requests,
        retries (wretr), redispatches (wredis), 5xx, status."""
        host = self.hosts["lb"]
        text = requests.get(f"http://{host.ip}:{STATS_PORT}/stats;csv", timeout=5).text
        lines = text.lstrip("# ").splitlines()
        header = lines[0].split(",")
        rows = {}
        for line in lines[1:]:
            values = dict(zip(header, line.split(","), strict=False))
            rows[f"{values['pxname']}/{values['svname']}"] = values
        return rows

    def observer(self) -> Any:
        """The test's or benchmark's read-only Registry on the cluster's registry, opened once
        (an S3 one holds a boto3 client: making one costs ~0.1-0.3 s of CPU)."""
        if self._observer is None:
            self._observer = self.registry.open(self)
        return self._observer

    def client(self) -> Any:
        """The product's client, pointed at the API host and the balancer."""
        from shared.client import DigitflowClient

        lb = self.balancer_url if "lb" in self.hosts else self.replica_url(self.replicas[0])
        return DigitflowClient(self.api_url, lb, token="")

    # -- what the replicas serve -----------------------------------------------------------------

    def serving(self, replica: str, model: str, burst: int = 4) -> dict[int, int | None]:
        """pid → the version of `model` that worker of `replica` serves, for every worker that
        answered a burst of concurrent /readyz calls (fresh connections: each worker accepts)."""
        url = self.replica_url(replica) + "/readyz"

        def one(_: int) -> dict:
            return requests.get(url, timeout=5).json()

        with ThreadPoolExecutor(max_workers=burst) as pool:
            views = list(pool.map(one, range(burst)))
        return {v["pid"]: (v["models"].get(model) or {}).get("serving") for v in views}

    def wait_served(
        self, replica: str, model: str, version: int, timeout: float, interval: float = 0.05
    ) -> float:
        """Until every worker of `replica` serves `version` of `model`: the monotonic time then
        (the first look at which the last worker reported it)."""
        seen: dict[int, int | None] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError):
                seen.update(self.serving(replica, model))
            if len(seen) >= self.inference_workers and all(v == version for v in seen.values()):
                return time.monotonic()
            time.sleep(interval)
        raise ClusterError(f"{replica} does not serve {model}:{version} after {timeout} s: {seen}")

    def wait_served_everywhere(
        self, model: str, version: int, timeout: float, interval: float = 0.05
    ) -> dict[str, float]:
        """replica → when it served `version` (monotonic), every replica watched at once."""
        with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
            futures = {
                r: pool.submit(self.wait_served, r, model, version, timeout, interval)
                for r in self.replicas
            }
            return {r: f.result() for r, f in futures.items()}

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process in the cluster's namespaces, with the children
        they reaped (a job's work horse): what this deployment costs the machine."""
        total = 0.0
        for host in self.hosts.values():
            for pid in namespace_pids(host.ns):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return total / os.sysconf("SC_CLK_TCK")

    # -- waiting ---------------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], Any], proc: Proc, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise ClusterError(f"{proc.name} exited while waiting for {what}:\n{proc.log()}")
            with contextlib.suppress(Exception):
                if value := predicate():
                    return value
            time.sleep(0.1)
        raise ClusterError(f"timed out after {timeout} s waiting for {what}:\n{proc.log()}")

    def wait_http(self, proc: Proc, url: str, timeout: float = 60) -> None:
        self.wait(
            lambda: requests.get(url, timeout=2).status_code == 200, proc, timeout, f"{url} 200"
        )

    def _private_dir(self, name: str) -> Path:
        path = self.workdir / "private" / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    # -- teardown --------------------------------------------------------------------------------

    def logs_tail(self, lines: int = 25) -> str:
        """The end of every process's log, for a failure message."""
        return "\n".join(
            f"--- {host.name}/{proc.name} ({proc.log_path.name})\n{proc.log(lines)}"
            for host in self.hosts.values()
            for proc in host.procs
        )

    def close(self) -> None:
        """Kill every process of every host, delete the namespaces and the bridge. Idempotent."""
        problems = []
        for host in list(self.hosts.values()):
            try:
                host.kill_all()
            except ClusterError as exc:
                problems.append(str(exc))
            # Deleting a namespace frees its veth only once nothing refers to the namespace any
            # more (sockets in TIME_WAIT do, for a minute): delete the pair ourselves.
            sh("ip", "link", "del", host.veth, check=False)
            sh("ip", "netns", "del", host.ns, check=False)
            del self.hosts[host.name]
        sh("ip", "link", "del", self.bridge, check=False)
        left = [ns for ns in sh("ip", "netns", "list").stdout.split() if self.run_id in ns]
        left += [
            line.split(":")[1].strip()
            for line in sh("ip", "-o", "link", "show").stdout.splitlines()
            if f"{self.run_id}" in line.split(":")[1]
        ]
        if problems or left:
            raise ClusterError(f"cleanup incomplete: {problems} {left}")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
