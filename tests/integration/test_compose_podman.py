"""docker-compose.yml run for real: the project's Dockerfile built and the stack brought up by
docker-compose, on a machine with no Docker engine and no image registry.

How: podman (rootful, runc; scripts/podman/containers.conf and storage.conf, storage of the
project's own) serves the Docker API on a socket of this run (`podman system service`), and
Debian's docker-compose 1.29 drives it through DOCKER_HOST. The public base images the Dockerfile
and compose file name are stand-ins built from Debian bookworm by scripts/podman/standin-images.sh
(cached: built once per machine), and the project image's layers are cached in the same storage,
so only the first run on a machine pays for debootstrap and pip. podman runs no healthchecks
without systemd, so this test runs them itself (`podman healthcheck run`, what the engine's timer
would do) while compose waits for a healthy Redis, and until every checked service passes.

The scenario: build the image, `up -d`, healthy; seed MNIST with the README's offline recipe
(files from MNIST_DATA_DIR); train through the trainer's published port; predict through
inference's with the new version; `--scale trainer-worker=2`: two workers registered, and two
jobs submitted together run on the two worker containers; the "proxy" profile with two inference
replicas: haproxy answers from both; the inference containers cannot write the models volume;
no process of any container runs as root.

The compose project name, the socket and the host ports are this run's own; runs on the same
storage take turns (they share the image tag). Everything a run creates (containers, volumes,
network, the service and its socket) is removed at the end, pass or fail; images stay: they are
the cache. The time of each phase is printed (`-s`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.client import DigitflowClient
from shared.datasets import load_dataset
from shared.redis_embedded import free_port
from tests import REPO_ROOT
from tests.trainer_support import wait_for

PODMAN_DIR = REPO_ROOT / "scripts" / "podman"
CONTAINERS_CONF = PODMAN_DIR / "containers.conf"
STORAGE_CONF = PODMAN_DIR / "storage.conf"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
#: The services with a healthcheck in docker-compose.yml.
HEALTHCHECKED = ("redis", "trainer-api", "inference", "inference-replica")
APP_UID = 10001
SMALL = {"hidden_layers": [64], "epochs": 2, "train_limit": 3000}


# ---- podman and compose ---------------------------------------------------------------------


def podman_env() -> dict[str, str]:
    """A clean environment selecting the project's podman configuration and storage."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin") + ":/usr/sbin:/sbin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF),
    }


def run(argv: list[str], env: dict[str, str], timeout: float, check: bool = True, **kw):
    """A command to completion; its output is in the failure message."""
    result = subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check:
        assert result.returncode == 0, (
            f"{shlex.join(argv)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def require_tools() -> None:
    missing = [
        t for t in ("podman", "runc", "debootstrap", "docker-compose") if not shutil.which(t)
    ]
    if missing:
        pytest.fail(f"{missing} not installed: `make install` (scripts/ensure-system-tools.sh)")
    if os.geteuid() != 0:
        pytest.fail("the compose test runs rootful podman: run it as root (CI does)")


@contextlib.contextmanager
def storage_turn(timeout: float = 900) -> Iterator[None]:
    """Runs on the same podman storage take turns: they build and run the same image tag."""
    graphroot = Path(tomllib.loads(STORAGE_CONF.read_text())["storage"]["graphroot"])
    graphroot.parent.mkdir(parents=True, exist_ok=True)
    with (graphroot.parent / "compose-test.lock").open("w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another compose test run held the storage for {timeout} s")
                time.sleep(1)
        yield


class PodmanService:
    """`podman system service` on a socket of this run: the Docker API for docker-compose."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.log = workdir / "podman-service.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=podman_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self.ping, 60, interval=0.2, what="the podman service to answer /_ping")
        except AssertionError:
            self.close()
            log = self.log.read_text()[-3000:]
            raise AssertionError(f"podman service did not start:\n{log}") from None

    def ping(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
                status_line = s.recv(1024).split(b"\r\n", 1)[0]
                return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "
        except OSError:
            return False

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.socket.unlink(missing_ok=True)


class Compose:
    """docker-compose on this run's project, env file and podman service."""

    def __init__(
        self, service: PodmanService, project: str, env_file: Path, ports: dict[str, int]
    ) -> None:
        self.project = project
        self.ports = ports
        self.url = service.url
        self.env = {**podman_env(), "DOCKER_HOST": service.url}
        self.base = ["docker-compose", "--env-file", str(env_file), "-p", project]
        self.base += ["-f", str(COMPOSE_FILE)]

    def __call__(self, *args: str, timeout: float = 300, check: bool = True, **kw):
        return run([*self.base, *args], self.env, timeout, check, **kw)

    def podman(self, *args: str, timeout: float = 60, check: bool = True):
        return run(["podman", "--remote", "--url", self.url, *args], self.env, timeout, check)

    def containers(self, service: str | None = None, *, all: bool = False) -> list[str]:
        """Ids of this project's (running, or all) containers, of one service or every one."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = self.podman("ps", "-q", "--no-trunc", *(["-a"] if all else []), *filters).stdout
        return out.split()

    def healthcheck(self, container: str) -> bool:
        """Run the container's healthcheck once, as the engine's timer would; True if it passed."""
        return self.podman("healthcheck", "run", container, timeout=30, check=False).returncode == 0

    def inspect(self, container: str, template: str) -> str:
        return self.podman("inspect", "--format", template, container).stdout.strip()

    def logs(self) -> str:
        return self("logs", "--no-color", "--tail", "40", timeout=60, check=False).stdout[-6000:]

    def remove_everything(self) -> None:
        """Containers, volumes and network of this project, whatever state the run left."""
        self(
            "--profile", "proxy", "down", "-v", "--remove-orphans", "-t", "5",
            timeout=180, check=False,
        )  # fmt: skip
        label = f"label=com.docker.compose.project={self.project}"
        left = self.containers(all=True)
        if left:
            self.podman("rm", "-f", "-v", *left, timeout=120, check=False)
        volumes = self.podman("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
        if volumes:
            self.podman("volume", "rm", "-f", *volumes, check=False)
        self.podman("network", "rm", "-f", f"{self.project}_default", check=False)


@contextlib.contextmanager
def healthchecks_running(compose: Compose, interval: float = 2.0) -> Iterator[None]:
    """The engine's healthcheck timer, which podman lacks without systemd: every `interval`
    seconds, each running container of a healthchecked service runs its check."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            for service in HEALTHCHECKED:
                try:
                    containers = compose.containers(service)
                except (AssertionError, subprocess.TimeoutExpired):
                    continue  # a busy moment of the service: the next round asks again
                for container in containers:
                    if stop.is_set():
                        return
                    compose.healthcheck(container)

    thread = threading.Thread(target=loop, name="healthchecks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def wait_healthy(compose: Compose, timeout: float = 180) -> None:
    """Every running container of a healthchecked service passes its check (and podman's state
    says healthy, as `docker-compose ps` shows it)."""
    pending = {c for s in HEALTHCHECKED for c in compose.containers(s)}
    assert pending, "no healthchecked container is running"
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {c for c in pending if not compose.healthcheck(c)}
        if pending:
            time.sleep(1)
    assert not pending, f"not healthy after {timeout} s: {pending}\n{compose.logs()}"


def processes_in(cgroup: str) -> list[tuple[int, str, list[int]]]:
    """(pid, name, [real, effective, saved, filesystem uid]) of every process of the container
    whose cgroup is `cgroup` (podman's State.CgroupPath: all its processes, its init included),
    read from the host's /proc. cgroup v1 (the pids controller) or v2."""
    for root in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        procs = Path(root + cgroup) / "cgroup.procs"
        if procs.exists():
            break
    else:
        raise AssertionError(f"no cgroup.procs for {cgroup}")
    found = []
    for pid in procs.read_text().split():
        try:
            status = (Path("/proc") / pid / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines())
        found.append((int(pid), fields["Name"].strip(), [int(u) for u in fields["Uid"].split()]))
    return found


def readme_seed_command(mnist_dir: Path, compose: Compose) -> str:
    """The README's offline recipe for putting MNIST into the data volume, for this run."""
    readme = (REPO_ROOT / "README.md").read_text()
    recipes = re.findall(r"`(tar -C /path/to/mnist [^`]+)`", readme)
    assert len(recipes) == 1, f"the README's offline MNIST recipe not found: {recipes}"
    command = recipes[0].replace("/path/to/mnist", shlex.quote(str(mnist_dir)))
    assert "docker compose " in command, command
    return command.replace("docker compose ", shlex.join(compose.base) + " ")


class CachePrewarm:
    """The slow, cacheable part of this test (the stand-in base images, the image's layers: ~9
    minutes on a fresh machine, seconds once cached), started in the background when the session
    begins (tests/integration/conftest.py), while the rest of the suite runs; this test is moved to
    the end. Only a cache: the test still runs every step itself, so whether this finished, failed
    or never ran changes nothing but the time."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.error: str | None = None
        self._processes: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compose-prewarm", daemon=True)
        self._thread.start()

    def _step(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        if self._stopping.is_set():
            raise RuntimeError("stopped")
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(process)
        if process.wait() != 0:
            raise RuntimeError(
                f"{shlex.join(argv)}: {process.returncode}\n{log.read_text()[-2000:]}"
            )

    def _run(self) -> None:
        try:
            with storage_turn():
                self._step(
                    ["bash", str(PODMAN_DIR / "standin-images.sh")],
                    podman_env(),
                    self.workdir / "standin-images.log",
                )
                service = PodmanService(self.workdir)
                self._processes.append(service.process)
                try:
                    (self.workdir / "empty.env").write_text("")
                    build = ["docker-compose", "--env-file", str(self.workdir / "empty.env")]
                    build += ["-f", str(COMPOSE_FILE), "build", "trainer-api"]
                    env = {**podman_env(), "DOCKER_HOST": service.url}
                    self._step(build, env, self.workdir / "build.log")
                finally:
                    service.close()
        except BaseException as exc:  # pytest.fail's Failed too: reported by wait()
            self.error = f"{type(exc).__name__}: {exc}"

    def wait(self) -> str | None:
        """Until it is done; what went wrong, if anything (the test then does it all itself)."""
        self._thread.join()
        return self.error

    def stop(self) -> None:
        """End whatever still runs (the session is over) and wait for the thread."""
        self._stopping.set()
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        self._thread.join(timeout=120)


#: Set by tests/integration/conftest.py when the session selected this test.
PREWARM_KEY = pytest.StashKey[CachePrewarm]()


# ---- the test -------------------------------------------------------------------------------


@pytest.fixture
def compose(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Compose]:
    """A podman service and a compose project of this test's own, removed afterwards."""
    require_tools()
    prewarm = request.config.stash.get(PREWARM_KEY, None)
    if prewarm is not None:
        start = time.monotonic()
        error = prewarm.wait()
        print(f"compose-podman: waited {time.monotonic() - start:.1f} s for the cache prewarm"
              + (f" (it failed: {error})" if error else ""), flush=True)  # fmt: skip
    with storage_turn():
        service = PodmanService(tmp_path)
        ports = {name: free_port() for name in ("TRAINER_PORT", "INFERENCE_PORT", "PROXY_PORT")}
        settings = {**ports, "WORKER_STOP_GRACE_PERIOD": "10s", "OMP_NUM_THREADS": 1}
        env_file = tmp_path / "compose.env"  # OMP: two workers share the two cores
        env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        stack = Compose(service, f"dft{uuid.uuid4().hex[:10]}", env_file, ports)
        try:
            yield stack
        finally:
            try:
                stack.remove_everything()
                assert stack.containers(all=True) == [], "containers left behind"
            finally:
                service.close()
            assert not service.socket.exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_compose_stack_runs_for_real_on_podman(compose: Compose, mnist_dir: Path) -> None:
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        timings[name] = round(time.monotonic() - start, 1)
        print(f"compose-podman: {name}: {timings[name]} s", flush=True)

    trainer, inference, proxy = (
        f"http://127.0.0.1:{compose.ports[name]}"
        for name in ("TRAINER_PORT", "INFERENCE_PORT", "PROXY_PORT")
    )
    client = DigitflowClient(trainer, inference)
    test = load_dataset("mnist", mnist_dir)
    images = (test.x_test[:200] * 255).round().astype(np.uint8)
    labels = test.y_test[:200]

    # 1. The base images (stand-ins, cached) and the project image from its Dockerfile.
    with phase("base images"):
        run(["bash", str(PODMAN_DIR / "standin-images.sh")], podman_env(), timeout=1200)
    with phase("image build"):
        compose("build", "trainer-api", timeout=1500)

    # 2. Up, with the healthchecks run as the engine would; every checked service healthy.
    with phase("up and healthy"):
        with healthchecks_running(compose):
            compose("up", "-d", timeout=300)
        wait_healthy(compose)
    assert {s: len(compose.containers(s)) for s in ("redis", "trainer-api", "trainer-worker",
            "inference", "inference-replica", "proxy")} == {"redis": 1, "trainer-api": 1,
            "trainer-worker": 1, "inference": 1, "inference-replica": 0, "proxy": 0}  # fmt: skip

    # 3. MNIST into the data volume by the README's offline recipe.
    with phase("seed MNIST"):
        seed = readme_seed_command(mnist_dir, compose)
        run(["bash", "-o", "pipefail", "-c", seed], compose.env, timeout=120)
        listed = compose("exec", "-T", "trainer-api", "ls", "/data/mnist").stdout.split()
        assert {"train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} <= set(listed)

    # 4. Train through the trainer's port; predict through inference's with the new version.
    with phase("train and predict"):
        job = client.submit(SMALL)
        final = client.wait(job["job_id"], poll=0.5, timeout=300)
        assert final["status"] == "finished", (final, compose.logs())
        version = final["model_version"]
        assert version == 1
        wait_for(
            lambda: requests.get(f"{inference}/readyz", timeout=5).status_code == 200,
            30,
            what="inference to load the new version",
        )
        answer = client.predict(images, model="mnist", version=version)
        assert answer["model_version"] == version
        accuracy = float(np.mean(np.asarray(answer["predictions"]) == labels))
        assert accuracy > 0.5, accuracy

    # 5. Two workers: both registered with RQ, and two jobs submitted together run on both.
    with phase("scale workers"):
        with healthchecks_running(compose):
            compose("up", "-d", "--scale", "trainer-worker=2", timeout=300)
        workers = compose.containers("trainer-worker")
        assert len(workers) == 2
        wait_for(
            lambda: requests.get(f"{trainer}/readyz", timeout=5).json().get("workers") == 2,
            120,
            interval=0.5,
            what="two workers registered with RQ",
        )
        with ThreadPoolExecutor(2) as pool:
            ids = [client.submit(SMALL)["job_id"] for _ in range(2)]
            finals = list(pool.map(lambda i: client.wait(i, poll=0.5, timeout=300), ids))
        assert [f["status"] for f in finals] == ["finished", "finished"], finals
        assert sorted(f["model_version"] for f in finals) == [2, 3]
        hostnames = {compose.inspect(c, "{{.Config.Hostname}}") for c in workers}
        assert {f["worker"].split(".")[0] for f in finals} == hostnames, (finals, hostnames)

    # 6. The "proxy" profile: inference replicas behind haproxy, each answering.
    with phase("proxy and replicas"):
        with healthchecks_running(compose):
            compose(
                "--profile", "proxy", "up", "-d",
                "--scale", "trainer-worker=2", "--scale", "inference-replica=2",
                timeout=300,
            )  # fmt: skip
            wait_healthy(compose)
        assert len(compose.containers("inference-replica")) == 2
        assert len(compose.containers("trainer-worker")) == 2, "the workers stay scaled"
        expected = client.predict(images[:8], model="mnist", version=3)["predictions"]

        def served_by() -> set[str]:
            seen = set()
            for _ in range(8):
                r = requests.post(
                    f"{proxy}/v1/models/mnist/versions/3/predict",
                    json={"instances": images[:8].tolist()},
                    headers={"Connection": "close"},
                    timeout=10,
                )
                if r.status_code != 200:
                    return set()
                assert r.json()["predictions"] == expected
                seen.add(r.headers["X-Served-By"])
            return seen if len(seen) == 2 else set()

        wait_for(served_by, 60, interval=1, what="answers from both replicas through haproxy")

    # 7. Inference cannot write the models volume: it is mounted read-only.
    for service in ("inference", "inference-replica"):
        for container in compose.containers(service):
            mounts = compose.inspect(container, "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}")
            assert mounts.split() == ["/models=false"], (service, mounts)
            write = compose.podman(
                "exec", container, "sh", "-c", "touch /models/probe", check=False
            )
            assert write.returncode != 0 and "Read-only file system" in write.stderr, write

    # 8. No process of any container runs as root (read from the host, every uid of each).
    containers = compose.containers()
    assert len(containers) == 8  # redis, api, 2 workers, inference, 2 replicas, proxy
    for container in containers:
        name = compose.inspect(container, "{{.Name}}")
        processes = processes_in(compose.inspect(container, "{{.State.CgroupPath}}"))
        init_pid = int(compose.inspect(container, "{{.State.Pid}}"))
        assert init_pid in {p[0] for p in processes}, (name, init_pid, processes)
        root = [p for p in processes if 0 in p[2]]
        assert not root, f"{name}: processes with uid 0: {root}"
        if compose.inspect(container, "{{.Config.Image}}").endswith("digitflow:local"):
            assert {p[2][0] for p in processes} == {APP_UID}, (name, processes)
            uid = compose.podman("exec", container, "id", "-u").stdout.strip()
            assert uid == str(APP_UID), (name, uid)

    with phase("down"):
        compose("--profile", "proxy", "down", "-v", "--remove-orphans", "-t", "10", timeout=180)
    assert compose.containers(all=True) == []
    print(f"compose-podman timings (s): {timings}", flush=True)
