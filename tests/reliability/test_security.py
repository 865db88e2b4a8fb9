"""Security properties, each checked for real: the API token (401 changes nothing, constant-time
comparison, never in logs, bodies, Redis or files), no unpickling anywhere, file access confined to
the registry (an audit hook records every open/rename/remove of a real job, the inference routes and
a pin), and the queued-jobs limit under concurrent submissions.

Also part of the security story, elsewhere: containers run as uid 10001 and the inference
container mounts the registry read-only (tests/integration/test_packaging.py); body size and
images-per-request limits (tests/unit/test_inference_app.py::test_error_codes,
tests/unit/test_trainer_api_jobs.py::test_wrong_content_type_malformed_json_and_non_objects).
"""

from __future__ import annotations

import ast
import hmac
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from inference_service.app import create_app as create_inference
from shared.client import DigitflowClient, DigitflowError
from shared.datasets import DatasetError, load_npz
from shared.modelfile import ModelFileError, load_model
from shared.registry import Registry
from tests import REPO_ROOT
from tests.service_support import publish, trainer_api
from tests.trainer_support import SMALL, delete_queue_keys, service_env
from trainer_service import queueing
from trainer_service.api.app import create_app as create_trainer

pytestmark = [pytest.mark.integration]

TOKEN = "tok-" + uuid.uuid4().hex
PRODUCT_DIRS = ("shared", "trainer_service", "inference_service", "scripts", "benchmarks")
WRONG_AUTH = [
    None,
    "",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    TOKEN,
    "Bearer",
    f"Bearer  {TOKEN.upper()}",
]


def _product_files() -> list[Path]:
    return sorted(p for d in PRODUCT_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


# ---- the token --------------------------------------------------------------------------------


def test_mutations_without_the_right_token_change_nothing(redis_url, queue, redis_conn, tmp_path):
    registry = Registry(tmp_path / "models")
    for seed in (1, 2):
        publish(registry, tmp_path, seed=seed, name="mnist")
    registry.pin("mnist", 1, actor="setup")
    registry.set_alias("mnist", "champion", 2, actor="setup")
    app = create_trainer(
        {
            "REDIS_URL": redis_url,
            "RQ_QUEUE": queue,
            "MODEL_REGISTRY_DIR": str(registry.root),
            "API_TOKEN": TOKEN,
        }
    )
    client = app.test_client()
    conn = redis_conn
    job_id = client.post("/v1/jobs", json=SMALL, headers={"Authorization": f"Bearer {TOKEN}"}).json[
        "job_id"
    ]
    rq_queue = queueing.make_queue(queue, conn)

    def snapshot():
        files = {
            str(p.relative_to(registry.root)): p.read_bytes()
            for p in sorted(registry.root.rglob("*"))
            if p.is_file()
        }
        keys = sorted(k.decode() for k in conn.scan_iter(match=f"*{queue}*"))
        return {
            "files": files,
            "state": registry.state("mnist"),
            "versions": registry.versions("mnist"),
            "queue": rq_queue.get_job_ids(),
            "status": client.get(f"/v1/jobs/{job_id}").json["status"],
            "keys": keys,
            "jobs_index": conn.zrange(queueing.jobs_index_key(queue), 0, -1),
        }

    before = snapshot()
    mutations = [
        ("post", "/v1/jobs", SMALL),
        ("post", "/v1/jobs", {**SMALL, "model": "other"}),
        ("delete", f"/v1/jobs/{job_id}", None),
        ("put", "/v1/models/mnist/pin", {"version": 2}),
        ("delete", "/v1/models/mnist/pin", None),
        ("put", "/v1/models/mnist/aliases/champion", {"version": 1}),
        ("put", "/v1/models/mnist/aliases/new", {"version": 1}),
        ("delete", "/v1/models/mnist/aliases/champion", None),
    ]
    for method, path, body in mutations:
        for auth in WRONG_AUTH:
            headers = {} if auth is None else {"Authorization": auth}
            r = getattr(client, method)(path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, auth, r.json)
            assert r.json["error"]["code"] == "unauthorized"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in r.get_data(as_text=True)
    assert snapshot() == before
    # and the right token still works
    r = client.delete(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


def test_token_comparison_is_constant_time(redis_url, queue, tmp_path, monkeypatch):
    """Every check goes through hmac.compare_digest, and no code compares a token with ==."""
    import trainer_service.api.auth as auth

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    app = create_trainer(
        {
            "REDIS_URL": redis_url,
            "RQ_QUEUE": queue,
            "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
            "API_TOKEN": TOKEN,
        }
    )
    client = app.test_client()
    for presented in (f"{TOKEN}x", "short", TOKEN):
        client.put("/v1/models/nope/pin", json={"version": 1}, headers={"Authorization": f"Bearer {presented}"})  # fmt: skip
    assert [a for a, _ in calls] == [f"{TOKEN}x".encode(), b"short", TOKEN.encode()]
    assert all(b == TOKEN.encode() for _, b in calls)

    # Wherever the API token is handled (the API's auth and settings, the client), it is never
    # compared with == or != (those stop at the first differing byte).
    offenders = []
    for path in [*(REPO_ROOT / "trainer_service").rglob("*.py"), REPO_ROOT / "shared/client.py"]:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                operands = [node.left, *node.comparators]
                if any(isinstance(n, ast.Constant) for n in operands):
                    continue  # comparing with a literal ("--", None...) is not a secret check
                text = ast.unparse(node).lower()
                if "token" in text or "presented" in text or "authorization" in text:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {text}")
    assert offenders == [], f"token compared with == / != at {offenders}"


def test_token_never_in_logs_bodies_redis_or_files(redis_url, queue, redis_conn, tmp_path):
    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, seed=1, name="mnist")
    conn = redis_conn
    bodies: list[str] = []
    # The access log on (it is off by default): its lines must not carry the token either.
    with trainer_api(registry.root, tmp_path, redis_url, queue, API_TOKEN=TOKEN, LOG_LEVEL="DEBUG",
                     ACCESS_LOG="-") as api:  # fmt: skip
        good = {"Authorization": f"Bearer {TOKEN}"}
        calls = [
            requests.post(f"{api.base}/v1/jobs", json=SMALL, headers=good, timeout=10),
            requests.put(
                f"{api.base}/v1/models/mnist/pin", json={"version": 1}, headers=good, timeout=10
            ),  # fmt: skip
            requests.put(
                f"{api.base}/v1/models/mnist/aliases/prod",
                json={"version": 1},
                headers=good,
                timeout=10,
            ),  # fmt: skip
            requests.post(
                f"{api.base}/v1/jobs", json={"epochs": -1}, headers=good, timeout=10
            ),  # fmt: skip
        ]
        job_id = calls[0].json()["job_id"]
        for auth in WRONG_AUTH:
            headers = {} if auth is None else {"Authorization": auth}
            calls.append(requests.post(f"{api.base}/v1/jobs", json=SMALL, headers=headers, timeout=10))  # fmt: skip
            calls.append(requests.delete(f"{api.base}/v1/jobs/{job_id}", headers=headers, timeout=10))  # fmt: skip
        calls.append(requests.get(f"{api.base}/v1/jobs/{job_id}", timeout=10))
        calls.append(requests.get(f"{api.base}/v1/models/mnist", timeout=10))
        calls.append(requests.delete(f"{api.base}/v1/jobs/{job_id}", headers=good, timeout=10))  # fmt: skip
        for r in calls:
            bodies.append(r.text + json.dumps(dict(r.headers)))
        # The client's errors do not repeat it either.
        with pytest.raises(DigitflowError) as info:
            DigitflowClient(api.base, api.base, TOKEN + "x").submit(SMALL)
        bodies.append(str(info.value))
        log = api.log_path.read_text(errors="replace")
    assert "401" in log and "POST /v1/jobs" in log  # the log did record these requests
    assert TOKEN not in log
    assert not [b for b in bodies if TOKEN in b]
    stored = []
    for key in conn.scan_iter(match=f"*{job_id}*"):
        kind = conn.type(key)
        if kind == b"hash":
            stored.append(repr(conn.hgetall(key)))
        elif kind == b"string":
            stored.append(repr(conn.get(key)))
    assert stored and not [s for s in stored if TOKEN in s]
    files = [p for p in registry.root.rglob("*") if p.is_file()]
    assert not [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert "prod" in registry.state("mnist")["aliases"]


# ---- never unpickle ---------------------------------------------------------------------------


def test_product_code_never_unpickles(redis_url):
    """Every np.load says allow_pickle=False; nothing imports pickle-like loaders; RQ is JSON."""
    loads, problems = 0, []
    for path in _product_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(REPO_ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                for name in names:
                    if name.split(".")[0] in {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}:  # fmt: skip
                        problems.append(f"{where}:{node.lineno} imports {name}")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            func = node.func
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            if func.attr == "load" and owner in {"np", "numpy"}:
                loads += 1
                flag = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}:{node.lineno} np.load without allow_pickle=False")
            if func.attr in {"load", "loads"} and owner in {"torch", "pickle", "joblib"}:
                problems.append(f"{where}:{node.lineno} {owner}.{func.attr}")
    assert loads >= 2 and problems == [], problems
    from rq.serializers import JSONSerializer

    assert queueing.SERIALIZER is JSONSerializer
    from trainer_service.settings import TrainerSettings
    from trainer_service.worker.process import build_worker

    settings = TrainerSettings.load({"REDIS_URL": redis_url, "RQ_QUEUE": "x"})
    assert build_worker(settings).serializer is JSONSerializer


def test_sweep_studies_keep_no_pickled_snapshot_in_redis(redis_url, redis_conn, queue):
    """Optuna's Redis journal pickles a snapshot every 100 trials and unpickles it whenever a
    storage is built; the product's journal keeps the JSON log only (trainer_service.sweeps.coordinator)."""
    import optuna

    from trainer_service.settings import TrainerSettings
    from trainer_service.sweeps import coordinator as sweeps

    settings = TrainerSettings.load({"REDIS_URL": redis_url, "RQ_QUEUE": queue})
    study = optuna.create_study(storage=sweeps.storage(settings, "s"), study_name="s")
    for i in range(101):  # past Optuna's snapshot interval (trial ids 0 and 100)
        study.tell(study.ask(), float(i))
    assert list(redis_conn.scan_iter(match=f"*{queue}*")), "the journal is not where we look"
    assert not list(redis_conn.scan_iter(match=f"*{queue}*snapshot*"))
    again = optuna.load_study(storage=sweeps.storage(settings, "s"), study_name="s")
    assert len(again.trials) == 101 and again.best_value == 0.0


class _Trap:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_bearing_npz_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "UNPICKLED"
    evil = tmp_path / "evil.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    with open(evil, "wb") as fh:
        np.savez(fh, weights=trap, **{"__digitflow__": np.array("{}")})

    with pytest.raises(ModelFileError):
        load_model(evil)
    with pytest.raises(DatasetError):
        load_npz(evil)

    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, seed=1)
    assert registry.publish("digits", evil, {"config": {}}) == 2  # the sha256 matches: it verifies
    client = create_inference(
        {"MODEL_REGISTRY_DIR": str(registry.root), "REGISTRY_POLL_SECONDS": 0}
    ).test_client()
    body = {"instances": [[0] * 784]}
    r = client.post("/v1/models/digits/versions/2/predict", json=body)
    assert r.status_code == 409 and r.json["error"]["code"] == "version_broken"
    r = client.post("/v1/models/digits/predict", json=body)
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
    rows = {row["version"]: row for row in client.get("/v1/models/digits").json["versions"]}
    assert rows[2]["status"] == "broken"
    assert not marker.exists()


# ---- file access confined to the registry -----------------------------------------------------

_AUDITED_RUN = textwrap.dedent(
    """
    import json, os, sys

    import redis
    from rq import SimpleWorker
    from rq.job import Job

    from inference_service.app import create_app as inference_app
    from trainer_service import queueing
    from trainer_service.api.app import create_app as trainer_app

    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    DIR_FD = {"os.remove": [1], "os.rmdir": [1], "os.mkdir": [2], "os.rename": [2, 3],
              "os.replace": [2, 3], "os.chmod": [2], "os.chown": [3], "os.utime": [2],
              "os.link": [2, 3], "os.symlink": [2], "os.truncate": []}
    events = []

    def resolve(path, fd=None):
        path = os.fsdecode(path)
        if fd is not None and not os.path.isabs(path):
            path = os.path.join(os.readlink(f"/proc/self/fd/{fd}"), path)
        return os.path.realpath(path) if os.path.isabs(path) else "relative:" + path

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            write = bool(flags and flags & WRITE) or (
                isinstance(mode, str) and any(c in mode for c in "wax+"))
            events.append(["write" if write else "read", resolve(path)])
        elif event in DIR_FD:
            paths = [args[0]] + ([args[1]] if event in ("os.rename", "os.replace", "os.link") else [])
            fds = DIR_FD[event]
            for k, path in enumerate(paths):
                if isinstance(path, int):
                    continue
                fd = args[fds[k]] if k < len(fds) and len(args) > fds[k] else None
                events.append(["write", resolve(path, fd)])
        elif event == "shutil.rmtree":
            events.append(["write", resolve(args[0])])

    sys.addaudithook(hook)
    # The job as a worker runs it (in this process, so the hook sees its files too).
    conn = redis.Redis.from_url(os.environ["REDIS_URL"])
    queue = queueing.make_queue(os.environ["RQ_QUEUE"], conn)
    name = os.environ["RQ_QUEUE"]  # in every key this run makes, for the test to delete them
    config = {"hidden_layers": [16], "epochs": 1, "train_limit": 500}
    job = queue.enqueue(queueing.JOB_FUNC, config, job_id=name + "-job")
    worker = SimpleWorker([queue], connection=conn, serializer=queueing.SERIALIZER, name=name)
    worker.work(burst=True)
    result = Job.fetch(job.id, connection=conn, serializer=queueing.SERIALIZER).return_value()
    inference = inference_app({"REGISTRY_POLL_SECONDS": 0}).test_client()
    x = {"instances": [[0] * 784]}
    statuses = [
        inference.get("/v1/models").status_code,
        inference.get("/v1/models/mnist").status_code,
        inference.get("/readyz").status_code,
        inference.post("/v1/models/mnist/predict", json=x).status_code,
        inference.post("/v1/models/mnist/versions/1/predict", json=x).status_code,
        inference.post("/v2/models/mnist/infer", json={"inputs": [
            {"name": "input", "datatype": "UINT8", "shape": [1, 784], "data": [0] * 784}]}
        ).status_code,
        inference.get("/v1/models/..%2F..%2Fetc/versions/1").status_code,
    ]
    trainer = trainer_app({"REDIS_URL": "redis://127.0.0.1:1/0", "API_TOKEN": ""}).test_client()
    statuses.append(trainer.put("/v1/models/mnist/pin", json={"version": 1}).status_code)
    statuses.append(trainer.put("/v1/models/..%2Fx/pin", json={"version": 1}).status_code)
    print(json.dumps({"version": result["model_version"], "statuses": statuses, "events": events}))
    """
)


def test_only_the_registry_is_read_and_written(tmp_path, mnist_dir, redis_url):
    """A real training job (incl. publish), the inference routes and a pin, under an audit hook:
    model data is read and written only in the registry. The job also reads its dataset and
    uses a scratch folder in the temp dir; matplotlib keeps its font cache in MPLCONFIGDIR."""
    registry = tmp_path / "models"
    mpl = tmp_path / "mplconfig"
    env = service_env(
        MODEL_REGISTRY_DIR=str(registry),
        MNIST_DATA_DIR=str(mnist_dir),
        MPLCONFIGDIR=str(mpl),
        PYTHONDONTWRITEBYTECODE="1",
        REDIS_URL=redis_url,
        RQ_QUEUE=f"audited-{uuid.uuid4().hex[:8]}",
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _AUDITED_RUN],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        delete_queue_keys(redis_url, env["RQ_QUEUE"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["version"] == 1 and out["statuses"] == [200, 200, 200, 200, 200, 200, 404, 200, 404]

    tmp = os.path.realpath(tempfile.gettempdir())
    # Python itself and installed packages; in the repository only code and package data.
    code_roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    code_roots |= {os.path.realpath(p) for p in sys.path if p and "site-packages" in p}
    repo = str(REPO_ROOT) + os.sep
    read_ok = (
        str(registry),
        str(mnist_dir.resolve()),
        str(mpl),
        f"{tmp}/digitflow-job-",
        "/proc/",
        "/dev/",
        "/sys/",
        "/etc/",
        "/usr/",
    )
    write_ok = (str(registry) + os.sep, str(mpl), f"{tmp}/digitflow-job-")
    bad_reads, bad_writes, registry_writes = [], [], 0
    for kind, path in out["events"]:
        if kind == "read":
            if path.startswith("relative:"):
                continue  # an os.open relative to a directory fd (shutil.rmtree of the scratch)
            in_code = any(path.startswith(root + os.sep) for root in code_roots) or (
                path.startswith(repo)
                and (
                    path.endswith((".py", ".pyc", ".json", ".html", ".css", ".js"))
                    or os.path.isdir(path)
                )
            )
            if not in_code and not path.startswith(read_ok):
                bad_reads.append(path)
        else:
            if path.startswith(str(registry) + os.sep):
                registry_writes += 1
            stdlib_probe = os.path.dirname(path) == tmp and len(os.path.basename(path)) == 8
            if not path.startswith(write_ok) and not stdlib_probe and path != str(registry):
                bad_writes.append(path)
    assert bad_writes == [], bad_writes
    assert bad_reads == [], bad_reads
    assert registry_writes > 5  # the audit did see the publish and the pin
    assert not (REPO_ROOT / "weights.npz").exists()


# ---- limits -------------------------------------------------------------------------------------


def test_queued_jobs_limit_holds_under_concurrent_submissions(
    redis_url, queue, redis_conn, tmp_path
):
    """20 simultaneous POSTs to two gunicorn workers, limit 3: exactly 3 jobs are queued."""
    conn = redis_conn
    with trainer_api(tmp_path / "models", tmp_path, redis_url, queue, MAX_QUEUED_JOBS_PER_MODEL="3") as api:  # fmt: skip

        def submit(i: int) -> requests.Response:
            return requests.post(f"{api.base}/v1/jobs", json={**SMALL, "seed": i}, timeout=30)

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(submit, range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 3 + [429] * 17, codes
    assert all("MAX_QUEUED_JOBS_PER_MODEL" in r.json()["error"]["message"] for r in responses if r.status_code == 429)  # fmt: skip
    assert queueing.make_queue(queue, conn).count == 3
