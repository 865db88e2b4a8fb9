"""Smoke test of benchmarks/memory.py: the smallest run goes through every step (gunicorn
inference service with hot reloads and batch predicts, trainer API and RQ worker running jobs,
real Redis) and records the samples. No memory or speed assertions: whether RSS stays flat is the
benchmark's own verdict, on its full counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from tests import REPO_ROOT


def test_memory_benchmark_smoke(tmp_path, redis_url, mnist_dir):
    out = tmp_path / "memory.json"
    env = {**os.environ, "REDIS_URL": redis_url, "MNIST_DATA_DIR": str(mnist_dir)}
    args = [sys.executable, "-m", "benchmarks.memory", "--reloads", "3", "--images", "3000"]
    args += ["--batch", "500", "--jobs", "2", "--keep-last", "2", "--json-out", str(out)]
    before = set(Path(tempfile.gettempdir()).glob("digitflow-bench-memory-*"))
    done = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["benchmark"] == "memory" and results["machine"]["logical_cpus"] >= 1

    inference = results["inference"]
    assert inference["settings"]["gunicorn_workers"] == 2
    assert inference["images_predicted"] == 3000
    samples = inference["samples"]
    assert [s["step"] for s in samples] == [0, 1, 2, 3]
    # Each reload published a new version, and the predicts after it were answered by it.
    assert [s["version"] for s in samples] == [1, 2, 3, 4]
    assert [s["images"] for s in samples] == [0, 1000, 2000, 3000]
    for s in samples:
        assert len(s["workers"]) == 2
        for mem in [*s["workers"].values(), s["master"]]:
            assert 0 < mem["uss_mib"] <= mem["rss_mib"]
        assert all(n >= 1 for n in s["loaded_versions"].values())
    assert inference["max_loaded_versions"] >= 1
    for summary in [*inference["workers"].values(), inference["master"]]:
        assert summary["samples_in_fit"] == 3
        assert summary["rss_mib_slope_per_100_reloads"] is not None
        assert summary["rss_mib_slope_per_100k_predictions"] is not None
    # The retention rule (keep the last 2) was applied after each publish: 4 published, 2 left.
    assert inference["settings"]["keep_last"] == 2
    assert inference["versions_published"] == 4 and inference["versions_in_registry_at_end"] == 2
    assert inference["versions_deleted_by_retention"] == 2
    steps = inference["metrics_by_step"]
    assert set(steps) == {"0", "1", "2", "3"}
    assert all(v["series"] > 0 and v["versions_named"] >= 1 for v in steps.values()), steps
    assert set(inference["growth_by_mapping_mib"]) == set(samples[0]["workers"])

    trainer = results["trainer"]
    jobs = trainer["samples"]
    assert [s["step"] for s in jobs] == [0, 1, 2]
    assert all(s["worker"]["rss_mib"] > 0 for s in jobs)
    # The work horse of each job was seen, and the parent stayed the same process.
    assert all(s["horse_peak_rss_mib"] > 0 for s in jobs[1:])
    assert trainer["worker"]["samples_in_fit"] == 2
    assert trainer["redis_keys_deleted"] > 0
    conn = redis.Redis.from_url(redis_url)
    try:  # every key of the run's own queue, its jobs and its worker is gone
        assert not list(conn.scan_iter(match=f"*{trainer['settings']['queue']}*"))
    finally:
        conn.close()
    assert set(Path(tempfile.gettempdir()).glob("digitflow-bench-memory-*")) <= before
    assert "retention: keep the last 2" in results["report_markdown"]
    assert "### Trainer" in results["report_markdown"]
