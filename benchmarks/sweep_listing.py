"""Listing sweeps: `GET /v1/sweeps?limit=500` over 500 stored sweeps of 1,000-point grids.

    python -m benchmarks.sweep_listing [--sweeps 500] [--side 10] [--repeat 5]

Why: a sweep's record used to be read back by validating its request again (`SweepRequest`
checks every combination of the space: tens of milliseconds for a 1,000-point grid), once per
sweep in the listing, so a listing of 500 took seconds. Records now store the `SweepPlan` the
request was validated into, read back as plain values (trainer_service.sweeps.models).

The grid is `side`³ points (learning rate x batch size x dropout). `sweeps` records are stored
the way `trainer_service.sweeps.coordinator.create` stores them (`new_record`; no study, no jobs: the
listing reads only the records), under a queue name of this run's own, in Redis from $REDIS_URL
(else db 13 of a local Redis, else an embedded one). Then, in one run:

* **before**: the re-validation the listing used to do, `SweepRequest.model_validate` of one
  stored request x `sweeps` (the old code path is gone; this was its cost);
* **after**: `GET /v1/sweeps?limit=<sweeps>` on the trainer app (Flask's test client, in
  process: no HTTP server in the figure), the median of `repeat` listings.

Only this run's keys are written, and all of them are deleted at the end.
Results: a markdown table on stdout, raw data in benchmarks/results/sweep-listing-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, markdown_table, now_iso, save_result
from benchmarks.lifecycle import delete_queue_keys, redis_url


def grid_request(side: int) -> dict[str, Any]:
    """A sweep body whose space is a `side`³-point grid."""
    return {
        "base": {"dataset": "mnist", "epochs": 1, "train_limit": 1000},
        "space": {
            "learning_rate": [round(0.001 * (i + 1), 6) for i in range(side)],
            "batch_size": [16 * (i + 1) for i in range(side)],
            "dropout": [round(0.04 * i, 4) for i in range(side)],
        },
    }


def run(n_sweeps: int, side: int, repeat: int) -> dict[str, Any]:
    """Store `n_sweeps` sweeps, measure before and after, delete every key this run wrote."""
    import redis

    from trainer_service.api.app import create_app
    from trainer_service.sweeps import coordinator as sweeps
    from trainer_service.sweeps.models import SweepRequest

    url, embedded = redis_url()
    queue = f"bench-sweep-listing-{uuid.uuid4().hex[:8]}"
    conn = redis.Redis.from_url(url)
    try:
        start = time.perf_counter()
        request = SweepRequest.model_validate(grid_request(side))
        first_validation = time.perf_counter() - start
        with conn.pipeline() as pipe:
            for i in range(n_sweeps):
                record = sweeps.new_record(request, uuid.uuid4().hex)
                pipe.set(sweeps.sweep_key(queue, record["sweep_id"]), json.dumps(record))
                pipe.zadd(sweeps.sweeps_index_key(queue), {record["sweep_id"]: i})
            pipe.execute()
        stored = json.loads(conn.get(sweeps.sweep_key(queue, record["sweep_id"])))

        start = time.perf_counter()
        for _ in range(n_sweeps):
            SweepRequest.model_validate(stored["request"])
        before = time.perf_counter() - start

        app = create_app({"REDIS_URL": url, "RQ_QUEUE": queue, "TESTING": True})
        client = app.test_client()
        after: list[float] = []
        for _ in range(repeat):
            start = time.perf_counter()
            answer = client.get(f"/v1/sweeps?limit={n_sweeps}")
            after.append(time.perf_counter() - start)
            body = answer.get_json()
            if answer.status_code != 200 or body["count"] != n_sweeps:
                raise RuntimeError(f"listing answered {answer.status_code}: {body}")
            if {s["n_trials"] for s in body["sweeps"]} != {request.n_trials}:
                raise RuntimeError("the listing's n_trials differ from the grid's size")
    finally:
        deleted = delete_queue_keys(url, queue, [], [])
        conn.close()
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)
    return {
        "benchmark": "sweep_listing",
        "date": now_iso(),
        "machine": machine_info(),
        "sweeps": n_sweeps,
        "grid_points": request.n_trials,
        "record_bytes": len(json.dumps(stored)),
        "validate_one_seconds": first_validation,
        "before_revalidation_seconds": before,
        "after_listing_seconds": statistics.median(after),
        "after_listing_all_seconds": after,
        "keys_deleted": deleted,
    }


def report(result: dict[str, Any]) -> str:
    n, points = result["sweeps"], result["grid_points"]
    return markdown_table(
        ["what", "seconds"],
        [
            [f"validate one {points}-point request", f"{result['validate_one_seconds']:.4f}"],
            [
                f"before: re-validating {n} stored requests (the old listing's extra work)",
                f"{result['before_revalidation_seconds']:.2f}",
            ],
            [
                f"after: GET /v1/sweeps?limit={n} (median of "
                f"{len(result['after_listing_all_seconds'])})",
                f"{result['after_listing_seconds']:.3f}",
            ],
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sweeps", type=int, default=500, help="stored sweeps (default 500)")
    parser.add_argument("--side", type=int, default=10, help="grid side: side³ points (10)")
    parser.add_argument("--repeat", type=int, default=5, help="listings timed (default 5)")
    parser.add_argument("--out", type=Path, help="result file (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if not 1 <= args.sweeps <= 500 or args.side < 1 or args.repeat < 1:
        parser.error("--sweeps must be 1..500 (the listing's limit), --side and --repeat ≥ 1")
    result = run(args.sweeps, args.side, args.repeat)
    path = save_result("sweep-listing", result, args.out)
    print(report(result))
    print(f"\nraw data: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
