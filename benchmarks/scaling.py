"""Scaling out (issue 12): what running digitflow on several hosts costs and gains.

    sudo python -m benchmarks.scaling            # ~10 min; results/scaling-<date>.json
    sudo python -m benchmarks.scaling --quick    # ~1.5 min, tiny figures (the smoke test)

Every service runs on its own "host", a network namespace of benchmarks/cluster.py (root), with
haproxy in front of the inference replicas. One run measures, side by side:

1. publish-to-served, per registry location (`--registries`): a version of the default
   architecture is published from the benchmark (a worker's publish call; its duration is the
   upload time), then every worker of every replica is watched (/readyz) until it serves it.
   The time from the end of the publish call to the moment each replica serves it is mostly the
   poll (REGISTRY_POLL_SECONDS) plus loading the model.
2. predictions/s and latency, one image per request (wrk, one thread), interleaved per round:
   straight to one replica (no balancer), through the balancer to one replica, through the
   balancer to two. The first two differ by the balancer hop; the last two by the second replica.
3. training jobs per hour with one and with two worker hosts, each worker one BLAS thread: the
   same batch of jobs submitted through the API at once, timed from the first submission to the
   last job's end.

On a 2-core machine the second replica and the second worker host share the same two cores as
the first (and with haproxy, Redis, the load generator and whatever else runs): these figures
show the per-hop and per-publish costs a bigger deployment pays, not its scaling. The report says
so next to the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster import INFERENCE_PORT, Cluster, LocalRegistry, S3Registry
from benchmarks.common import (
    cpu_busy_ticks,
    default_data_dir,
    machine_info,
    markdown_table,
    now_iso,
    save_result,
    wait_until_quiet,
)
from benchmarks.lifecycle import MODEL, model_file, publish_version
from benchmarks.serving import json_body, run_wrk, sample_images, wrk_binary

REGISTRIES = ("local", "s3")
#: The default preset's network (what a real publish uploads and a replica loads: ~2 MB).
PUBLISH_HIDDEN = [512, 256]
#: A training job that takes a few seconds on one BLAS thread (reports included).
JOB = {"hidden_layers": [256, 128], "epochs": 2, "train_limit": 20000, "batch_size": 128}
QUICK_JOB = {"hidden_layers": [32], "epochs": 1, "train_limit": 2000}
BALANCER_POINTS = ("direct, 1 replica", "balancer, 1 replica", "balancer, 2 replicas")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def jobs_per_hour(jobs: int, seconds: float) -> float:
    """Throughput of a batch: `jobs` done in `seconds` of wall time."""
    return jobs * 3600.0 / seconds if seconds > 0 else 0.0


class OthersProbe:
    """Share of the machine's CPUs used by processes that are neither the cluster's (every
    namespace, reaped children included) nor this benchmark and its wrk runs, while a block
    runs: how disturbed a figure is on a shared machine."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _ours(self) -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system + self.cluster.cpu_seconds()

    def __enter__(self) -> OthersProbe:
        self.ticks, self.own, self.wall = cpu_busy_ticks(), self._ours(), time.perf_counter()
        self.cluster_cpu0 = self.cluster.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, total0 = self.ticks
        busy1, total1 = cpu_busy_ticks()
        #: CPU seconds the deployment itself used (not the client): what the work costs
        self.cluster_cpu = self.cluster.cpu_seconds() - self.cluster_cpu0
        wall = time.perf_counter() - self.wall
        others = (busy1 - busy0) / os.sysconf("SC_CLK_TCK") - (self._ours() - self.own)
        ncpu = os.cpu_count() or 1
        self.share = round(max(0.0, others / (wall * ncpu)), 3) if total1 > total0 else None


def make_registry(label: str, work: Path) -> Any:
    if label == "local":
        return LocalRegistry(work / "models")
    if label == "s3":
        return S3Registry()
    raise SystemExit(f"unknown registry {label!r} (known: {', '.join(REGISTRIES)})")


# --- 1. publish-to-served -----------------------------------------------------------------------


def bench_publish(c: Cluster, publishes: int, log: Any) -> dict[str, Any]:
    """Publish `publishes` versions one after another; per publish the call's duration and, per
    replica, the time from the call's end until every one of its workers serves the version."""
    registry = c.registry.open(c, writable=True)
    scratch = c.workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    rows = []
    probe = OthersProbe(c).__enter__()
    for i in range(publishes):
        path, meta = model_file(scratch, seed=i + 1, hidden=PUBLISH_HIDDEN)
        t0 = time.monotonic()
        version = registry.publish(MODEL, path, meta)
        t1 = time.monotonic()
        path.unlink()
        served = c.wait_served_everywhere(MODEL, version, timeout=60)
        row = {
            "version": version,
            "publish_s": round(t1 - t0, 4),
            "served_after_s": {r: round(at - t1, 3) for r, at in served.items()},
        }
        rows.append(row)
        log(f"  v{version}: publish {row['publish_s']:.3f} s, served {row['served_after_s']}")
        time.sleep(0.2)
    probe.__exit__(None, None, None)
    all_served = [v for row in rows for v in row["served_after_s"].values()]
    last_replica = [max(row["served_after_s"].values()) for row in rows]
    return {
        "registry": c.registry.label,
        "poll_seconds": c.poll_seconds,
        "publishes": rows,
        "publish_s_median": median([r["publish_s"] for r in rows]),
        "served_s_median": median(all_served),
        "served_s_max": max(all_served),
        "every_replica_s_median": median(last_replica),
        "others_cpu_share": probe.share,
    }


# --- 2. predictions through the balancer --------------------------------------------------------


def bench_balancer(
    c: Cluster, seconds: int, reps: int, connections: tuple[int, ...], log: Any
) -> dict[str, Any]:
    """wrk straight to infer1, through haproxy to infer1, through haproxy to both; interleaved."""
    body_file = c.workdir / "predict.json"
    body_file.write_bytes(json_body(sample_images(1)))
    path = f"/v1/models/{MODEL}/predict"
    lb = c.hosts["lb"]
    first = c.replicas[0]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        p: {n: [] for n in connections} for p in BALANCER_POINTS
    }
    for rep in range(reps):
        for point in BALANCER_POINTS:
            if point == "direct, 1 replica":
                host, port = c.hosts[first].ip, INFERENCE_PORT
            else:
                replicas = [first] if point.endswith("1 replica") else c.replicas
                c.start_balancer(replicas)
                c.wait(
                    lambda rs=replicas: all(
                        c.balancer_stats()[f"inference/{r}"]["status"] == "UP" for r in rs
                    ),
                    c.balancer_proc,
                    30,
                    "every replica UP in haproxy",
                )
                host, port = lb.ip, 8080
            for n in connections:
                with OthersProbe(c) as probe:
                    out = run_wrk(port, path, body_file, connections=n, seconds=seconds, host=host)
                out["others_cpu_share"] = probe.share
                out["cluster_cpu_ms_per_request"] = round(
                    probe.cluster_cpu * 1000 / max(1, out["requests"]), 3
                )
                runs[point][n].append(out)
                log(
                    f"  round {rep + 1} {point:<22} c={n:<2} {out['rps']:7.1f} req/s  "
                    f"p50 {out['p50_us'] / 1000:6.2f} ms  p99 {out['p99_us'] / 1000:6.2f} ms  "
                    f"errors {out['errors']}  others {probe.share}  "
                    f"{out['cluster_cpu_ms_per_request']} CPU ms/req"
                )
    summary: dict[str, Any] = {}
    for point, by_n in runs.items():
        summary[point] = {
            str(n): {
                "rps": round(median([r["rps"] for r in outs]), 1),
                "p50_ms": round(median([r["p50_us"] for r in outs]) / 1000, 3),
                "p99_ms": round(median([r["p99_us"] for r in outs]) / 1000, 3),
                "errors": sum(r["errors"] for r in outs),
                "others_cpu_share": median([r["others_cpu_share"] or 0.0 for r in outs]),
                "cluster_cpu_ms_per_request": median(
                    [r["cluster_cpu_ms_per_request"] for r in outs]
                ),
            }
            for n, outs in by_n.items()
        }
    direct, one, two = (summary[p] for p in BALANCER_POINTS)
    ratios = {
        str(n): {
            "balancer_hop_rps_ratio": round(one[str(n)]["rps"] / direct[str(n)]["rps"], 3),
            "balancer_hop_p50_ms": round(one[str(n)]["p50_ms"] - direct[str(n)]["p50_ms"], 3),
            "two_vs_one_replica_rps_ratio": round(two[str(n)]["rps"] / one[str(n)]["rps"], 3),
            "balancer_hop_cpu_ms_per_request": round(
                one[str(n)]["cluster_cpu_ms_per_request"]
                - direct[str(n)]["cluster_cpu_ms_per_request"],
                3,
            ),
        }
        for n in connections
    }
    return {"seconds": seconds, "reps": reps, "points": summary, "ratios": ratios}


# --- 3. jobs per hour ---------------------------------------------------------------------------


def run_batch(c: Cluster, model: str, jobs: int, config: dict[str, Any]) -> dict[str, Any]:
    """Submit `jobs` jobs at once through the API; wall time until the last one ended."""
    client = c.client()
    t0 = time.monotonic()
    ids = [client.submit({"model": model, **config})["job_id"] for _ in range(jobs)]
    done = [client.wait(i, poll=0.2, timeout=1800) for i in ids]
    wall = time.monotonic() - t0
    bad = [j for j in done if j["status"] != "finished"]
    if bad:
        raise RuntimeError(f"jobs did not finish: {bad[:2]}\n{c.logs_tail()}")
    per_host: dict[str, int] = {}
    for j in done:
        host = c.worker_host(j["worker"]) or "?"
        per_host[host] = per_host.get(host, 0) + 1
    return {
        "jobs": jobs,
        "wall_s": round(wall, 2),
        "jobs_per_hour": round(jobs_per_hour(jobs, wall), 1),
        "per_host": per_host,
        "versions": sorted(j["model_version"] for j in done),
    }


def bench_workers(
    c: Cluster, jobs: int, reps: int, config: dict[str, Any], log: Any
) -> dict[str, Any]:
    """The same batch with one worker host, then with two; `reps` rounds, alternating."""
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    for rep in range(reps):
        for hosts in (1, 2):
            want = [f"worker{i}" for i in range(1, hosts + 1)]
            for name in [w for w in c.workers if w not in want]:
                host = c.hosts[name]
                for proc in host.procs:
                    host.stop(proc)
            for name in want:
                if name not in c.hosts or not c.hosts[name].procs[-1].alive():
                    c.start_worker(name)
            with OthersProbe(c) as probe:
                out = run_batch(c, f"scale-{hosts}-{rep}", jobs, config)
            out["others_cpu_share"] = probe.share
            out["cluster_cpu_s_per_job"] = round(probe.cluster_cpu / jobs, 2)
            runs[str(hosts)].append(out)
            log(
                f"  round {rep + 1}, {hosts} worker host(s): {jobs} jobs in {out['wall_s']:.1f} s "
                f"= {out['jobs_per_hour']:.0f} jobs/h, per host {out['per_host']}, "
                f"others {probe.share}, {out['cluster_cpu_s_per_job']} CPU s per job"
            )
    summary = {k: median([r["jobs_per_hour"] for r in v]) for k, v in runs.items()}
    others = {k: median([r["others_cpu_share"] or 0.0 for r in v]) for k, v in runs.items()}
    cpu = {k: median([r["cluster_cpu_s_per_job"] for r in v]) for k, v in runs.items()}
    return {
        "others_cpu_share": others,
        "cluster_cpu_s_per_job": cpu,
        "job": config,
        "jobs_per_batch": jobs,
        "reps": reps,
        "runs": runs,
        "jobs_per_hour": summary,
        "two_vs_one_ratio": round(summary["2"] / summary["1"], 3) if summary["1"] else None,
    }


# --- report -------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [
        f"scaling benchmark, {results['started_at']}, {results['machine']['cpu']}, "
        f"{results['machine']['logical_cpus']} CPUs",
    ]
    if "publish" in results:
        rows = [
            [
                label,
                f"{r['publish_s_median'] * 1000:.0f} ms",
                f"{r['served_s_median']:.2f} s",
                f"{r['every_replica_s_median']:.2f} s",
                f"{r['served_s_max']:.2f} s",
                f"{(r.get('others_cpu_share') or 0) * 100:.0f} %",
            ]
            for label, r in results["publish"].items()
        ]
        lines += [
            "",
            f"publish-to-served (REGISTRY_POLL_SECONDS {results['settings']['poll_seconds']}):",
            markdown_table(
                [
                    "registry",
                    "publish call (upload)",
                    "served, median per replica",
                    "every replica, median",
                    "max",
                    "others' CPU",
                ],
                rows,
            ),
        ]
    if "balancer" in results:
        b = results["balancer"]
        rows = [
            [
                point,
                n,
                p["rps"],
                p["p50_ms"],
                p["p99_ms"],
                p["errors"],
                p.get("cluster_cpu_ms_per_request"),
                f"{(p.get('others_cpu_share') or 0) * 100:.0f} %",
            ]
            for point, by_n in b["points"].items()
            for n, p in by_n.items()
        ]
        lines += [
            "",
            "one image per request, wrk -t1 (medians of the rounds):",
            markdown_table(
                [
                    "path",
                    "connections",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "deployment CPU ms/request",
                    "others' CPU",
                ],
                rows,
            ),
            "ratios: " + json.dumps(b["ratios"]),
        ]
    if "workers" in results:
        w = results["workers"]
        lines += [
            "",
            f"training jobs ({json.dumps(w['job'])}, {w['jobs_per_batch']} per batch, "
            "one BLAS thread per worker):",
            markdown_table(
                ["worker hosts", "jobs/hour (median)", "deployment CPU s/job", "others' CPU"],
                [
                    [
                        k,
                        f"{v:.0f}",
                        (w.get("cluster_cpu_s_per_job") or {}).get(k),
                        f"{(w.get('others_cpu_share') or {}).get(k, 0) * 100:.0f} %",
                    ]
                    for k, v in w["jobs_per_hour"].items()
                ],
            ),
            f"two vs one worker host: {w['two_vs_one_ratio']}x",
        ]
    lines += [
        "",
        f"note: {results['machine']['logical_cpus']} CPUs shared by every host, haproxy, Redis and "
        "the load generator: a second replica or worker host adds processes, not cores. These "
        "figures show the costs (balancer hop, registry poll, upload) more than the scaling; "
        "where other work also wants the CPUs ('others' CPU'), more processes of ours also win a "
        "larger share of them, which looks like scaling and is not.",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="tiny figures: 1 s points, 2 tiny jobs")
    p.add_argument(
        "--sections",
        default="publish,balancer,workers",
        help="comma-separated subset of publish,balancer,workers",
    )
    p.add_argument(
        "--registries",
        default=",".join(REGISTRIES),
        help=f"registry locations for the publish section ({', '.join(REGISTRIES)})",
    )
    p.add_argument("--publishes", type=int, default=None, help="per registry (default 8; quick 2)")
    p.add_argument("--seconds", type=int, default=None, help="wrk seconds per point (5; quick 1)")
    p.add_argument("--reps", type=int, default=None, help="rounds (default 3; quick 1)")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    p.add_argument("--jobs", type=int, default=None, help="jobs per batch (default 6; quick 2)")
    p.add_argument("--job", type=json.loads, default=None, help="the job body (JSON)")
    p.add_argument("--poll", type=float, default=0.5, help="REGISTRY_POLL_SECONDS (0.5)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST (default $MNIST_DATA_DIR)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait for a quiet machine first (0: never)",
    )
    p.add_argument("--out", type=Path, default=None, help="results file")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if unknown := sections - {"publish", "balancer", "workers"}:
        raise SystemExit(f"unknown sections {sorted(unknown)}")
    registries = [r.strip() for r in args.registries.split(",") if r.strip()]
    publishes = args.publishes or (2 if args.quick else 8)
    seconds = args.seconds or (1 if args.quick else 5)
    reps = args.reps or (1 if args.quick else 3)
    jobs = args.jobs or (2 if args.quick else 6)
    job = args.job or (QUICK_JOB if args.quick else JOB)
    if "balancer" in sections:
        wrk_binary()

    def log(msg: str) -> None:
        print(msg, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    results: dict[str, Any] = {
        "benchmark": "scaling",
        "started_at": now_iso(),
        "command": "python -m benchmarks.scaling "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "settings": {
            "poll_seconds": args.poll,
            "inference_workers_per_replica": 2,
            "blas_threads_per_process": 1,
            "publish_hidden": PUBLISH_HIDDEN,
        },
    }
    if args.quiet_wait > 0:
        results["others_cpu_share_before"] = round(wait_until_quiet(0.15, args.quiet_wait), 3)
    work = Path(tempfile.mkdtemp(prefix="digitflow-bench-scaling-"))
    data_dir = args.data_dir or default_data_dir()
    try:
        for index, label in enumerate(registries):
            log(f"cluster with the registry on {label}:")
            with Cluster(
                work / label,
                data_dir=data_dir,
                registry=make_registry(label, work / label),
                registry_poll_seconds=args.poll,
            ) as c:
                c.up(workers=1, replicas=2)
                if "publish" in sections:
                    results.setdefault("publish", {})[label] = bench_publish(c, publishes, log)
                if index > 0:
                    continue  # the other sections do not depend on where the registry is
                results["hosts"] = {h.name: {"ip": h.ip, "ns": h.ns} for h in c.hosts.values()}
                if "balancer" in sections:
                    if "publish" not in sections:
                        publish_version(c.registry.open(c, writable=True), work, 1, PUBLISH_HIDDEN)
                        c.wait_served_everywhere(MODEL, 1, timeout=60)
                    conns = tuple(args.connections)
                    results["balancer"] = bench_balancer(c, seconds, reps, conns, log)
                if "workers" in sections:
                    results["workers"] = bench_workers(c, jobs, reps, job, log)
        results["finished_at"] = now_iso()
        results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("")
    log(report(results))
    if not args.no_write:
        log(f"\nresults: {save_result('scaling', results, args.out)}")
    return results


if __name__ == "__main__":
    main()
