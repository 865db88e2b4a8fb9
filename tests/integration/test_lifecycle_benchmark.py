"""Smoke test of benchmarks/lifecycle.py: the smallest run goes through every step (real
gunicorn services, RQ worker, Redis) and reports sane figures. No timing assertions: speed
goals live in the benchmark's own report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import REPO_ROOT


def test_lifecycle_benchmark_quick(tmp_path, redis_url, mnist_dir):
    out = tmp_path / "lifecycle.json"
    env = {**os.environ, "REDIS_URL": redis_url, "MNIST_DATA_DIR": str(mnist_dir)}
    args = [sys.executable, "-m", "benchmarks.lifecycle", "--quick", "--no-save"]
    args += ["--switches", "1", "--latency-jobs", "1", "--pairs", "0", "--json-out", str(out)]
    done = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())

    switch = results["switch"]
    assert [s["kind"] for s in switch["switches"]] == ["publish", "pin"]
    for s in switch["switches"]:
        assert s["seconds"] >= s["lower_bound_seconds"] >= 0
        assert len(s["per_worker"]) == switch["settings"]["gunicorn_workers"] >= 1
    assert switch["predict_steady"]["requests"] > 0
    assert switch["predict_steady"]["errors"] == 0
    assert switch["predict_during_switch"]["errors"] == 0
    assert switch["stale_after_switch"] == 0
    assert results["poll_cost"]["cpu_per_unchanged_poll_s"] > 0

    queue = results["queue"]
    (job,) = queue["jobs"]
    assert job["status"] == "finished"
    # Steps in order, as the API shows them: enqueued, started by RQ, data loaded, first epoch
    # begins, ended; the published version's training time is known.
    order = ["enqueued", "started", "data_loaded", "first_epoch_begins", "ended"]
    values = [job[k] for k in order]
    assert all(v is not None for v in values), job
    assert values[:3] == sorted(values[:3]) and values[-1] == max(values), job
    assert job["train_seconds"] > 0 and job["model_version"] == 1
    assert queue["variants"]["current"]["worker_idle_rss_mib"] > 0
    assert queue["redis_keys_deleted"] > 0
    assert "### Model switch" in results["report_markdown"]
