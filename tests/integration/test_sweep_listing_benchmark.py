"""Smoke test of benchmarks/sweep_listing.py on tiny sizes: it stores sweeps in the real Redis,
lists them through the trainer app, reports both figures and deletes every key it wrote. No
timing assertions: the speed goal lives in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from tests import REPO_ROOT


def test_sweep_listing_benchmark_tiny(tmp_path, redis_url):
    out = tmp_path / "listing.json"
    env = {**os.environ, "REDIS_URL": redis_url}
    args = [sys.executable, "-m", "benchmarks.sweep_listing", "--sweeps", "4", "--side", "2"]
    args += ["--repeat", "2", "--out", str(out)]
    done = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sweeps"] == 4 and result["grid_points"] == 8
    assert result["before_revalidation_seconds"] > 0
    assert len(result["after_listing_all_seconds"]) == 2
    assert result["after_listing_seconds"] > 0
    assert result["keys_deleted"] == 5  # 4 records and the index
    conn = redis.Redis.from_url(redis_url)
    try:
        assert not list(conn.scan_iter(match="*bench-sweep-listing-*"))
    finally:
        conn.close()
    assert "GET /v1/sweeps?limit=4" in done.stdout
