"""Fixtures more than one test layer uses: datasets on disk, a real Redis with a queue of the
test's own, a trainer stack (integration and reliability). What one layer shares lives in that
folder's conftest.py; plain helpers live in tests/*_support.py.

Datasets come from `MNIST_DATA_DIR` / `FASHION_MNIST_DATA_DIR`, else from `../shared/data/` beside
the repository. Redis is `REDIS_URL` when set (the tests then only touch keys they create, under a
unique queue name), else an embedded real redis-server started for the session.

`make test` runs the suite on two pytest-xdist workers (most integration tests wait on processes
and leave a core idle); each worker has its own session fixtures (embedded Redis, S3 server).
Tests marked `exclusive` run alone: `make test` runs them after the others, one at a time, and in
any other xdist run `_taking_turns` holds the other worker back while one runs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from shared.blas import BLAS_THREAD_VARIABLES
from tests import REPO_ROOT
from tests.xdist_support import taking_turns

# Two cores: keep BLAS single-threaded in test processes and every child they start.
for _var in BLAS_THREAD_VARIABLES:
    os.environ.setdefault(_var, "1")


def _dataset_dir(env_var: str, name: str) -> Path:
    configured = os.environ.get(env_var)
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / name
    if not (path / "train-images-idx3-ubyte.gz").exists():
        raise pytest.UsageError(
            f"{name} IDX files not found in {path}; set {env_var} to a folder holding them"
        )
    return path


@pytest.fixture(autouse=True)
def _taking_turns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Under xdist, a test marked `exclusive` waits for the other worker's test and holds the next
    one back: its time bounds must not measure another test's load. (Its module-scoped fixtures,
    e.g. the multi-host cluster, are set up before this, alongside other tests.)"""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    run_folder = tmp_path_factory.getbasetemp().parent  # shared by the run's workers
    with taking_turns(run_folder, request.node.get_closest_marker("exclusive") is not None):
        yield


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four canonical MNIST IDX .gz files."""
    return _dataset_dir("MNIST_DATA_DIR", "mnist")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    return _dataset_dir("FASHION_MNIST_DATA_DIR", "fashion-mnist")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """URL of a real Redis: REDIS_URL if set, else an embedded server for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from shared.redis_embedded import EmbeddedRedis

    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or other test run on the same Redis) uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def queue(redis_url: str, unique_name: str):
    """An RQ queue name of this test's own on the real Redis; every key it made is deleted
    afterwards (never FLUSHDB: the Redis may be shared)."""
    from tests.trainer_support import delete_queue_keys

    yield unique_name
    delete_queue_keys(redis_url, unique_name)


@pytest.fixture
def redis_conn(redis_url: str):
    """A connection to the real Redis, to look at or plant keys; closed afterwards."""
    import redis

    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def trainer_stack(redis_url, queue, tmp_path, mnist_dir):
    """A trainer stack on its own queue and registry: the API in-process, real worker processes
    (tests.trainer_support.Stack), stopped afterwards."""
    from tests.trainer_support import Stack

    s = Stack(redis_url, queue, tmp_path, mnist_dir)
    yield s
    s.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 endpoint (moto's server in a process of its own, tests/s3_server.py) for the
    session; the standard AWS variables point at it from then on, in this process and the
    processes tests start."""
    from tests.s3_support import S3Server, s3_env

    server = S3Server(tmp_path_factory.mktemp("s3"))
    env = s3_env(server.endpoint)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.close()


@pytest.fixture(params=["local", "s3"])
def registry_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """The shared registry suite's storage: every test taking it runs once on a folder and
    once on S3 (tests/s3_support.RegistryFactory)."""
    from tests.s3_support import RegistryFactory

    server = request.getfixturevalue("s3_server") if request.param == "s3" else None
    return RegistryFactory(request.param, tmp_path, server)
