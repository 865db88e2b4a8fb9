"""The services under test at every layer: tiny models published straight into a registry, what
they predict, the error shape every answer shares; and for integration and reliability tests the
real services, gunicorn-run inference and trainer API on free loopback ports.

Built on the process primitives of tests.trainer_support (start_gunicorn, wait_http_ok,
stop_process), so every test starts a service the same way, with the same commands as compose.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import requests
from PIL import Image, ImageDraw

from shared.config import TrainConfig
from shared.modelfile import load_model, save_model
from shared.registry import Registry
from tests.trainer_support import (
    free_port,
    service_env,
    start_gunicorn,
    stop_process,
    tail,
    wait_http_ok,
)

RNG = np.random.default_rng(7)
#: Four raw-scale (0-255) images: the body every load/reload test predicts on.
BATCH = RNG.integers(0, 256, size=(4, 784))

INFERENCE_APP = "inference_service.app:create_app()"
INFERENCE_CONF = "inference_service/gunicorn.conf.py"
TRAINER_APP = "trainer_service.api.app:create_app()"
TRAINER_CONF = "trainer_service/api/gunicorn.conf.py"


#: A tiny convolutional network for `publish(..., network=TINY_CNN)`: 28x28 -> 24x24x4 ->
#: 12x12x4 -> 5x5x8 -> 16 -> 10, ~2,000 weights.
TINY_CNN = [{"conv": 4, "kernel": 5}, {"pool": 2}, {"conv": 8, "kernel": 3, "stride": 2},
            {"dense": 16}]  # fmt: skip


def publish(
    registry: Registry,
    tmp_path: Path,
    seed: int = 0,
    name: str = "digits",
    network: list[dict] | None = None,
) -> int:
    """Publish an untrained 784-16-10 model, or the convolutional `network` (e.g. TINY_CNN),
    (milliseconds to build and load) as the next version. The seed makes each version's
    predictions differ, and its recorded test accuracy (0.1 + seed / 100: a number a test can
    look for, not a measurement)."""
    layers = {"hidden_layers": [16]} if network is None else {"network": network}
    config = TrainConfig(model=name, dropout=0.0, seed=seed, **layers)
    model = config.build_model(mean=np.full(784, 0.05 * seed, dtype=np.float32))
    path = tmp_path / f"w-{uuid.uuid4().hex}.npz"
    save_model(path, model)
    metrics = {"test_accuracy": round(0.1 + seed / 100, 4)}
    return registry.publish(name, path, {"config": config.public_dict(), "metrics": metrics})


def expected_proba(registry: Registry, name: str, version: int, x01: np.ndarray) -> np.ndarray:
    """What a published version predicts for `x01` (pixels in [0, 1]), computed in-process."""
    loaded = load_model(registry.weights_path(name, version))
    return loaded.model.predict_proba(np.asarray(x01, dtype=np.float32))


def error_of(resp) -> dict:
    """The `error` object of a Flask test-client answer, checked to have the one error shape both
    services answer with: {"error": {"code", "message", ...}} as JSON."""
    assert resp.mimetype == "application/json", resp.data[:200]
    body = resp.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


def v2_binary(
    arr: np.ndarray, shape: list[int], datatype: str = "FP32", size: int | None = None, **extra
) -> tuple[bytes, str]:
    """A KServe V2 binary infer body: the JSON header (one input "input" whose data follows in
    binary; `size` overrides its binary_data_size; `extra` adds top-level keys such as
    "outputs" or "parameters") then `arr`'s bytes. Returns the body and the value of the
    Inference-Header-Content-Length header."""
    raw = arr.tobytes()
    binary_size = len(raw) if size is None else size
    parameters = {"binary_data_size": binary_size}
    tensor = {"name": "input", "shape": shape, "datatype": datatype, "parameters": parameters}
    head = orjson.dumps({"inputs": [tensor], **extra})
    return head + raw, str(len(head))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *declares* width x height (the bomb), with a tiny bogus body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def publish_damaged(
    registry: Registry,
    tmp_path: Path,
    seed: int,
    damage: Callable[[Path], None],
    name: str = "digits",
) -> int:
    """Publish a version that appears already damaged: built in a side registry, `damage(folder)`
    applied there, then renamed in atomically as the next number, so no reader can ever see it
    intact (as if the disk had corrupted it, or a foreign tool had written it)."""
    side = Registry(tmp_path / f"side-{uuid.uuid4().hex}")
    v = publish(side, tmp_path, seed, name)
    folder = side.weights_path(name, v).parent
    damage(folder)
    target = max(registry.versions(name), default=0) + 1
    os.rename(folder, registry.root / name / str(target))
    return target


def flip_weights_byte(folder: Path) -> None:
    """Same size, one byte different: only the sha256 can tell. The byte is overwritten in place
    (no truncate-and-rewrite), so a reader polling meanwhile never sees a shorter file."""
    with open(folder / "weights.npz", "r+b") as fh:
        fh.seek(-20, os.SEEK_END)
        byte = fh.read(1)[0]
        fh.seek(-20, os.SEEK_END)
        fh.write(bytes([byte ^ 0xFF]))


def publish_broken(registry: Registry, tmp_path: Path, seed: int, name: str = "digits") -> int:
    """A version whose weights do not match the manifest's sha256."""
    return publish_damaged(registry, tmp_path, seed, flip_weights_byte, name)


class Service:
    """A gunicorn service under test: base URL, its log, small request helpers."""

    def __init__(self, base: str, proc, log_path: Path) -> None:
        self.base = base
        self.proc = proc
        self.log_path = log_path

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.base + path, timeout=10, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.base + path, timeout=10, **kw)

    def predict(self, path: str = "/v1/models/digits/predict") -> requests.Response:
        # A fresh connection per call (no Session): sync workers each accept their own.
        return requests.post(self.base + path, json={"instances": BATCH.tolist()}, timeout=10)

    def burst(self, fn: Callable[[], requests.Response], n: int = 16) -> list[requests.Response]:
        """n concurrent calls, so every worker is busy and every worker answers."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: fn(), range(n)))

    def worker_views(self, n: int = 24) -> dict[int, dict]:
        """pid → /readyz body, for every worker that answered a burst."""
        out: dict[int, dict] = {}
        for resp in self.burst(lambda: self.get("/readyz"), n):
            body = resp.json()
            out[body["pid"]] = body
        return out

    def every_worker(
        self, check: Callable[[dict], bool], model: str | None = None, workers: int = 2
    ) -> dict[int, dict] | None:
        """pid → /readyz body of each of the `workers` workers once `check` holds in every one of
        them (on the body, or on `model`'s entry in it), else None. Each worker picks registry
        changes up on its own poll, so one worker's answer says nothing of the others'."""
        views = self.worker_views()
        seen = [view["models"].get(model) or {} if model else view for view in views.values()]
        return views if len(views) >= workers and all(map(check, seen)) else None

    def log(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)


@contextlib.contextmanager
def inference_service(registry_dir: Path, tmp_path: Path, **env: str) -> Iterator[Service]:
    """The inference service under real gunicorn (2 sync workers unless env says otherwise)."""
    port = free_port()
    prom = tmp_path / f"prom-{port}"
    prom.mkdir()
    runtime = tmp_path / f"run-{port}"
    runtime.mkdir(mode=0o700)
    defaults = {
        "REGISTRY_POLL_SECONDS": "0.2",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "1",
        "LOG_LEVEL": "INFO",
    }
    full_env = service_env(
        MODEL_REGISTRY_DIR=str(registry_dir),
        INFERENCE_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        XDG_RUNTIME_DIR=str(runtime),
        **{**defaults, **env},
    )
    with _gunicorn_service(
        INFERENCE_APP, INFERENCE_CONF, port, full_env, tmp_path, "inference"
    ) as svc:
        yield svc


@contextlib.contextmanager
def trainer_api(
    registry_dir: Path, tmp_path: Path, redis_url: str, queue: str, **env: str
) -> Iterator[Service]:
    """The trainer API under real gunicorn (its /healthz needs no Redis, so it starts either way)."""
    port = free_port()
    full_env = service_env(
        REDIS_URL=redis_url,
        RQ_QUEUE=queue,
        MODEL_REGISTRY_DIR=str(registry_dir),
        TRAINER_PORT=str(port),
        **{"API_TOKEN": "", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "INFO", **env},
    )
    with _gunicorn_service(TRAINER_APP, TRAINER_CONF, port, full_env, tmp_path, "trainer") as svc:
        yield svc


@contextlib.contextmanager
def _gunicorn_service(
    app: str, conf: str, port: int, env: dict[str, str], tmp_path: Path, name: str
) -> Iterator[Service]:
    """Start `app` under gunicorn, wait for /healthz, stop it on the way out."""
    log_path = tmp_path / f"{name}-{port}.log"
    proc = start_gunicorn(app, conf, port, env, log_path)
    svc = Service(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_http_ok(svc.base + "/healthz", proc, log_path)
        yield svc
    finally:
        stop_process(proc)


def post_json(client, url: str, payload, **kw):
    return client.post(url, data=orjson.dumps(payload), content_type="application/json", **kw)


def digit_picture(fmt: str, dark_on_light: bool = True, size: int = 200) -> bytes:
    """A drawn "1" (a thick vertical stroke) as PNG or JPEG bytes."""
    bg, ink = (255, 0) if dark_on_light else (0, 255)
    img = Image.new("L", (size, size), bg)
    draw = ImageDraw.Draw(img)
    draw.line([(size // 2, size // 6), (size // 2, 5 * size // 6)], fill=ink, width=size // 12)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
