"""Prometheus metrics of one app instance (no module-level metric objects).

Under gunicorn every worker is a separate process, so a scrape that lands on one worker would only
see that worker's numbers. When ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn.conf.py sets it to a
fresh folder if you did not; the app gets it from its Settings), prometheus_client writes every
value to memory-mapped files there and ``/metrics`` aggregates all workers with a
MultiProcessCollector. Without it (tests, a single
process) the app uses its own CollectorRegistry, so several apps in one process never clash.

Per-version figures (images, requests, predicted classes, confidence, shadow comparisons) are not
prometheus_client metric objects: model versions come and go (a retention rule deletes old ones),
and in multiprocess mode prometheus_client can never forget a series — each one made keeps a value
object for the life of the process and a key in the worker's file, so /metrics would list every
version ever served and a worker would grow by ~10 KiB per version (BENCHMARKS.md §7). A worker
keeps them in its own memory instead (`Telemetry._figures`), adds what `Pending` counted at each
flush, drops a deleted version's, and in multiprocess mode writes them to its own file
(``figures_<pid>.json`` in that folder, replaced whole, only when they changed); /metrics and the
live figures sum every worker's files (`_FiguresCollector`), so a dead worker's counts stay in the
sums as Prometheus counters do, and versions the registry no longer lists are left out.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _prom_values
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from shared.images import N_CLASSES

if TYPE_CHECKING:
    from inference_service.loading import Served

logger = logging.getLogger("inference_service.telemetry")
# A deleted version's broken count (a Prometheus metric: rare events) is removed with the version;
# in multiprocess mode its value stays in the worker's file (counts are never lost), so
# prometheus_client's warning that remove() leaves it there is noise.
warnings.filterwarnings("ignore", "Removal of labels", UserWarning, "prometheus_client.metrics")

#: Request latency buckets (seconds): the JSON predict path should sit in the first ones.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_VERSION, _SHADOW = ("model", "version"), ("model", "shadow")
#: attribute → (kind, name, help, labels, options) of every metric, in /metrics order.
_METRICS: dict[str, tuple[type, str, str, tuple[str, ...], dict[str, Any]]] = {
    "requests": (Counter, "digitflow_inference_requests",
                 "HTTP requests by route template, method and status code.",
                 ("route", "method", "status"), {}),
    "latency": (Histogram, "digitflow_inference_request_duration_seconds",
                "Request handling time inside the worker, by route template.", ("route",),
                {"buckets": LATENCY_BUCKETS}),
    "default_version": (Gauge, "digitflow_inference_default_version",
                        "Model version each worker serves by default (one series per worker "
                        "pid).", ("model",), {"multiprocess_mode": "liveall"}),
    "model_loads": (Counter, "digitflow_inference_model_loads",
                    "Model versions loaded into a worker's cache.", ("model",), {}),
    "model_load_seconds": (Histogram, "digitflow_inference_model_load_seconds",
                           "Time to verify and load a model version.", (),
                           {"buckets": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)}),
    "broken_versions": (Counter, "digitflow_inference_broken_version_events",
                        "Times a broken model version was refused (bad hash, truncated, "
                        "unloadable).", _VERSION, {}),
    "registry_reachable": (Gauge, "digitflow_registry_reachable",
                           "1 when the last registry poll reached the store, 0 when it could not "
                           "(the lowest over the live workers).", (),
                           {"multiprocess_mode": "livemin"}),
    "registry_poll_errors": (Counter, "digitflow_registry_poll_errors",
                             "Registry polls that failed (kind: unreachable = the store did not "
                             "answer; scan = anything else).", ("kind",), {}),
    "shadow_drops": (Counter, "digitflow_shadow_dropped",
                     "Shadow runs dropped because the worker's shadow queue was full.",
                     ("model",), {}),
}  # fmt: skip
#: The per-version figures (`_FiguresCollector`): family → (help, labels), in /metrics order.
_FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "digitflow_inference_images": ("Images predicted, by model and version.", _VERSION),
    # Per-version live figures: a split's sides compared as they serve.
    "digitflow_inference_version_requests": (
        "Predict/infer requests answered, by model and version.", _VERSION),
    "digitflow_inference_version_predictions": (
        "Images predicted, by model, version and predicted class.", (*_VERSION, "predicted")),
    "digitflow_inference_version_confidence_sum": (
        "Sum of the predicted class's probability, by model and version (divide by the images "
        "for the mean confidence).", _VERSION),
    # Shadow comparisons: the default route's answer against the shadow version's.
    "digitflow_shadow_requests": (
        "Requests of the default route also run on the shadow version.", _SHADOW),
    "digitflow_shadow_predictions": (
        "Images compared, by the class the served answer predicted and the shadow's.",
        (*_SHADOW, "served", "predicted")),
    "digitflow_shadow_confidence_sum": (
        "Sum of the predicted class's probability over the compared images, by side (served: "
        "the answer the client got; shadow: the shadow version's).", (*_SHADOW, "side")),
    "digitflow_shadow_errors": (
        "Shadow runs that raised (the answers were never affected).", _SHADOW),
}  # fmt: skip
#: A worker's figures file in the multiprocess folder (`figures_<pid>.json`).
_FIGURES_FILE = "figures_{pid}.json"
#: The live-figure field each plain counter adds to (the per-class, per-pair and per-side
#: counters are keyed by their extra labels instead).
_LIVE_FIELDS = {
    "digitflow_inference_images": "images",
    "digitflow_inference_version_requests": "requests",
    "digitflow_inference_version_confidence_sum": "confidence_sum",
    "digitflow_shadow_requests": "requests",
    "digitflow_shadow_errors": "errors",
}


class Telemetry:
    """The service's metrics and how to render them."""

    def __init__(
        self, prometheus_multiproc_dir: str | None = None, flush_seconds: float = 1.0
    ) -> None:
        # PROMETHEUS_MULTIPROC_DIR, if prometheus_client really runs in multiprocess mode: the
        # mode is fixed when it is first imported, so the variable and the value class must agree.
        path, mmap = prometheus_multiproc_dir, _prom_values.ValueClass.__name__ == "MmapedValue"
        self.multiprocess_dir = path if path and os.path.isdir(path) and mmap else None
        #: How old a worker's figures may be in /metrics and in another worker's live figures
        #: (LIVE_FIGURES_FLUSH_SECONDS).
        self.flush_seconds = float(flush_seconds)
        # The hot path counts into this process's pending figures (plain Python, one lock; see
        # `Pending`); `flush` moves them into the Prometheus values.
        self._pending = Pending(LATENCY_BUCKETS)
        #: Count one request (route template, method, status) and its latency in seconds.
        self.observe_request = self._pending.request
        #: Count one answered request of a version: its images, their predicted classes and
        #: their confidence, from its probabilities [N, classes].
        self.observe_predictions = self._pending.predictions
        #: One request compared with the shadow version (the shadow thread): the served and the
        #: shadow's predicted classes, each side's confidence sum.
        self.observe_shadow = self._pending.shadow
        #: One shadow run that raised (the shadow thread).
        self.observe_shadow_error = self._pending.shadow_error
        #: This worker's per-version figures: family → {label values: value}, from the moment
        #: a version can answer (at 0) until it leaves the registry (see the module docstring).
        self._figures: dict[str, dict[tuple[str, ...], float]] = {f: {} for f in _FIGURES}
        self._figures_pid = os.getpid()
        self._figures_changed = False  # since this worker's file was last written
        self._broken: dict[str, set[int]] = defaultdict(set)  # versions with a broken count
        #: model → the versions the registry listed at the last poll (what the sums keep).
        self._published: dict[str, set[int]] = {}
        self._deleted: set[tuple[str, int]] = set()  # versions to forget at the next flush
        self._figures_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()
        self._collector = _FiguresCollector(self)
        self.registry = r = CollectorRegistry(auto_describe=True)
        for attr, (kind, name, doc, labels, options) in _METRICS.items():
            setattr(self, attr, kind(name, doc, labels, registry=r, **options))
        r.register(self._collector)
        # Every documented series exists from the moment it can be known, at 0: a rate or an
        # alert over a counter that is absent until its first increment sees nothing, not 0.
        # Unlabelled metrics exist from here on; the poll errors' kinds are known now; the
        # per-model, per-version and per-shadow series when the model cache learns of them
        # (`on_default_change`, `on_load`, `on_shadow`). In multiprocess mode a child made by
        # labels() writes its 0 into this worker's file at once, so /metrics shows it; a
        # version's figures reach the other workers' /metrics at the next flush.
        for kind in ("unreachable", "scan"):
            self.registry_poll_errors.labels(kind)

    @staticmethod
    def _series_of(name: str, version: int, n_classes: int) -> tuple[list, list]:
        """(family, labels) of every figure of one version: its own (images, requests,
        confidence, one per class) and those of its shadow comparison (requests, errors, both
        confidences, the n_classes × n_classes confusion)."""
        labels = (name, str(version))
        own = [(f, labels) for f in ("digitflow_inference_images",
                                     "digitflow_inference_version_requests",
                                     "digitflow_inference_version_confidence_sum")]  # fmt: skip
        own += [("digitflow_inference_version_predictions", (*labels, str(c)))
                for c in range(n_classes)]  # fmt: skip
        shadow = [(f, labels) for f in ("digitflow_shadow_requests", "digitflow_shadow_errors")]
        shadow += [("digitflow_shadow_confidence_sum", (*labels, side))
                   for side in ("served", "shadow")]  # fmt: skip
        pairs = itertools.product(range(n_classes), repeat=2)
        shadow += [("digitflow_shadow_predictions", (*labels, str(a), str(b))) for a, b in pairs]
        return own, shadow

    def _zero(self, series: list[tuple[str, tuple[str, ...]]]) -> None:
        """Make these figures exist (at 0) if they do not yet. Holds no lock: the caller does."""
        self._check_fork()
        for family, labels in series:
            if labels not in self._figures[family]:
                self._figures[family][labels] = 0.0
                self._figures_changed = True

    def _add(self, family: str, labels: tuple[str, ...], amount: float) -> None:
        figures = self._figures[family]
        figures[labels] = figures.get(labels, 0.0) + amount
        self._figures_changed = True

    def _check_fork(self) -> None:
        """Counts made before a fork are the parent's: a forked copy starts from none."""
        if os.getpid() != self._figures_pid:
            self._figures_pid = os.getpid()
            self._figures = {f: {} for f in _FIGURES}
            self._figures_changed = True

    def flush(self) -> None:
        """Move this process's pending figures into the Prometheus values and the per-version
        figures (one write per figure that changed since the last flush, whatever the number of
        requests), forget deleted versions, and write this worker's figures file if they
        changed (multiprocess mode)."""
        with self._flush_lock:  # one flush at a time: the file is written in order
            requests, latency, versions, shadows, errors = self._pending.take()
            for key, n in requests.items():
                self.requests.labels(*key).inc(n)
            for route, (counts, total) in latency.items():
                _add_observations(self.latency.labels(route), counts, total)
            with self._figures_lock:
                self._check_fork()
                for (name, version), row in versions.items():
                    n_requests, n_images, confidence, classes = row
                    labels = (name, str(version))
                    self._zero(self._series_of(name, version, len(classes))[0])  # every class
                    self._add("digitflow_inference_images", labels, n_images)
                    self._add("digitflow_inference_version_requests", labels, n_requests)
                    self._add("digitflow_inference_version_confidence_sum", labels, confidence)
                    for cls in np.flatnonzero(classes).tolist():
                        self._add("digitflow_inference_version_predictions", (*labels, str(cls)),
                                  int(classes[cls]))  # fmt: skip
                for (name, shadow), (n_requests, served_sum, shadow_sum, pairs) in shadows.items():
                    labels = (name, str(shadow))
                    self._zero([("digitflow_shadow_errors", labels)])
                    self._add("digitflow_shadow_requests", labels, n_requests)
                    self._add("digitflow_shadow_confidence_sum", (*labels, "served"), served_sum)
                    self._add("digitflow_shadow_confidence_sum", (*labels, "shadow"), shadow_sum)
                    for (a, b), n in pairs.items():
                        self._add("digitflow_shadow_predictions", (*labels, str(a), str(b)), n)
                for (name, shadow), n in errors.items():
                    self._add("digitflow_shadow_errors", (name, str(shadow)), n)
                deleted, self._deleted = self._deleted, set()
                for name, version in deleted:
                    gone = (name, str(version))
                    for family in self._figures.values():
                        for labels in [k for k in family if k[:2] == gone]:
                            del family[labels]
                            self._figures_changed = True
                    if version in self._broken[name]:
                        self._broken[name].discard(version)
                        self.broken_versions.remove(*gone)
                changed, self._figures_changed = self._figures_changed, False
                snapshot = _figures_json(self._figures) if changed else None
            if snapshot is not None and self.multiprocess_dir:
                _write_file(Path(self.multiprocess_dir, _FIGURES_FILE.format(pid=os.getpid())),
                            snapshot)  # fmt: skip

    def figures(self) -> dict[str, dict[tuple[str, ...], float]]:
        """The per-version figures /metrics and the live figures show: this worker's, or in
        multiprocess mode every worker's files summed; versions the registry no longer lists
        (as this worker last saw it) left out."""
        if not self.multiprocess_dir:
            with self._figures_lock:
                self._check_fork()
                return {f: dict(values) for f, values in self._figures.items()}
        totals: dict[str, dict[tuple[str, ...], float]] = {f: {} for f in _FIGURES}
        with self._figures_lock:
            published = {name: (set(v), max(v, default=0)) for name, v in self._published.items()}
        for path in Path(self.multiprocess_dir).glob(_FIGURES_FILE.format(pid="*")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):  # a worker's folder removed under us: nothing to add
                continue
            for family, rows in data.items():
                if family not in totals:
                    continue
                sums = totals[family]
                for *labels, value in rows:
                    known = published.get(labels[0])
                    # Numbers are never reused: one at or below the newest listed and not listed
                    # was deleted (a newer one is not known here yet, so it is kept).
                    if known and int(labels[1]) not in known[0] and int(labels[1]) <= known[1]:
                        continue
                    key = tuple(labels)
                    sums[key] = sums.get(key, 0.0) + value
        return totals

    def start_flushing(self) -> None:
        """Flush every `flush_seconds` from a thread of this process (a gunicorn worker starts
        it in ``post_worker_init``; a single process without it flushes on each scrape)."""
        with self._flusher_lock:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="digitflow-figures", daemon=True
                )
                self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # a figure must never take the worker down
                logger.exception("live figures: flush failed")

    def live(self, name: str) -> dict[str, Any]:
        """The live figures of model `name`, summed over every worker: per version (requests,
        images, predicted-class counts, mean confidence) and per shadow version compared
        (requests, images, agreement, confusion served × shadow, mean confidences, the most
        frequent disagreement), plus dropped shadow runs."""
        self.flush()  # this worker's own figures are exact; the others' at most a flush old
        versions: dict[str, dict[str, Any]] = {}
        shadows: dict[str, dict[str, Any]] = {}
        for family, rows in self.figures().items():
            table = shadows if family.startswith("digitflow_shadow") else versions
            for (model, version, *more), value in rows.items():
                # Series made at 0 before anything happened (see __init__) add nothing here: a
                # version or shadow is listed once it has figures, as before they existed.
                if not value or model != name:
                    continue
                row = table.setdefault(version, _row())
                if family == "digitflow_inference_version_predictions":
                    row["classes"][int(more[0])] += int(value)
                elif family == "digitflow_shadow_predictions":
                    row["pairs"][int(more[0]), int(more[1])] += int(value)
                elif family == "digitflow_shadow_confidence_sum":
                    row[more[0]] += value
                else:
                    row[_LIVE_FIELDS[family]] += value
        # The one Prometheus metric of the live figures, summed over every worker's files.
        drops = self.shadow_drops
        if self.multiprocess_dir:
            drops = MultiProcessCollector(None, path=self.multiprocess_dir)
        dropped = sum(
            sample.value
            for metric in drops.collect()
            for sample in metric.samples
            if sample.name == "digitflow_shadow_dropped_total" and sample.labels["model"] == name
        )
        return {
            "versions": {v: _version_figures(row) for v, row in sorted(versions.items())},
            "shadows": {v: _shadow_figures(row) for v, row in sorted(shadows.items())},
            "shadow_dropped": int(dropped),
        }

    # Callbacks for the ModelCache ---------------------------------------------------------------

    def on_default_change(self, name: str, version: int) -> None:
        """The model is served: its gauge moves, its per-model series exist (at 0)."""
        self.default_version.labels(name).set(version)
        self.shadow_drops.labels(name)

    def on_load(self, served: Served, seconds: float) -> None:
        """A version is loaded, so it can answer: its per-version series exist (at 0)."""
        self.model_loads.labels(served.name).inc()
        self.model_load_seconds.observe(seconds)
        with self._figures_lock:
            self._zero(self._series_of(served.name, served.version, served.n_classes)[0])

    def on_shadow(self, shadow: Served) -> None:
        """A version became the model's shadow: its comparison series exist (at 0)."""
        with self._figures_lock:
            self._zero(self._series_of(shadow.name, shadow.version, shadow.n_classes)[1])
        self.shadow_drops.labels(shadow.name)

    def on_versions(self, name: str, published: set[int]) -> None:
        """The model's versions in the registry: the figures of deleted ones go at the next
        flush (numbers are never reused, so nothing will count into them again) and leave the
        sums at once; without this a worker would keep every version it ever served."""
        with self._figures_lock:
            self._published[name] = set(published)
            held = {int(labels[1]) for family in self._figures.values() for labels in family
                    if labels[0] == name}  # fmt: skip
            held |= self._broken[name]
            self._deleted.update((name, v) for v in held - set(published))

    def on_poll(self, ok: bool, reachable: bool) -> None:
        self.registry_reachable.set(1 if reachable else 0)
        if not ok:
            self.registry_poll_errors.labels("scan" if reachable else "unreachable").inc()

    def on_broken(self, name: str, version: int) -> None:
        with self._figures_lock:
            self._broken[name].add(version)
        self.broken_versions.labels(name, str(version)).inc()

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape: all workers in multiprocess mode, else this one."""
        self.flush()
        registry = self.registry
        if self.multiprocess_dir:  # every worker's files, and the figures of every worker
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            registry.register(self._collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _FiguresCollector:
    """The per-version figures as Prometheus counters (`Telemetry.figures`)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def describe(self) -> Iterator[Metric]:
        for family, (doc, labels) in _FIGURES.items():
            yield CounterMetricFamily(family, doc, labels=labels)

    def collect(self) -> Iterator[Metric]:
        figures = self._telemetry.figures()
        for family, (doc, labels) in _FIGURES.items():
            metric = CounterMetricFamily(family, doc, labels=labels)
            for values, value in sorted(figures[family].items()):
                metric.add_metric(values, value)
            yield metric


def _figures_json(figures: dict[str, dict[tuple[str, ...], float]]) -> str:
    """A worker's figures file: family → [[*label values, value], …]."""
    return json.dumps({f: [[*k, v] for k, v in rows.items()] for f, rows in figures.items()})


def _write_file(path: Path, text: str) -> None:
    """Replace `path` whole (a reader sees the old file or the new one, never a part)."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:  # the folder removed at shutdown: the figures stay in memory
        logger.warning("live figures: could not write %s: %s", path, exc)


def _row() -> dict[str, Any]:
    """Live figures before their first sample: every sum 0, the counts by class or pair empty."""
    return defaultdict(float, classes=defaultdict(int), pairs=defaultdict(int))


def _mean(total: float, n: int) -> float | None:
    return None if n == 0 else round(total / n, 6)


def _version_figures(row: dict[str, Any]) -> dict[str, Any]:
    n_classes = max(N_CLASSES, max(row["classes"], default=0) + 1)
    classes = [row["classes"].get(c, 0) for c in range(n_classes)]
    return {
        "requests": int(row["requests"]),
        "images": int(row["images"]),
        "predicted_classes": classes,
        "mean_confidence": _mean(row["confidence_sum"], sum(classes)),
    }


def _shadow_figures(row: dict[str, Any]) -> dict[str, Any]:
    pairs: dict[tuple[int, int], int] = row["pairs"]
    n_classes = max(N_CLASSES, max((max(p) for p in pairs), default=0) + 1)
    confusion = [[pairs.get((a, b), 0) for b in range(n_classes)] for a in range(n_classes)]
    images = sum(pairs.values())
    agree = sum(confusion[c][c] for c in range(n_classes))
    # The most frequent disagreement, both directions together ("4↔9").
    swaps: dict[tuple[int, int], int] = defaultdict(int)
    for (a, b), n in pairs.items():
        if a != b:
            swaps[min(a, b), max(a, b)] += n
    top = max(swaps.items(), key=lambda kv: kv[1], default=None)
    return {
        "requests": int(row["requests"]),
        "images": images,
        "agreement": _mean(agree, images),
        "confusion": confusion,
        "mean_confidence": {
            "served": _mean(row["served"], images),
            "shadow": _mean(row["shadow"], images),
        },
        "top_disagreement": None if top is None else {"classes": list(top[0]), "images": top[1]},
        "errors": int(row["errors"]),
    }


# ---- the hot path's figures ----------------------------------------------------------------------


class Pending:
    """Figures counted since the last flush, in this process's memory only.

    Why: a Prometheus value in multiprocess mode is a locked write to a memory-mapped file, and
    a single-image request touched seven of them (request count, latency sum and bucket, images,
    version requests, confidence, the predicted class): a measurable share of the predict path
    (BENCHMARKS.md §3). Here a request costs one uncontended lock and a few dict and array
    updates; `Telemetry.flush` (every `flush_seconds` in a thread of the worker, and before each
    scrape or live read in the worker answering it) adds the sums to the Prometheus values, so
    /metrics is exact for the worker that answers it and at most a flush old for the others.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._requests: dict[tuple[str, str, str], int] = {}
        #: route → [per-bucket counts (the last one +Inf), the sum of the observations]
        self._latency: dict[str, list[Any]] = {}
        #: (model, version) → [requests, images, confidence sum, per-class counts]
        self._versions: dict[tuple[str, int], list[Any]] = {}
        #: (model, shadow) → [requests, served confidence sum, shadow's, {(served, shadow): n}]
        self._shadows: dict[tuple[str, int], list[Any]] = {}
        #: (model, shadow) → shadow runs that raised
        self._shadow_errors: dict[tuple[str, int], int] = {}

    def request(self, route: str, method: str, status: int, seconds: float | None) -> None:
        key = (route, method, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            if seconds is None:
                return
            entry = self._latency.get(route)
            if entry is None:
                entry = self._latency[route] = [[0] * (len(self.buckets) + 1), 0.0]
            # Prometheus buckets are "less than or equal": the first bound >= seconds.
            entry[0][bisect.bisect_left(self.buckets, seconds)] += 1
            entry[1] += seconds

    def predictions(self, name: str, version: int, proba: np.ndarray) -> None:
        confidence = float(proba.max(axis=1).sum())
        classes = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        with self._lock:
            row = self._versions.get((name, version))
            if row is None:
                row = self._versions[(name, version)] = [0, 0, 0.0, np.zeros_like(classes)]
            row[0] += 1
            row[1] += len(proba)
            row[2] += confidence
            row[3] += classes

    def shadow(
        self,
        name: str,
        shadow: int,
        served_classes: np.ndarray,
        shadow_classes: np.ndarray,
        served_confidence: float,
        shadow_confidence: float,
    ) -> None:
        with self._lock:
            row = self._shadows.get((name, shadow))
            if row is None:
                row = self._shadows[(name, shadow)] = [0, 0.0, 0.0, {}]
            row[0] += 1
            row[1] += served_confidence
            row[2] += shadow_confidence
            pairs = row[3]
            for pair in zip(served_classes.tolist(), shadow_classes.tolist(), strict=True):
                pairs[pair] = pairs.get(pair, 0) + 1

    def shadow_error(self, name: str, shadow: int) -> None:
        with self._lock:
            self._shadow_errors[(name, shadow)] = self._shadow_errors.get((name, shadow), 0) + 1

    def take(self) -> tuple[dict, dict, dict, dict, dict]:
        """Everything counted so far (requests, latency, versions, shadows, shadow errors);
        starts afresh."""
        with self._lock:
            out = (self._requests, self._latency, self._versions, self._shadows,
                   self._shadow_errors)  # fmt: skip
            self._reset()
        return out


def _add_observations(hist: Any, counts: list[int], total: float) -> None:
    """Add many observations to a Histogram child at once: `counts[i]` more in bucket i, `total`
    more in the sum. prometheus_client has no public call for it (``observe`` takes one value),
    so this writes the two value kinds ``observe`` writes (``_buckets[i]``, ``_sum``, stable
    since 0.4); tests/unit/test_inference_telemetry.py checks it against ``observe``."""
    hist._sum.inc(total)
    for i, n in enumerate(counts):
        if n:
            hist._buckets[i].inc(n)
