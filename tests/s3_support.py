"""A real S3 endpoint for the tests (tests/s3_server.py in its own process, on a free port) and
the registry factory the shared registry suite runs on: every test that takes `registry_factory`
runs once on a folder and once on S3.

The test process gets the standard AWS variables pointing at the server (fake credentials, a
fixed region); services the tests start inherit them through `service_env`. Each test works under
a prefix of its own in one bucket, so nothing is shared between tests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import requests

from shared.registry import Registry
from tests import REPO_ROOT
from tests.trainer_support import PYTHON, free_port, stop_process, tail, wait_for

BUCKET = "digitflow-test"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """tests.s3_server in a subprocess: `endpoint`, a boto3 `client`, and `proxy()` for an
    address that can be taken away and given back (store unreachable / back)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = self._start("serve", str(self.port), log=tmp / f"s3-{self.port}.log")
        self.client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_kwargs())
        self.client.create_bucket(Bucket=BUCKET)

    def _start(self, *args: str, log: Path) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process by stop_process
        proc = subprocess.Popen(
            [PYTHON, "-m", "tests.s3_server", *args],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc._digitflow_log = out  # type: ignore[attr-defined]
        port = int(args[1])

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"tests.s3_server {args} exited:\n{tail(log)}")
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            except requests.RequestException:
                return False
            return True

        wait_for(answers, timeout=30, interval=0.1, what=f"tests.s3_server {args[0]} on {port}")
        return proc

    def url(self, prefix: str | None = None) -> str:
        """A registry URL under a prefix of its own."""
        return f"s3://{BUCKET}/{prefix or uuid.uuid4().hex}"

    @contextlib.contextmanager
    def proxy(self) -> Iterator[Proxy]:
        proxy = Proxy(self)
        try:
            yield proxy
        finally:
            proxy.stop()

    def close(self) -> None:
        stop_process(self.proc)


class Proxy:
    """A TCP forwarder to the server: `stop()` refuses connections, `start()` (same port)
    forwards again; the server and its data are untouched."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = self.server.tmp / f"proxy-{self.port}.log"
        self.proc = self.server._start("proxy", str(self.port), str(self.server.port), log=log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def _boto_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


def s3_env(endpoint: str) -> dict[str, str]:
    """The standard AWS variables a process needs to reach `endpoint`."""
    return {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}


class RegistryFactory:
    """Registries of one kind for one test: ``make()`` opens the test's registry (another
    object on the same store each call), ``url`` is what MODEL_REGISTRY_URL would say. The
    test-side helpers to damage a store (`put_object`, `object_bytes`, `delete_object`) act on
    the key a local path would be under the root, whatever the kind."""

    def __init__(self, kind: str, tmp: Path, server: S3Server | None) -> None:
        self.kind = kind
        self.tmp = tmp
        self.server = server
        if kind == "local":
            self.root: Path | None = tmp / "models"
            self.url = str(self.root)
        else:
            assert server is not None
            self.root = None
            self.prefix = uuid.uuid4().hex
            self.url = server.url(self.prefix)

    def make(self, **kwargs) -> Registry:
        if self.kind == "s3":
            kwargs.setdefault("cache_dir", self.tmp / "s3-cache")
        return Registry(self.url, **kwargs)

    def env(self) -> dict[str, str]:
        """What a service needs in its environment to open this registry."""
        if self.kind == "local":
            return {"MODEL_REGISTRY_DIR": self.url}
        assert self.server is not None
        return {"MODEL_REGISTRY_URL": self.url, **s3_env(self.server.endpoint)}

    # ---- reaching under the registry: the objects of a version ------------------------------

    def version_key(self, reg: Registry, name: str, version: int, fname: str) -> str:
        """Where file `fname` of a version is: a path locally, an object key on S3."""
        if self.kind == "local":
            return str(reg.root / name / str(version) / fname)
        rec = reg.storage._doc(name)[1]["versions"][str(version)]
        return f"{self.prefix}/{name}/uploads/{rec['upload']}/{fname}"

    def read(self, reg: Registry, name: str, version: int, fname: str) -> bytes:
        key = self.version_key(reg, name, version, fname)
        if self.kind == "local":
            return Path(key).read_bytes()
        return self.server.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def write(self, reg: Registry, name: str, version: int, fname: str, data: bytes) -> None:
        key = self.version_key(reg, name, version, fname)
        if self.kind == "local":
            Path(key).write_bytes(data)
        else:
            self.server.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def remove(self, reg: Registry, name: str, version: int, fname: str) -> None:
        key = self.version_key(reg, name, version, fname)
        if self.kind == "local":
            Path(key).unlink()
        else:
            self.server.client.delete_object(Bucket=BUCKET, Key=key)

    def write_state(self, name: str, data: bytes) -> None:
        """Overwrite the model's state file / object (to corrupt it)."""
        if self.kind == "local":
            (self.root / name / "state.json").write_bytes(data)
        else:
            key = f"{self.prefix}/{name}/state.json"
            self.server.client.put_object(Bucket=BUCKET, Key=key, Body=data)
