"""The inference service under a REAL gunicorn (2 sync workers) on a temporary registry.

Checks what only a multi-process deployment can show: every worker picks up a new version, a pin
and a broken version within 2 seconds, without a restart, and /metrics aggregates the workers
(every metric the README documents is there from the start).
"""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests

from shared.modelfile import load_model
from shared.registry import Registry
from tests import REPO_ROOT
from tests.service_support import (
    BATCH,
    Service,
    expected_proba,
    inference_service,
    publish,
    publish_broken,
)
from tests.trainer_support import wait_for

pytestmark = [pytest.mark.slow]

RELOAD_SECONDS = 2.0
NPY = "application/x-npy"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, Registry]]:
    registry = Registry(tmp_path / "models")
    registry.root.mkdir(parents=True)
    with inference_service(registry.root, tmp_path) as svc:
        yield svc, registry


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
        if not svc.every_worker(lambda model: model.get("serving") == version, model="digits"):
            return False
        got = {r.headers.get("X-Model-Version") for r in svc.burst(lambda: svc.predict(path))}
        return got == {str(version)}

    return check


@pytest.mark.exclusive
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


def documented_metrics() -> set[str]:
    """Every metric name the README writes in backticks (`digitflow_x_{a,b}_total` expanded):
    the test reads the documentation itself, so the two cannot drift apart."""
    names: set[str] = set()
    for token in re.findall(r"`(digitflow_[a-z0-9_{},]+)`", (REPO_ROOT / "README.md").read_text()):
        head, brace, rest = token.partition("{")
        options, _, tail = rest.partition("}")
        if brace:
            names.update(f"{head}{option}{tail}" for option in options.split(","))
        else:
            names.add(token)
    return names


def test_every_documented_metric_is_in_metrics_from_the_start(tmp_path: Path) -> None:
    """Right after start — the default, split and shadow versions loaded, no prediction asked —
    /metrics (both workers, multiprocess mode) has a series of every documented metric: the
    counters at 0, per loaded version and for the shadow version. The live figures still list
    nothing (zero series are not figures)."""
    documented = documented_metrics()
    assert {"digitflow_registry_poll_errors_total", "digitflow_shadow_dropped_total",
            "digitflow_shadow_errors_total",
            "digitflow_inference_version_predictions_total"} <= documented, documented  # fmt: skip
    registry = Registry(tmp_path / "models")
    for seed in (1, 2, 3):
        publish(registry, tmp_path, seed=seed)
    registry.pin("digits", 1, actor="test")
    registry.set_traffic("digits", [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}])
    registry.set_shadow("digits", 3)

    with inference_service(registry.root, tmp_path) as svc:

        def started(body: dict) -> bool:
            shadow = body["models"].get("digits", {}).get("shadow") or {}
            return body["ready"] and shadow.get("serving") == 3

        wait_for(lambda: svc.every_worker(started), timeout=30,
                 what="both workers serving the split and the shadow")  # fmt: skip
        text = svc.get("/metrics").text
        live = svc.get("/v1/models/digits").json()["live"]

    samples: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("digitflow_"):
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            samples.setdefault(name, []).append((labels, float(value)))
    missing = sorted(documented - set(samples))
    assert not missing, f"documented but not in /metrics: {missing}\n{text}"
    for name in documented - {"digitflow_registry_reachable"}:
        assert all(value == 0 for _, value in samples[name]), (name, samples[name])
    assert samples["digitflow_registry_reachable"] == [("", 1.0)]
    assert {labels for labels, _ in samples["digitflow_registry_poll_errors_total"]} == {
        'kind="unreachable"}',
        'kind="scan"}',
    }
    for version in ("1", "2", "3"):  # the split's versions and the shadow's are loaded
        assert f'model="digits",version="{version}"}}' in {
            labels for labels, _ in samples["digitflow_inference_version_requests_total"]
        }
        classes = [
            labels
            for labels, _ in samples["digitflow_inference_version_predictions_total"]
            if f'version="{version}"' in labels
        ]
        assert len(classes) == 10, classes
    pairs = [labels for labels, _ in samples["digitflow_shadow_predictions_total"]]
    assert len(pairs) == 100 and all('shadow="3"' in labels for labels in pairs), pairs
    assert samples["digitflow_shadow_dropped_total"] == [('model="digits"}', 0.0)]
    assert live == {"versions": {}, "shadows": {}, "shadow_dropped": 0}


def _series(text: str) -> dict[tuple[str, frozenset], float]:
    """/metrics text → {(name, labels): value} (the pid label of live gauges kept)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("digitflow_"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
        out[(name, pairs)] = float(value)
    return out


def test_a_known_request_mix_adds_up_in_metrics_and_live_figures_over_three_workers(
    tmp_path: Path,
) -> None:
    """Three workers count their requests in memory and flush on an interval: once flushed,
    /metrics and the live figures hold exactly the known mix — request counts by route and
    status, latency counts, per-version images, predicted classes and confidence, and the
    shadow's comparisons — as if every request had been written as it came."""
    registry = Registry(tmp_path / "models")
    for seed in (1, 2, 3):
        publish(registry, tmp_path, seed=seed)
    registry.pin("digits", 1, actor="test")
    registry.set_shadow("digits", 3)
    x = BATCH / 255.0
    want = {v: expected_proba(registry, "digits", v, x) for v in (1, 2, 3)}
    env = {"WEB_CONCURRENCY": "3", "LIVE_FIGURES_FLUSH_SECONDS": "0.3"}
    with inference_service(registry.root, tmp_path, **env) as svc:
        wait_for(
            lambda: svc.every_worker(
                lambda model: (model.get("shadow") or {}).get("serving") == 3,
                model="digits",
                workers=3,
            ),
            timeout=30,
            what="three workers serving the shadow",
        )
        default_route, by_number = (
            "/v1/models/digits/predict",
            "/v1/models/digits/versions/2/predict",
        )
        for n in (1, 2, 3, 4) * 6:  # 24 default-route requests, 60 images
            r = requests.post(
                svc.base + default_route, json={"instances": BATCH[:n].tolist()}, timeout=10
            )
            assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
        for _ in range(10):  # 10 requests by number, 40 images
            assert svc.predict(by_number).status_code == 200
        for _ in range(5):  # bad bodies: counted by status, no prediction
            r = requests.post(svc.base + default_route, json={"instances": []}, timeout=10)
            assert r.status_code == 422

        route_default = "/v1/models/<name>/predict"
        route_number = "/v1/models/<name>/versions/<ref>/predict"

        def settled() -> dict | None:
            series = _series(svc.get("/metrics").text)
            got = series.get(("digitflow_inference_version_requests_total",
                              frozenset({("model", "digits"), ("version", "2")})))  # fmt: skip
            shadow = series.get(("digitflow_shadow_requests_total",
                                 frozenset({("model", "digits"), ("shadow", "3")})), 0)  # fmt: skip
            dropped = series.get(("digitflow_shadow_dropped_total",
                                  frozenset({("model", "digits")})), 0)  # fmt: skip
            served = series.get(("digitflow_inference_version_requests_total",
                                 frozenset({("model", "digits"), ("version", "1")})))  # fmt: skip
            ok = (
                got == 10
                and served == 24
                and series.get(
                    (
                        "digitflow_inference_requests_total",
                        frozenset(
                            {("route", route_default), ("method", "POST"), ("status", "422")}
                        ),
                    )
                )
                == 5  # fmt: skip
                and shadow + dropped == 24
                # A worker's flush and a scrape reading the workers' files one after the other can
                # cross: wait for the latency counts too, not only for the figures above.
                and series.get(("digitflow_inference_request_duration_seconds_count",
                                frozenset({("route", route_default)}))) == 29
                and series.get(("digitflow_inference_request_duration_seconds_count",
                                frozenset({("route", route_number)}))) == 10
            )  # fmt: skip
            return series if ok else None

        series = wait_for(settled, timeout=15, interval=0.1, what="the mix flushed by every worker")
        live = svc.get("/v1/models/digits").json()["live"]

    def value(name: str, **labels: str) -> float:
        return series.get((name, frozenset(labels.items())), 0.0)

    assert value("digitflow_inference_requests_total", route=route_default, method="POST",
                 status="200") == 24  # fmt: skip
    assert value("digitflow_inference_requests_total", route=route_number, method="POST",
                 status="200") == 10  # fmt: skip
    assert value("digitflow_inference_request_duration_seconds_count", route=route_default) == 29
    assert value("digitflow_inference_request_duration_seconds_count", route=route_number) == 10
    images = {1: 60, 2: 40}
    classes = {
        1: sum(np.bincount(want[1][:n].argmax(axis=1), minlength=10) for n in (1, 2, 3, 4)) * 6,
        2: np.bincount(want[2].argmax(axis=1), minlength=10) * 10,
    }
    confidence = {
        1: sum(float(want[1][:n].max(axis=1).sum()) for n in (1, 2, 3, 4)) * 6,
        2: float(want[2].max(axis=1).sum()) * 10,
    }
    for v in (1, 2):
        assert (
            value("digitflow_inference_images_total", model="digits", version=str(v)) == images[v]
        )
        got = [value("digitflow_inference_version_predictions_total", model="digits",
                     version=str(v), predicted=str(c)) for c in range(10)]  # fmt: skip
        assert got == classes[v].tolist(), (v, got)
        row = live["versions"][str(v)]
        assert row["requests"] == (24 if v == 1 else 10) and row["images"] == images[v]
        assert row["predicted_classes"] == classes[v].tolist()
        assert abs(row["mean_confidence"] - confidence[v] / images[v]) < 1e-4
    # The shadow compared what it was not too busy for: every comparison it made is exact.
    compared = live["shadows"].get("3") or {"requests": 0, "images": 0}
    assert compared["requests"] + live["shadow_dropped"] == 24
    if live["shadow_dropped"] == 0:
        pairs = np.zeros((10, 10), dtype=int)
        for n in (1, 2, 3, 4):
            for a, b in zip(want[1][:n].argmax(axis=1), want[3][:n].argmax(axis=1), strict=True):
                pairs[a, b] += 6
        assert compared["confusion"] == pairs.tolist()


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read `count` HTTP/1.1 responses (status, body) from a socket, in order."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses: {data[:200]!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            data += chunk
        out.append((status, data[:length]))
        data = data[length:]
    return out


def test_large_bodies_keep_alive_and_pipelined_requests_answer_in_order(tmp_path: Path) -> None:
    """Large bodies are received straight from gunicorn's socket (decoders.media): on one
    keep-alive connection (gthread workers; sync ones close after each answer) a 1,024-image .npy
    batch, then requests pipelined behind a 300-image batch in one send, each answered in order
    with the right predictions."""
    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, seed=1)
    rng = np.random.default_rng(5)
    big, mid = rng.random((1024, 784), dtype=np.float32), rng.random((300, 784), dtype=np.float32)
    want = {n: expected_proba(registry, "digits", 1, x).argmax(1).tolist() for n, x in
            ((1024, big), (300, mid), (len(BATCH), BATCH / 255.0))}  # fmt: skip

    def request(body: bytes, ctype: str) -> bytes:
        head = (f"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        return head.encode() + body

    with (
        inference_service(registry.root, tmp_path, GUNICORN_THREADS="2") as svc,
        socket.create_connection(svc.base.removeprefix("http://").split(":"), timeout=10) as sock,
    ):
        sock.sendall(request(npy_bytes(big), NPY))
        ((status, body),) = _responses(sock, 1)
        assert status == 200 and orjson.loads(body)["predictions"] == want[1024]
        small = orjson.dumps({"instances": BATCH.tolist()})
        sock.sendall(request(npy_bytes(mid), NPY) + request(small, "application/json") * 2)
        answers = _responses(sock, 3)
    assert [status for status, _ in answers] == [200, 200, 200]
    got = [orjson.loads(body)["predictions"] for _, body in answers]
    assert got == [want[300], want[len(BATCH)], want[len(BATCH)]]


def _page_faults(pid: int) -> int:
    """Minor page faults of a process so far (/proc/PID/stat, field 10)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[7])


def test_batch_requests_reuse_the_workers_memory(tmp_path: Path) -> None:
    """Each worker keeps what a batch request frees (shared.heap.reuse_freed_memory, set when a
    worker starts): 20 more .npy batches of 1,024 images fault in next to no pages, where each
    would fault in its ~6 MB (~1,500 pages) of body and activations afresh."""
    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, network=[{"dense": 512}, {"dense": 256}])  # the default's layers
    body = npy_bytes(np.random.default_rng(2).random((1024, 784), dtype=np.float32))
    with inference_service(registry.root, tmp_path) as svc, requests.Session() as http:

        def batches(n: int) -> None:
            for _ in range(n):
                r = http.post(f"{svc.base}/v1/models/digits/predict", data=body,
                              headers={"Content-Type": NPY}, timeout=30)  # fmt: skip
                assert r.status_code == 200, r.text

        # /healthz answers once one worker listens; each worker's poller then loads the model,
        # ~3,000 page faults that a busy machine let spill into the measured batches (3,577 once)
        views = wait_for(lambda: svc.every_worker(lambda model: model.get("serving") == 1,
                                                  model="digits"),
                         timeout=30, what="both workers serving version 1")  # fmt: skip
        master = svc.proc.pid
        pids = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        assert sorted(pids) == sorted(views), (pids, views)
        batches(10)  # each worker's first batches fault in what it then keeps
        before = sum(_page_faults(pid) for pid in pids)
        batches(20)
        faults = sum(_page_faults(pid) for pid in pids) - before
    assert faults < 20 * 150, faults


def _versions_named(text: str) -> set[str]:
    """The model versions /metrics names (a version's or a shadow's series)."""
    return set(re.findall(r'(?:version|shadow)="(\d+)"', text))


def test_a_deleted_version_leaves_metrics_the_live_figures_and_every_workers_file(
    tmp_path: Path,
) -> None:
    """A service left running for months with a retention rule sees versions come and go: once
    the registry no longer lists a version, /metrics (every worker's figures summed) and the live
    figures stop listing it, and each worker drops it from its own figures file — the other
    versions' counts untouched. (prometheus_client in multiprocess mode can never forget a
    series: a version's figures made as its metric children stayed in /metrics and in each
    worker's memory for good, BENCHMARKS.md §7.)"""
    registry = Registry(tmp_path / "models")
    for seed in (1, 2, 3):
        publish(registry, tmp_path, seed=seed)
    with inference_service(registry.root, tmp_path, LIVE_FIGURES_FLUSH_SECONDS="0.2") as svc:
        wait_for(lambda: svc.every_worker(lambda model: model.get("serving") == 3, model="digits"),
                 timeout=30, what="both workers serving version 3")  # fmt: skip
        for path in ("/v1/models/digits/versions/1/predict", "/v1/models/digits/predict"):
            for r in svc.burst(lambda path=path: svc.predict(path), 10):
                assert r.status_code == 200

        def counted() -> dict | None:
            series = _series(svc.get("/metrics").text)
            got = {v: series.get(("digitflow_inference_version_requests_total",
                                  frozenset({("model", "digits"), ("version", v)})))
                   for v in ("1", "3")}  # fmt: skip
            return series if got == {"1": 10, "3": 10} else None

        before = wait_for(counted, timeout=15, interval=0.1, what="both versions' requests")
        assert _versions_named(svc.get("/metrics").text) == {"1", "3"}  # 2 was never loaded
        prom = next(tmp_path.glob("prom-*"))
        files = sorted(prom.glob("figures_*.json"))
        assert len(files) == 2, files  # one per worker

        registry.delete_version("digits", 1, actor="test")

        def forgotten() -> bool:
            in_files = [_versions_named_in_file(f) for f in files]
            return _versions_named(svc.get("/metrics").text) == {"3"} and all(
                "1" not in named for named in in_files
            )

        wait_for(forgotten, timeout=10, interval=0.1, what="version 1 forgotten everywhere")
        after = _series(svc.get("/metrics").text)
        live = svc.get("/v1/models/digits").json()["live"]
    assert set(live["versions"]) == {"3"} and live["versions"]["3"]["requests"] == 10
    per_version = ("digitflow_inference_images", "digitflow_inference_version_")
    kept = {k: v for k, v in before.items() if ("version", "3") in k[1]}
    assert kept and all(after[k] == v for k, v in kept.items()), (kept, after)
    assert {k for k in after if k[0].startswith(per_version)} == set(kept)


def _versions_named_in_file(path: Path) -> set[str]:
    """The versions a worker's figures file holds (family → [[model, version, …, value]])."""
    data = orjson.loads(path.read_bytes())
    return {row[1] for rows in data.values() for row in rows}
