"""Smoke test of benchmarks/soak.py on tiny counts: the real stack runs jobs and sweeps with TTLs
of seconds, the results hold every figure BENCHMARKS.md quotes, every key the run left is
explained, and nothing of the run stays in Redis. No speed is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from tests import REPO_ROOT

pytestmark = [pytest.mark.slow]


def test_soak_benchmark_tiny(tmp_path, redis_url, mnist_dir):
    out = tmp_path / "soak.json"
    env = {**os.environ, "REDIS_URL": redis_url, "MNIST_DATA_DIR": str(mnist_dir)}
    args = [sys.executable, "-m", "benchmarks.soak", "--jobs", "10", "--sweeps", "6"]
    args += ["--result-ttl", "3", "--failure-ttl", "4", "--out", str(out)]
    done = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["canceled"] == {"jobs": 1, "sweeps": 1}
    assert result["trials"] >= 10  # 5 sweeps of 2 trials ran to the end
    for moment in ("baseline", "peak", "after_expiry", "after_rq_maintenance"):
        assert set(result[moment]) >= {"used_memory", "db_keys", "run_keys", "run_bytes"}
    assert result["baseline"]["run_keys"] == 0
    assert result["peak"]["run_keys"] > result["after_rq_maintenance"]["run_keys"]
    left = result["left_after_rq_maintenance"]
    assert all(k["why"] != "UNEXPLAINED" for k in left), left
    assert {k["key"] for k in left} <= {"rq:workers:<queue>", "rq:workers", "rq:queues"} | {
        k["key"] for k in left if k["key"].startswith("rq:worker:")
    }
    assert result["keys_deleted"] >= 1
    conn = redis.Redis.from_url(redis_url)
    try:
        assert not list(conn.scan_iter(match="*bench-soak-*"))
    finally:
        conn.close()
    assert "after RQ maintenance" in done.stdout
