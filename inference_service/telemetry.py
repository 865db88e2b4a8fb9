"""Prometheus metrics of one app instance (no module-level metric objects).

Under gunicorn every worker is a separate process, so a scrape that lands on one worker would only
see that worker's numbers. When ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn.conf.py sets it to a
fresh folder if you did not; the app gets it from its Settings), prometheus_client writes every
value to memory-mapped files there and ``/metrics`` aggregates all workers with a
MultiProcessCollector. Without it (tests, a single
process) the app uses its own CollectorRegistry, so several apps in one process never clash.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _prom_values
from prometheus_client.multiprocess import MultiProcessCollector

#: Request latency buckets (seconds): the JSON predict path should sit in the first ones.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def multiprocess_dir(path: str | None) -> str | None:
    """`path` (PROMETHEUS_MULTIPROC_DIR) if prometheus_client really runs in multiprocess mode.

    The mode is fixed when prometheus_client is first imported, so both the variable and the
    value class must agree; otherwise we fall back to the per-process registry.
    """
    if not path or not os.path.isdir(path):
        return None
    if getattr(_prom_values.ValueClass, "__name__", "") != "MmapedValue":
        return None
    return path


class Telemetry:
    """The service's metrics and how to render them."""

    def __init__(self, prometheus_multiproc_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir(prometheus_multiproc_dir)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "digitflow_inference_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "digitflow_inference_request_duration_seconds",
            "Request handling time inside the worker, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "digitflow_inference_images",
            "Images predicted, by model and version.",
            ["model", "version"],
            registry=r,
        )
        self.default_version = Gauge(
            "digitflow_inference_default_version",
            "Model version each worker serves by default (one series per worker pid).",
            ["model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.model_loads = Counter(
            "digitflow_inference_model_loads",
            "Model versions loaded into a worker's cache.",
            ["model"],
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "digitflow_inference_model_load_seconds",
            "Time to verify and load a model version.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.broken_versions = Counter(
            "digitflow_inference_broken_version_events",
            "Times a broken model version was refused (bad hash, truncated, unloadable).",
            ["model", "version"],
            registry=r,
        )

        # labels() validates and locks on every call; the label sets are few, so keep children.
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._image_children: dict[tuple[str, int], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """Count one request and its latency (hot path: cached metric children)."""
        key = (route, method, str(status))
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        counter.inc()
        if seconds is None:
            return
        hist = self._latency_children.get(route)
        if hist is None:
            hist = self._latency_children[route] = self.latency.labels(route)
        hist.observe(seconds)

    def count_images(self, name: str, version: int, n: int) -> None:
        key = (name, version)
        child = self._image_children.get(key)
        if child is None:
            child = self._image_children[key] = self.images.labels(name, str(version))
        child.inc(n)

    # Callbacks for the ModelCache ---------------------------------------------------------------

    def on_default_change(self, name: str, version: int) -> None:
        self.default_version.labels(name).set(version)

    def on_load(self, name: str, version: int, seconds: float) -> None:
        self.model_loads.labels(name).inc()
        self.model_load_seconds.observe(seconds)

    def on_broken(self, name: str, version: int) -> None:
        self.broken_versions.labels(name, str(version)).inc()

    # Exposition ---------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape: all workers in multiprocess mode, else this one."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
