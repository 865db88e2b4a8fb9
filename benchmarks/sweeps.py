"""Sweeps: what parallel trials and pruning each buy, on the real queue with real workers.

    python -m benchmarks.sweeps [--trials 16] [--epochs 8] [--train-limit 20000] [--quick]

The same 16-point grid (learning rate x width x dropout, a fixed sampler seed, so
every run asks for the same trials in the same order) is swept three times, each on a fresh
queue, registry and workers (`python -m trainer_service worker`, the trainer API under gunicorn,
Redis from $REDIS_URL, else redis://127.0.0.1:6379/13, else an embedded one):

1. **sequential**: one worker with 2 BLAS threads, `parallelism` 1, no pruning — trials one
   after another, each using both cores (what a user without sweeps does by hand);
2. **parallel**: two workers with 1 BLAS thread each, `parallelism` 2, no pruning;
3. **parallel + pruning**: as 2, with the median pruner (epochs are the budget).

Wall time runs from the POST until the sweep's view says finished. The gain from parallelism
is 1 / 2, from pruning 2 / 3; together 1 / 3. Each run reports its best validation accuracy (the
objective; the test set is never looked at), the epochs trained over all trials and how many
trials were pruned. Only this run's keys (its queues' names) are written and deleted.

Results: a markdown table on stdout, raw data in benchmarks/results/sweeps-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    default_data_dir,
    machine_info,
    markdown_table,
    now_iso,
    write_result,
)
from benchmarks.lifecycle import (
    PYTHON,
    TRAINER_APP,
    TRAINER_CONF,
    TreeCPU,
    base_env,
    delete_queue_keys,
    redis_url,
    request,
    start,
    start_gunicorn,
    stop,
    wait_until,
)
from shared.blas import BLAS_THREAD_VARIABLES

#: (name, workers, BLAS threads per worker, parallelism, pruner)
RUNS = (
    ("sequential", 1, 2, 1, "none"),
    ("parallel", 2, 1, 2, "none"),
    ("parallel + pruning", 2, 1, 2, "median"),
)


def sweep_body(args: argparse.Namespace) -> dict[str, Any]:
    """A 16-point grid (with the defaults) over settings that matter, some of them poor, as a
    real first search is: the pruner has weak trials to stop."""
    space: dict[str, list[Any]] = {
        "learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
        "hidden_layers": [[128], [256, 128]],
        "dropout": [0.0, 0.3],
    }
    if args.quick:
        space = {"learning_rate": [1e-3, 1e-2], "batch_size": [64, 256]}
    return {
        "base": {
            "dataset": "mnist",
            "model": "sweep-bench",
            "epochs": args.epochs,
            "train_limit": args.train_limit,
            "augment": False,
            "val_fraction": 0.1,
        },
        "space": space,
        "sampler": "grid",
        "seed": 7,
        "keep": 0,
    }


def run_sweep(
    name: str,
    workers: int,
    threads: int,
    parallelism: int,
    pruner: str,
    args: argparse.Namespace,
    url: str,
    tmp: Path,
) -> dict[str, Any]:
    queue = f"bench-sweeps-{uuid.uuid4().hex[:10]}"
    run_dir = tmp / queue
    run_dir.mkdir()
    env = base_env(run_dir)
    env.update(
        REDIS_URL=url,
        RQ_QUEUE=queue,
        MODEL_REGISTRY_DIR=str(run_dir / "models"),
        MNIST_DATA_DIR=str(args.data_dir),
        WORKER_PRELOAD_DATASETS="mnist",
        API_TOKEN="",
    )
    api, port = start_gunicorn("trainer-api", TRAINER_APP, TRAINER_CONF, env, run_dir)
    procs = [api]
    try:
        worker_env = {**env, **dict.fromkeys(BLAS_THREAD_VARIABLES, str(threads))}
        for i in range(workers):
            procs.append(
                start(
                    f"worker-{i}", [PYTHON, "-m", "trainer_service", "worker"], worker_env, run_dir
                )
            )
        wait_until(
            lambda: len(_workers(url, queue)) == workers, 120, f"{workers} workers", 0.2, procs[-1]
        )
        body = {**sweep_body(args), "parallelism": parallelism, "pruner": pruner}
        pids = [p.popen.pid for p in procs]
        with TreeCPU(pids, reaped_children=True) as interference:
            t0 = time.monotonic()
            status, _, data = request("POST", port, "/v1/sweeps", json.dumps(body).encode())
            if status != 202:
                raise RuntimeError(f"POST /v1/sweeps: HTTP {status}: {data[:300]!r}")
            location = json.loads(data)["location"]

            def finished() -> dict[str, Any] | None:
                code, _, raw = request("GET", port, location)
                view = json.loads(raw) if code == 200 else None
                for proc in procs:
                    proc.check()
                return view if view and view["status"] != "running" else None

            view = wait_until(finished, args.timeout, f"sweep {name}", 0.2)
            wall = time.monotonic() - t0
        trials = view["trials"]
        result = {
            "name": name,
            "workers": workers,
            "blas_threads": threads,
            "parallelism": parallelism,
            "pruner": pruner,
            "status": view["status"],
            "wall_seconds": wall,
            "best_value": view["best"]["value"] if view["best"] else None,
            "best_params": view["best"]["params"] if view["best"] else None,
            "trials": len(trials),
            "pruned": sum(t["pruned"] for t in trials),
            "failed": sum(t["status"] == "failed" for t in trials),
            "epochs_trained": sum(len(t["curve"]) for t in trials),
            "others_cpu_share": interference.share,
            "trial_views": trials,
        }
        print(
            f"  {name}: {wall:.1f} s, best val_accuracy {result['best_value']}, "
            f"{result['pruned']} pruned, {result['epochs_trained']} epochs",
            flush=True,
        )
        return result
    finally:
        names = [w.decode() for w in _workers(url, queue)]
        for proc in reversed(procs):
            stop(proc)
        delete_queue_keys(url, queue, [], names)


def _workers(url: str, queue: str) -> list[bytes]:
    """Names of the RQ workers listening on `queue`."""
    import redis

    conn = redis.Redis.from_url(url)
    try:
        return list(conn.smembers(f"rq:workers:{queue}"))
    finally:
        conn.close()


def report(results: dict[str, Any]) -> str:
    runs = {r["name"]: r for r in results["runs"]}
    seq, par, both = (runs[name] for name, *_ in RUNS)
    rows = [
        [
            r["name"],
            f"{r['workers']} x {r['blas_threads']}",
            r["parallelism"],
            r["pruner"],
            f"{r['wall_seconds']:.1f}",
            f"{r['wall_seconds'] / seq['wall_seconds']:.2f}",
            f"{r['best_value']:.4f}" if r["best_value"] is not None else "-",
            f"{r['pruned']}/{r['trials']}",
            r["epochs_trained"],
            f"{r['others_cpu_share']:.0%}",
        ]
        for r in results["runs"]
    ]
    table = markdown_table(
        [
            "run",
            "workers x threads",
            "parallelism",
            "pruner",
            "wall (s)",
            "vs sequential",
            "best val_accuracy",
            "pruned",
            "epochs trained",
            "other CPU",
        ],
        rows,
    )
    gain_par = seq["wall_seconds"] / par["wall_seconds"]
    gain_prune = par["wall_seconds"] / both["wall_seconds"]
    return (
        f"{table}\n\nspeed-up from parallel trials: {gain_par:.2f}x; from pruning: "
        f"{gain_prune:.2f}x; together {gain_par * gain_prune:.2f}x "
        f"(wall time {both['wall_seconds'] / seq['wall_seconds']:.2f}x of sequential)."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweeps", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per sweep")
    p.add_argument("--quick", action="store_true", help="a 4-point grid, 2 epochs (smoke run)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.train_limit = 2, 2000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="digitflow-bench-sweeps-"))
    url, embedded = redis_url()
    results: dict[str, Any] = {
        "benchmark": "sweeps",
        "command": "python -m benchmarks.sweeps "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": now_iso(),
        "machine": machine_info(),
        "sweep": sweep_body(args),
        "runs": [],
    }
    try:
        for name, workers, threads, parallelism, pruner in RUNS:
            results["runs"].append(
                run_sweep(name, workers, threads, parallelism, pruner, args, url, tmp)
            )
    finally:
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    results["finished"] = now_iso()
    text = report(results)
    print("\n" + text)
    results["report_markdown"] = text
    if not args.no_save:
        print(f"\nresults: {write_result('sweeps', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
