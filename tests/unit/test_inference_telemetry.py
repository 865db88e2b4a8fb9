"""The hot path's figures (inference_service.telemetry.Pending): counted in the worker's memory,
added to the Prometheus values by `Telemetry.flush`, so a request writes no shared memory. The
flushed values must be exactly what one write per observation would have given."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from inference_service.telemetry import LATENCY_BUCKETS, Pending, Telemetry, _add_observations
from tests import REPO_ROOT


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_adding_observations_in_bulk_equals_observing_each():
    """What `Pending` counts and `_add_observations` writes (prometheus_client's private
    histogram values) equals one `observe` per value, bucket edges included (a value on a
    bound belongs to that bound's bucket)."""
    values = [0.0001, 0.00025, 0.0003, 0.0005, 0.002, 0.7, 3.0, 12.0, 0.00025, 99.0]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("lat", "x", ["route"], buckets=LATENCY_BUCKETS, registry=one)
    h_bulk = Histogram("lat", "x", ["route"], buckets=LATENCY_BUCKETS, registry=bulk)
    for v in values:
        h_one.labels("r").observe(v)
    pending = Pending(LATENCY_BUCKETS)
    for v in values:
        pending.request("r", "GET", 200, v)
    counts, total = pending.take()[1]["r"]
    _add_observations(h_bulk.labels("r"), counts, total)
    assert _samples(one) == _samples(bulk)


def test_figures_reach_the_metrics_only_when_flushed_and_then_exactly():
    t = Telemetry(None, flush_seconds=3600)
    proba = np.zeros((5, 10), dtype=np.float32)
    proba[np.arange(5), [3, 3, 7, 1, 3]] = [0.9, 0.8, 0.6, 0.5, 0.7]
    for _ in range(4):
        t.observe_request("/v1/models/<name>/predict", "POST", 200, 0.0004)
        t.observe_predictions("digits", 2, proba)
    t.observe_request("/v1/models/<name>/predict", "POST", 400, 0.003)
    t.observe_shadow("digits", 3, np.array([3, 1]), np.array([3, 7]), 1.5, 1.25)

    def value(name: str, **labels: str) -> float | None:
        return t.registry.get_sample_value(name, labels)

    assert value("digitflow_inference_version_requests_total", model="digits", version="2") is None
    t.flush()
    route = {"route": "/v1/models/<name>/predict"}
    assert value("digitflow_inference_requests_total", method="POST", status="200", **route) == 4
    assert value("digitflow_inference_requests_total", method="POST", status="400", **route) == 1
    assert value("digitflow_inference_request_duration_seconds_count", **route) == 5
    assert value("digitflow_inference_request_duration_seconds_bucket", le="0.0005", **route) == 4
    assert value("digitflow_inference_version_requests_total", model="digits", version="2") == 4
    assert value("digitflow_inference_images_total", model="digits", version="2") == 20
    per_class = {
        c: value(
            "digitflow_inference_version_predictions_total",
            model="digits",
            version="2",
            predicted=str(c),
        )  # fmt: skip
        for c in range(10)
    }
    assert per_class == {c: {3: 12.0, 7: 4.0, 1: 4.0}.get(c, 0.0) for c in range(10)}
    confidence = value("digitflow_inference_version_confidence_sum_total", model="digits",
                       version="2")  # fmt: skip
    assert abs(confidence - 4 * 3.5) < 1e-5
    assert value("digitflow_shadow_requests_total", model="digits", shadow="3") == 1
    assert value("digitflow_shadow_predictions_total", model="digits", shadow="3", served="1",
                 predicted="7") == 1  # fmt: skip

    # A second flush adds only what came since; the live figures read after flushing.
    t.observe_predictions("digits", 2, proba[:1])
    live = t.live("digits")["versions"]["2"]
    assert live["requests"] == 5 and live["images"] == 21
    assert live["predicted_classes"][3] == 13
    t.flush()
    assert value("digitflow_inference_version_requests_total", model="digits", version="2") == 5


def test_a_started_flusher_moves_the_figures_on_its_own():
    t = Telemetry(None, flush_seconds=0.05)
    t.start_flushing()
    t.start_flushing()  # once per process
    t.observe_request("/healthz", "GET", 200, 0.0001)
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    for _ in range(200):
        if t.registry.get_sample_value("digitflow_inference_requests_total", labels) == 1:
            break
        time.sleep(0.01)
    assert t.registry.get_sample_value("digitflow_inference_requests_total", labels) == 1


def test_a_deleted_versions_series_are_forgotten_and_the_others_kept():
    """A long-running worker must not keep objects for every version it ever served: once the
    registry no longer lists a version (numbers are never reused), the next flush drops all its
    series — version figures, shadow comparison, broken count — and nothing else."""
    t = Telemetry(None, flush_seconds=3600)
    proba = np.full((2, 10), 0.1, dtype=np.float32)
    for version in (1, 2, 3):
        t.observe_predictions("digits", version, proba)
    t.observe_predictions("other", 1, proba)
    t.observe_shadow("digits", 1, np.array([3]), np.array([4]), 0.5, 0.5)
    t.on_broken("digits", 1)
    t.flush()

    def versions_in_metrics() -> set[tuple[str, str]]:
        return {
            (dict(labels)["model"], dict(labels).get("version") or dict(labels).get("shadow"))
            for (_, labels) in _samples(t.registry)
            if "model" in dict(labels) and ("version" in dict(labels) or "shadow" in dict(labels))
        }

    assert versions_in_metrics() == {("digits", "1"), ("digits", "2"), ("digits", "3"),
                                     ("other", "1")}  # fmt: skip
    before = _samples(t.registry)
    t.on_versions("digits", {2, 3})
    assert _samples(t.registry) == before  # dropped at the next flush, not by the poller
    t.flush()
    assert versions_in_metrics() == {("digits", "2"), ("digits", "3"), ("other", "1")}
    kept = {k: v for k, v in before.items() if ("version", "1") not in k[1] or
            ("model", "other") in k[1]}  # fmt: skip
    kept = {k: v for k, v in kept.items() if ("shadow", "1") not in k[1]}
    assert _samples(t.registry) == kept
    t.on_versions("digits", {2, 3})  # nothing more to forget
    t.flush()
    assert _samples(t.registry) == kept


def test_a_shadow_error_is_counted_in_memory_and_reaches_the_metrics_at_the_flush():
    t = Telemetry(None, flush_seconds=3600)
    labels = {"model": "digits", "shadow": "3"}
    t.observe_shadow_error("digits", 3)
    t.observe_shadow_error("digits", 3)
    assert t.registry.get_sample_value("digitflow_shadow_errors_total", labels) is None
    t.flush()
    assert t.registry.get_sample_value("digitflow_shadow_errors_total", labels) == 2


_MULTIPROCESS_RUN = """
import json, os, sys
import numpy as np
from inference_service.telemetry import Telemetry

folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
t = Telemetry(folder, flush_seconds=3600)
assert t.multiprocess_dir == folder, "not in multiprocess mode"
proba = np.full((3, 10), 0.1, dtype=np.float32)
used = {}
for version in range(1, 61):  # a new version served each step, the last 5 kept
    t.observe_predictions("digits", version, proba)
    t.flush()
    t.on_versions("digits", set(range(max(1, version - 4), version + 1)))
    t.flush()
    if version in (20, 60):
        used[version] = sum(int.from_bytes(open(os.path.join(folder, f), "rb").read(4), "little")
                            for f in os.listdir(folder) if f.endswith(".db"))
text = t.render()[0].decode()
path = os.path.join(folder, f"figures_{os.getpid()}.json")
figures = json.load(open(path)) if os.path.exists(path) else None
print(json.dumps({"used": used, "metrics": text, "figures": figures,
                  "live": sorted(t.live("digits")["versions"])}))
"""


def test_a_worker_serving_version_after_version_keeps_only_the_published_ones(tmp_path):
    """Multiprocess mode (a real process with PROMETHEUS_MULTIPROC_DIR set before
    prometheus_client is imported, as under gunicorn), 60 versions served one after the other
    with only the last 5 kept in the registry: /metrics, the live figures and the worker's
    figures file name only those 5, and prometheus_client's files stop growing (a metric child
    per version would add a key to them for good, and a value object to the worker's memory)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _MULTIPROCESS_RUN], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["used"]["60"] == got["used"]["20"], got["used"]
    named = set(re.findall(r'version="(\d+)"', got["metrics"]))
    assert named == {"56", "57", "58", "59", "60"}, named
    assert 'digitflow_inference_images_total{model="digits",version="60"} 3.0' in got["metrics"]
    assert got["figures"] is not None, "no figures file"
    in_file = {row[1] for rows in got["figures"].values() for row in rows}
    assert in_file == {"56", "57", "58", "59", "60"}
    assert got["live"] == ["56", "57", "58", "59", "60"]
