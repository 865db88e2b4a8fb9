"""Memory over a long run: does a worker's RSS stay flat across hot reloads, predictions and jobs?

    python -m benchmarks.memory [--reloads N] [--images N] [--jobs N] [--batch N] [--keep-last N]
                                [--skip-inference] [--skip-trainer] [--no-save] [--json-out FILE]

Real processes on loopback, in a temporary folder (issue 22, "runs unattended for months"):

1. Inference. The service under gunicorn as the Procfile starts it (its gunicorn.conf.py, default
   settings: 2 sync workers, MODEL_CACHE_SIZE 4, registry poll 0.5 s) on a folder registry holding
   an untrained model of the default architecture (784-512-256-10, ~2 MiB of weights). Then,
   `--reloads` times: publish a new version, wait until /readyz shows EVERY worker serving it (the
   poller loads it and swaps it in: a hot reload), send the next share of `--images` predictions
   as .npy batches of `--batch` images (2 connections at a time, so both workers predict; every
   answer must be 200 and carry X-Model-Version = the new version), then sample each worker's RSS,
   PSS and USS (/proc/PID/smaps_rollup) and the versions it holds loaded (/readyz). Only
   MODEL_CACHE_SIZE versions may stay loaded: a worker that kept the old ones would grow by a
   model per reload, which is what this catches. Every tenth of the run, /metrics is read too:
   its series, how many model versions they name, and the bytes used in the Prometheus files.
   `--keep-last N` runs it as a service left for months would be: the model has a retention rule
   (what `PUT /v1/models/<name>/retention` sets) and after each publish the rule is applied the
   way the publishing job applies it (trainer_service.worker.retention.apply_retention), so old
   versions leave the registry and the workers must forget them; without it every version is
   kept (the per-kept-version cost).
2. Trainer. The trainer API and one RQ worker (`python -m trainer_service worker`, as the
   Procfile does) on a queue of this run's own; `--jobs` small jobs (784-32-10, 1 epoch,
   train_limit 1000) POSTed one after the other through the API (benchmarks.lifecycle.run_job).
   After each job, once the worker is idle again: the long-lived worker process's RSS/PSS/USS.
   RQ forks a work horse per job: its peak RSS (VmHWM, read every 50 ms while it runs) is kept too.

Figures per process: RSS once warm (after the first 10 % of steps), at the end, and the
least-squares slope over the steps after warm-up (MiB per 100 reloads, per 100k predictions, per
100 jobs) with its standard error. Verdict "flat" when the slope is below FLAT_MIB_PER_100 MiB per
100 steps; "growing" when it is above and more than 3 standard errors from 0. The threshold: a
worker that kept one old model version per reload would grow by ~200 MiB per 100 reloads, a
trainer worker that kept a job's trained model or data slice per job by tens of MiB per 100 jobs;
2 MiB per 100 steps is 1 % of that and above what allocator noise gives over a run (a few pages).

Redis: $REDIS_URL, else redis://127.0.0.1:6379/13, else an embedded one; only this run's keys are
written and deleted. Results: markdown on stdout, every sample in benchmarks/results/memory-<date>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    Interference,
    default_data_dir,
    load_average,
    machine_info,
    markdown_table,
    now_iso,
    save_result,
)
from benchmarks.lifecycle import (
    INFERENCE_APP,
    INFERENCE_CONF,
    MODEL,
    PYTHON,
    TINY_JOB,
    TRAINER_APP,
    TRAINER_CONF,
    Proc,
    Variant,
    base_env,
    children_of,
    delete_queue_keys,
    publish_version,
    redis_url,
    request,
    run_job,
    start,
    start_gunicorn,
    stop,
    wait_until,
    wait_worker_idle,
)
from benchmarks.serving import npy_body, sample_images, smaps_rollup
from shared.blas import BLAS_THREAD_VARIABLES

#: The default architecture: what production serves, and big enough (~2 MiB) that a version kept
#: loaded per reload shows at once.
HIDDEN = [512, 256]
#: A slope below this (MiB per 100 reloads / jobs) is "flat" (module docstring: why).
FLAT_MIB_PER_100 = 2.0
#: Share of the steps counted as warm-up (not in the slope).
WARMUP_SHARE = 0.10
MEMORY_KEYS = ("rss_mib", "pss_mib", "uss_mib")


# ---------------------------------------------------------------------------------------------
# statistics


def fit(xs: list[float], ys: list[float]) -> tuple[float | None, float | None]:
    """Least-squares slope of ys over xs and its standard error (None when undefined)."""
    n = len(xs)
    if n < 2:
        return None, None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None, None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if n < 3:
        return slope, None
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(residual / (n - 2) / sxx)


def warmup_steps(n: int) -> int:
    """How many of n samples (step 0 = before the first step) are warm-up: the first 10 % of the
    steps, at least one."""
    return max(1, math.ceil(WARMUP_SHARE * (n - 1)))


def verdict(slope: float | None, stderr: float | None) -> str:
    if slope is None:
        return "too few samples"
    if slope < FLAT_MIB_PER_100:
        return "flat"
    if stderr is not None and slope > 3 * stderr:
        return "growing"
    return "inconclusive (noisy)"


def series_summary(
    samples: list[dict[str, Any]], key: str, per: dict[str, tuple[str, float]]
) -> dict[str, Any]:
    """RSS/PSS/USS once warm and at the end, and slopes after warm-up of `key` in each sample.

    `per`: slope name -> (the sample field used as x, the unit it is quoted per, e.g. 100)."""
    warm = warmup_steps(len(samples))
    after = samples[warm:]
    out: dict[str, Any] = {"warmup_samples": warm, "samples_in_fit": len(after)}
    for mem in MEMORY_KEYS:
        out[f"{mem}_warm"] = samples[warm][key][mem] if len(samples) > warm else None
        out[f"{mem}_end"] = samples[-1][key][mem]
        out[f"{mem}_max"] = max(s[key][mem] for s in samples)
        for name, (field, unit) in per.items():
            slope, stderr = fit([s[field] for s in after], [s[key][mem] for s in after])
            out[f"{mem}_slope_per_{name}"] = None if slope is None else round(slope * unit, 3)
            out[f"{mem}_stderr_per_{name}"] = None if stderr is None else round(stderr * unit, 3)
    return out


# ---------------------------------------------------------------------------------------------
# 1. inference


def readyz_views(port: int, pids: set[int], tries: int) -> dict[int, dict[str, Any]]:
    """pid -> its last /readyz answer, over up to `tries` fresh-connection probes (stops once every
    pid has answered)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        _, _, data = request("GET", port, "/readyz")
        info = json.loads(data)
        seen[int(info["pid"])] = info
        if set(seen) >= pids:
            break
    return seen


def wait_serving(port: int, pids: set[int], version: int, proc: Proc) -> dict[int, list[str]]:
    """Wait until every worker's /readyz says it serves `version`; pid -> versions it holds."""
    done: dict[int, list[str]] = {}

    def switched() -> bool:
        for pid, info in readyz_views(port, pids, 4 * len(pids)).items():
            if (info.get("models", {}).get(MODEL) or {}).get("serving") == version:
                done[pid] = info.get("loaded", [])
        return set(done) >= pids

    wait_until(switched, 60, f"every worker to serve version {version}", 0.02, proc)
    return done


def predict_batches(port: int, body: bytes, count: int, version: int) -> None:
    """`count` .npy batch predicts, two at a time; each must be a 200 from `version`."""

    def one(_: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", f"/v1/models/{MODEL}/predict", body,
                         {"Content-Type": "application/x-npy"})  # fmt: skip
            resp = conn.getresponse()
            status, version_header, data = (
                resp.status,
                resp.getheader("X-Model-Version"),
                resp.read(),
            )
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"predict: HTTP {status}: {data[:300]!r}")
        if version_header != str(version):
            raise RuntimeError(f"predict answered by v{version_header}, not v{version}")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(count)))


def rss_by_mapping(pid: int) -> dict[str, int]:
    """RSS of one process per mapping name (a file's path, [heap], [stack], [anon]) in KiB."""
    out: dict[str, int] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if not parts[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
            name = parts[5] if len(parts) > 5 else "[anon]"
        elif parts[0] == "Rss:":
            out[name] = out.get(name, 0) + int(parts[1])
    return out


def growth_by_mapping(before: dict[str, int], after: dict[str, int], top: int = 6) -> dict:
    """The mappings whose RSS changed most between two `rss_by_mapping` snapshots, in MiB."""
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    biggest = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
    return {k: round(v / 1024, 2) for k, v in biggest if v}


def metrics_view(port: int, prom_dir: Path) -> dict[str, int]:
    """/metrics (every worker's series, aggregated): its sample lines, how many distinct model
    versions they name, and the bytes used in the Prometheus multiprocess files."""
    _, _, data = request("GET", port, "/metrics")
    lines = [line for line in data.decode().splitlines() if line and not line.startswith("#")]
    versions = {v for line in lines for v in re.findall(r'(?:version|shadow)="(\d+)"', line)}
    used = 0
    for path in prom_dir.glob("*.db"):  # prometheus_client's mmap files: 4 bytes of used size
        with path.open("rb") as f:
            used += int.from_bytes(f.read(4), "little")
    return {"series": len(lines), "versions_named": len(versions), "db_bytes_used": used}


def bench_inference(args: argparse.Namespace, tmp: Path, url: str) -> dict[str, Any]:
    import redis

    from shared.registry import Registry
    from trainer_service.worker.retention import apply_retention

    registry = Registry(tmp / "models")
    registry.root.mkdir(parents=True)
    version = publish_version(registry, tmp, 1, HIDDEN)
    deleted: list[int] = []
    conn = redis.Redis.from_url(url)
    queue = f"bench-memory-{uuid.uuid4().hex[:10]}"  # only read (no job runs on it)
    if args.keep_last is not None:  # what PUT /v1/models/<name>/retention does
        registry.set_retention(MODEL, args.keep_last, actor="bench-memory")

    def publish(seed: int) -> int:
        new = publish_version(registry, tmp, seed, HIDDEN)
        if args.keep_last is not None:  # what the job that published runs next
            deleted.extend(apply_retention(registry, conn, queue, MODEL, f"bench-memory-{seed}"))
        return new

    env = base_env(tmp)
    env.update(MODEL_REGISTRY_DIR=str(registry.root), PROMETHEUS_MULTIPROC_DIR=str(tmp / "prom"))
    (tmp / "prom").mkdir()
    batch = min(args.batch, args.images)
    body = npy_body(sample_images(batch))
    requests_total = math.ceil(args.images / batch)
    proc, port = start_gunicorn("inference", INFERENCE_APP, INFERENCE_CONF, env, tmp)
    samples: list[dict[str, Any]] = []
    try:
        wait_until(lambda: children_of(proc.popen.pid), 30, "gunicorn workers", 0.1, proc)
        time.sleep(0.5)
        pids = children_of(proc.popen.pid)
        loaded = wait_serving(port, pids, version, proc)
        images = 0

        def sample(step: int, seconds: float) -> None:
            now = children_of(proc.popen.pid)
            if now != pids:
                raise RuntimeError(f"gunicorn workers changed {sorted(pids)} -> {sorted(now)}:\n"
                                   f"{proc.tail()}")  # fmt: skip
            samples.append({
                "step": step, "version": version, "images": images, "seconds": round(seconds, 3),
                "master": smaps_rollup(proc.popen.pid),
                "workers": {str(p): smaps_rollup(p) for p in sorted(pids)},
                "loaded_versions": {str(p): len(loaded[p]) for p in sorted(pids)},
            })  # fmt: skip

        predict_batches(port, body, 2 * len(pids), version)  # every worker has predicted once
        sample(0, 0.0)
        warm = warmup_steps(args.reloads + 1)
        mappings: dict[str, dict[str, dict[str, int]]] = {}
        series: dict[str, dict[str, int]] = {"0": metrics_view(port, tmp / "prom")}
        with Interference(pids=[proc.popen.pid, *pids]) as busy:
            for step in range(1, args.reloads + 1):
                t0 = time.perf_counter()
                version = publish(step + 1)
                loaded = wait_serving(port, pids, version, proc)
                count = round(step * requests_total / args.reloads) - round(
                    (step - 1) * requests_total / args.reloads
                )
                predict_batches(port, body, count, version)
                images += count * batch
                sample(step, time.perf_counter() - t0)
                for label, at in (("warm", warm), ("end", args.reloads)):
                    if step == at:
                        mappings[label] = {str(p): rss_by_mapping(p) for p in sorted(pids)}
                if step % max(1, args.reloads // 10) == 0 or step in (warm, args.reloads):
                    series[str(step)] = view = metrics_view(port, tmp / "prom")
                if step % max(1, args.reloads // 10) == 0:
                    rss = ", ".join(f"{w['rss_mib']:.1f}" for w in samples[-1]["workers"].values())
                    print(f"  reload {step}/{args.reloads}: {images:,} images, worker RSS {rss} "
                          f"MiB, /metrics {view['series']} series naming "
                          f"{view['versions_named']} versions", flush=True)  # fmt: skip
    finally:
        stop(proc)
        conn.close()
    per = {"100_reloads": ("step", 100.0), "100k_predictions": ("images", 1e5)}
    workers = {
        pid: series_summary([{**s, "w": s["workers"][pid]} for s in samples], "w", per)
        for pid in samples[0]["workers"]
    }
    return {
        "settings": {
            "gunicorn_workers": len(samples[0]["workers"]),
            "model": "784-512-256-10 float32 (default architecture), untrained",
            "version_file_bytes": _model_bytes(registry),
            "reloads": args.reloads,
            "batch_images": batch,
            "body": ".npy float32 [batch, 784]",
            "requests": requests_total,
            "model_cache_size": "default (4)",
            "registry_poll_seconds": "default (0.5)",
            "keep_last": args.keep_last,
        },
        "versions_published": args.reloads + 1,
        "versions_deleted_by_retention": len(deleted),
        "versions_in_registry_at_end": len(registry.versions(MODEL)),
        "images_predicted": images,
        "max_loaded_versions": max(max(s["loaded_versions"].values()) for s in samples),
        "other_processes_cpu_share": round(busy.share, 3),
        "workers": workers,
        "master": series_summary(samples, "master", per),
        "metrics_by_step": series,
        "growth_by_mapping_mib": {
            pid: growth_by_mapping(mappings["warm"][pid], mappings["end"][pid])
            for pid in mappings.get("end", {})
            if pid in mappings.get("warm", {})
        },
        "samples": samples,
    }


def _model_bytes(registry: Any) -> int:
    """Size of the first version's weights file (what each reload loads)."""
    files = sorted(registry.root.rglob("*.npz"))
    return files[0].stat().st_size if files else 0


# ---------------------------------------------------------------------------------------------
# 2. trainer


class HorseWatch:
    """A thread reading the peak RSS (VmHWM) of the worker's children (RQ work horses) every
    50 ms: horse pid -> the largest VmHWM seen, in MiB."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HorseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in children_of(self.parent):
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith("VmHWM:"):
                        mib = int(line.split()[1]) / 1024
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), round(mib, 1))
            self._stop.wait(0.05)


def bench_trainer(args: argparse.Namespace, tmp: Path, url: str) -> dict[str, Any]:
    env = base_env(tmp)
    for var in BLAS_THREAD_VARIABLES:  # the worker's own default, as deployed
        env.pop(var, None)
    v = Variant("current", REPO_ROOT, queue=f"bench-memory-{uuid.uuid4().hex[:10]}")
    v.registry_dir = tmp / "models-trainer"
    env.update(MNIST_DATA_DIR=str(args.data_dir), REDIS_URL=url, API_TOKEN="",
               RQ_QUEUE=v.queue, MODEL_REGISTRY_DIR=str(v.registry_dir))  # fmt: skip
    name = f"{v.queue}-w"
    samples: list[dict[str, Any]] = []
    try:
        v.api, v.api_port = start_gunicorn("trainer-api", TRAINER_APP, TRAINER_CONF, env, tmp)
        v.worker = start("trainer-worker", [PYTHON, "-m", "trainer_service", "worker", "--name",
                                            name], env, tmp)  # fmt: skip
        wait_worker_idle(url, v)
        time.sleep(1.0)
        pid = v.worker.popen.pid
        samples.append({"step": 0, "worker": smaps_rollup(pid), "horse_peak_rss_mib": None})
        with Interference(pids=[pid]) as busy, HorseWatch(pid) as horses:
            for step in range(1, args.jobs + 1):
                before = set(horses.peaks)
                job = run_job(v, dict(TINY_JOB), "memory")
                v.jobs.append(job)
                if job["status"] != "finished":
                    raise RuntimeError(f"job {job['job_id']} {job['status']}: {job['error']}")
                wait_worker_idle(url, v)
                peaks = [p for h, p in horses.peaks.items() if h not in before]
                samples.append({"step": step, "worker": smaps_rollup(pid),
                                "horse_peak_rss_mib": max(peaks) if peaks else None,
                                "job_seconds": round(job["ended"], 3)})  # fmt: skip
                if step % max(1, args.jobs // 10) == 0:
                    print(f"  job {step}/{args.jobs}: worker RSS "
                          f"{samples[-1]['worker']['rss_mib']:.1f} MiB, horse peak "
                          f"{samples[-1]['horse_peak_rss_mib']} MiB", flush=True)  # fmt: skip
    finally:
        for proc in (v.worker, v.api):
            if proc is not None:
                stop(proc)
        deleted = delete_queue_keys(url, v.queue, [j["job_id"] for j in v.jobs], [name])
    peaks = [s["horse_peak_rss_mib"] for s in samples if s["horse_peak_rss_mib"] is not None]
    return {
        "settings": {"jobs": args.jobs, "job": TINY_JOB, "queue": v.queue, "submitted": "POST /v1/jobs (trainer API)",
                     "worker": "python -m trainer_service worker (RQ forks a work horse per job)"},
        "worker": series_summary(samples, "worker", {"100_jobs": ("step", 100.0)}),
        "horse_peak_rss_mib": {"min": min(peaks, default=None), "max": max(peaks, default=None),
                               "first": peaks[0] if peaks else None,
                               "last": peaks[-1] if peaks else None},
        "other_processes_cpu_share": round(busy.share, 3),
        "redis_keys_deleted": deleted,
        "samples": samples,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# report


def _row(label: str, s: dict[str, Any], per: str, mem: str = "rss_mib") -> list[Any]:
    slope, err = s[f"{mem}_slope_per_{per}"], s[f"{mem}_stderr_per_{per}"]
    uss = s[f"uss_mib_slope_per_{per}"]
    return [
        label,
        s["samples_in_fit"],
        s[f"{mem}_warm"],
        s[f"{mem}_end"],
        "-" if slope is None else f"{slope:+.2f} ± {err if err is not None else '-'}",
        "-" if uss is None else f"{uss:+.2f}",
        verdict(slope, err),
    ]


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    headers = ["process", "samples in fit", "RSS warm MiB", "RSS end MiB", "RSS slope ± s.e.",
               "USS slope", f"verdict (flat < {FLAT_MIB_PER_100:g})"]  # fmt: skip
    inf = results.get("inference")
    if inf:
        rows = [
            _row(f"inference worker {pid}", s, "100_reloads") for pid, s in inf["workers"].items()
        ]
        rows.append(_row("gunicorn master", inf["master"], "100_reloads"))
        keep = inf["settings"]["keep_last"]
        kept = "every version kept" if keep is None else f"retention: keep the last {keep}"
        lines += [f"### Inference: {inf['settings']['reloads']} hot reloads, "
                  f"{inf['images_predicted']:,} images predicted, {kept} "
                  f"(MiB per 100 reloads)", ""]  # fmt: skip
        lines.append(markdown_table(headers, rows))
        per_pred = ", ".join(
            f"{s['rss_mib_slope_per_100k_predictions']:+.2f}"
            for s in inf["workers"].values()
            if s["rss_mib_slope_per_100k_predictions"] is not None
        )
        lines.append(f"\nworker RSS slope per 100k predictions: {per_pred or '-'} MiB; most "
                     f"versions loaded in a worker at once: {inf['max_loaded_versions']}; other "
                     f"processes' CPU share: {inf['other_processes_cpu_share']:.0%}")  # fmt: skip
        steps = inf["metrics_by_step"]
        first, last = steps["0"], steps[str(inf["settings"]["reloads"])]
        lines.append(f"versions in the registry at the end: {inf['versions_in_registry_at_end']} "
                     f"of {inf['versions_published']} published; /metrics: {first['series']} -> "
                     f"{last['series']} series naming {first['versions_named']} -> "
                     f"{last['versions_named']} versions, Prometheus files {first['db_bytes_used']:,}"
                     f" -> {last['db_bytes_used']:,} bytes used")  # fmt: skip
    tr = results.get("trainer")
    if tr:
        lines += ["", f"### Trainer: {tr['settings']['jobs']} jobs (MiB per 100 jobs)", ""]
        lines.append(
            markdown_table(headers, [_row("RQ worker (parent)", tr["worker"], "100_jobs")])
        )
        h = tr["horse_peak_rss_mib"]
        lines.append(f"\nwork horse peak RSS (VmHWM): first {h['first']}, last {h['last']}, "
                     f"range {h['min']}-{h['max']} MiB; other processes' CPU share: "
                     f"{tr['other_processes_cpu_share']:.0%}")  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--reloads", type=int, default=200, help="hot reloads (default 200)")
    p.add_argument("--images", type=int, default=1_000_000,
                   help="images predicted over the reloads (default 1,000,000)")  # fmt: skip
    p.add_argument("--batch", type=int, default=1024, help="images per request (default 1024)")
    p.add_argument("--jobs", type=int, default=100, help="trainer jobs (default 100)")
    p.add_argument(
        "--keep-last",
        type=int,
        default=None,
        metavar="N",
        help="a retention rule on the model: keep its last N versions, applied after "
        "each publish as the publishing job does (default: every version kept)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST folder")  # fmt: skip
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--skip-trainer", action="store_true")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    p.add_argument("--json-out", type=Path, help="write the results here instead")
    args = p.parse_args(argv)
    for name in ("reloads", "images", "batch", "jobs", "keep_last"):
        if (getattr(args, name) or 1) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    args.data_dir = args.data_dir or default_data_dir()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="digitflow-bench-memory-"))
    results: dict[str, Any] = {
        "benchmark": "memory",
        "command": "python -m benchmarks.memory " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": now_iso(),
        "machine": machine_info(),
        "flat_threshold_mib_per_100": FLAT_MIB_PER_100,
        "warmup_share": WARMUP_SHARE,
    }  # fmt: skip
    url, embedded = redis_url()
    try:
        if not args.skip_inference:
            print("inference:", flush=True)
            results["inference"] = bench_inference(args, tmp, url)
        if not args.skip_trainer:
            print("trainer:", flush=True)
            results["trainer"] = bench_trainer(args, tmp, url)
    finally:
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["finished"] = now_iso()
    results["load_average_at_end"] = [round(v, 2) for v in load_average()]
    text = report(results)
    results["report_markdown"] = text
    print("\n" + text)
    if not args.no_save or args.json_out:
        print(f"\nresults: {save_result('memory', results, args.json_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
