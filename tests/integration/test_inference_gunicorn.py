"""The inference service under a REAL gunicorn (2 sync workers) on a temporary registry.

Checks what only a multi-process deployment can show: every worker picks up a new version, a pin
and a broken version within 2 seconds, without a restart, and /metrics aggregates the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.config import TrainConfig
from shared.modelfile import load_model, save_model
from shared.nn.model import build_model
from shared.redis_embedded import free_port
from shared.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
RELOAD_SECONDS = 2.0
RNG = np.random.default_rng(7)
BATCH = RNG.integers(0, 256, size=(4, 784))


def publish(registry: Registry, tmp_path: Path, seed: int, name: str = "digits") -> int:
    config = TrainConfig(model=name, hidden_layers=[16], dropout=0.0, seed=seed)
    model = build_model(config, mean=np.full(784, 0.05 * seed, dtype=np.float32))
    path = tmp_path / f"w-{uuid.uuid4().hex}.npz"
    save_model(path, model)
    return registry.publish(name, path, {"config": config.public_dict(), "metrics": {}})


def publish_broken(registry: Registry, tmp_path: Path, seed: int, name: str = "digits") -> int:
    """A version whose weights do not match the manifest's sha256, appearing atomically (built
    in a side registry, corrupted there, then renamed in), so no worker can ever see it intact."""
    side = Registry(tmp_path / f"side-{uuid.uuid4().hex}")
    v = publish(side, tmp_path, seed, name)
    weights = side.weights_path(name, v)
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    target = max(registry.versions(name)) + 1
    os.rename(weights.parent, registry.root / name / str(target))
    return target


class Service:
    def __init__(self, base: str, log_path: Path) -> None:
        self.base = base
        self.log_path = log_path

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.base + path, timeout=10, **kw)

    def predict(self, path: str = "/v1/models/digits/predict") -> requests.Response:
        # A fresh connection per call (no Session): sync workers each accept their own.
        return requests.post(self.base + path, json={"instances": BATCH.tolist()}, timeout=10)

    def burst(self, fn: Callable[[], requests.Response], n: int = 16) -> list[requests.Response]:
        """n concurrent calls, so both workers are busy and both answer."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: fn(), range(n)))

    def worker_views(self, n: int = 24) -> dict[int, dict]:
        """pid → /readyz body, for every worker that answered a burst."""
        out: dict[int, dict] = {}
        for resp in self.burst(lambda: self.get("/readyz"), n):
            body = resp.json()
            out[body["pid"]] = body
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, Registry]]:
    registry = Registry(tmp_path / "models")
    registry.root.mkdir(parents=True)
    port = free_port()
    prom = tmp_path / "prom"
    prom.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(registry.root),
        "REGISTRY_POLL_SECONDS": "0.2",
        "INFERENCE_PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "XDG_RUNTIME_DIR": str(runtime),
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "inference_service/gunicorn.conf.py",
                "inference_service.app:create_app()",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    svc = Service(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"gunicorn exited early:\n{svc.log()}"
            try:
                if svc.get("/healthz").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not come up:\n{svc.log()}"
            time.sleep(0.1)
        yield svc, registry
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until_all_workers(svc: Service, check: Callable[[Service], bool], what: str) -> float:
    """Seconds until `check` holds; fails after RELOAD_SECONDS (plus a small scheduling margin)."""
    start = time.monotonic()
    while not check(svc):
        elapsed = time.monotonic() - start
        assert elapsed < RELOAD_SECONDS, f"{what} not served after {elapsed:.2f}s:\n{svc.log()}"
        time.sleep(0.05)
    return time.monotonic() - start


def all_serve(version: int, path: str = "/v1/models/digits/predict") -> Callable[[Service], bool]:
    def check(svc: Service) -> bool:
        views = svc.worker_views()
        if len(views) < 2:
            return False  # both workers must have answered and agree
        if any(v["models"].get("digits", {}).get("serving") != version for v in views.values()):
            return False
        got = {r.headers.get("X-Model-Version") for r in svc.burst(lambda: svc.predict(path))}
        return got == {str(version)}

    return check


def test_hot_reload_across_gunicorn_workers(service, tmp_path: Path) -> None:
    svc, registry = service

    # Empty registry: alive, not ready, nothing listed.
    assert svc.get("/readyz").status_code == 503
    assert svc.get("/readyz").json()["reason"] == "no models in the registry"
    assert svc.get("/v1/models").json() == {"models": []}

    # Version 1: listed and predicted by every worker, identical to the in-process model.
    assert publish(registry, tmp_path, seed=1) == 1
    wait_until_all_workers(svc, all_serve(1), "version 1")
    listed = svc.get("/v1/models").json()["models"]
    assert [(m["name"], m["latest_version"], m["default_version"]) for m in listed] == [
        ("digits", 1, 1)
    ]
    assert all(v["ready"] for v in svc.worker_views().values())
    resp = svc.predict()
    assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "1"
    body = resp.json()
    local = load_model(registry.weights_path("digits", 1)).model
    want = local.predict_proba((BATCH / 255.0).astype(np.float32))
    np.testing.assert_allclose(
        np.asarray(body["probabilities"], dtype=np.float32), want, rtol=1e-6, atol=1e-7
    )
    assert body["predictions"] == want.argmax(axis=1).tolist()

    # Version 2 appears: every worker moves to it within 2 s, without a restart.
    assert publish(registry, tmp_path, seed=2) == 2
    elapsed = wait_until_all_workers(svc, all_serve(2), "version 2")
    assert elapsed < RELOAD_SECONDS
    assert {r.headers["X-Model-Version"] for r in svc.burst(svc.predict, 20)} == {"2"}

    # Pin 1: every worker serves 1 by default again; named versions still answer.
    registry.pin("digits", 1, actor="test")
    wait_until_all_workers(svc, all_serve(1), "pinned version 1")
    assert svc.predict("/v1/models/digits/versions/2/predict").headers["X-Model-Version"] == "2"
    assert (
        svc.predict("/v1/models/digits/versions/latest/predict").headers["X-Model-Version"] == "2"
    )

    # Unpin, then a broken version 3: listed as broken, never served, 2 stays the default.
    registry.unpin("digits")
    wait_until_all_workers(svc, all_serve(2), "unpinned default 2")
    assert publish_broken(registry, tmp_path, seed=3) == 3
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        versions = {r.headers["X-Model-Version"] for r in svc.burst(svc.predict, 8)}
        assert versions == {"2"}
    rows = {r["version"]: r for r in svc.get("/v1/models/digits").json()["versions"]}
    assert rows[3]["status"] == "broken" and rows[3]["loaded"] is False
    assert rows[2]["default"] is True
    resp = svc.predict("/v1/models/digits/versions/3/predict")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "version_broken"
    assert all(v["ready"] for v in svc.worker_views().values())

    # V2 answers too.
    resp = requests.post(
        svc.base + "/v2/models/digits/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [4, 784], "datatype": "UINT8", "data": BATCH.tolist()}
            ]
        },
        timeout=10,
    )
    assert resp.status_code == 200 and resp.json()["model_version"] == "2"

    # /metrics aggregates both workers (multiprocess mode).
    text = svc.get("/metrics").text
    assert "digitflow_inference_requests_total" in text
    assert 'route="/v1/models/<name>/predict"' in text
    gauges = [
        line
        for line in text.splitlines()
        if line.startswith("digitflow_inference_default_version{")
    ]
    assert len({line.split('pid="')[1].split('"')[0] for line in gauges}) == 2, gauges
    assert all(line.endswith(" 2.0") for line in gauges), gauges

    assert "Traceback" not in svc.log()
