"""Smoke test of benchmarks/serving.py: every section on tiny durations, a tiny model (~20 s).

The load generator is Debian's wrk (scripts/ensure-system-tools.sh installs it); only the whole
benchmark needs it, the parsers and request bodies are checked without it. No timing assertions
(speed goals live in the benchmark's output): this checks that the pieces run, talk to real
gunicorn servers, count what they should and clean up after themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from benchmarks import serving
from benchmarks.common import REPO_ROOT
from shared.config import TrainConfig
from shared.modelfile import save_model


def tiny_model(tmp_path: Path) -> Path:
    config = TrainConfig(hidden_layers=[16], dropout=0.0, seed=1)
    path = tmp_path / f"tiny-{uuid.uuid4().hex}.npz"
    save_model(path, config.build_model(mean=np.full(784, 0.1, np.float32)))
    return path


def test_parse_wrk_and_smaps() -> None:
    line = (
        'Running 1s test\nWRK_JSON {"requests": 10, "duration_us": 2000000, "bytes": 5, '
        '"connect_errors": 0, "read_errors": 1, "write_errors": 0, "status_errors": 2, '
        '"timeouts": 0, "mean_us": 3.0, "p50_us": 1, "p90_us": 2, "p95_us": 3, "p99_us": 4, '
        '"max_us": 5}\n'
    )
    out = serving.parse_wrk(line)
    assert out["rps"] == 5.0 and out["errors"] == 3 and out["p95_us"] == 3
    with pytest.raises(RuntimeError):
        serving.parse_wrk("no summary here")
    mem = serving.smaps_rollup(os.getpid())
    assert 0 < mem["uss_mib"] <= mem["rss_mib"] and 0 < mem["pss_mib"] <= mem["rss_mib"]


def test_bodies_are_what_the_service_accepts() -> None:
    from inference_service.decoders import decode_instances, decode_npy, decode_v2

    x = serving.sample_images(3)
    assert x.shape == (3, 784) and x.dtype == np.uint8
    want = x / 255.0
    np.testing.assert_allclose(decode_instances(serving.json_body(x), 784, 1024), want, rtol=1e-6)
    np.testing.assert_allclose(decode_npy(serving.npy_body(x), 784, 1024), want, rtol=1e-6)
    body, length = serving.v2_binary_body(x)
    req = decode_v2(body, length, 784, 1024)
    np.testing.assert_allclose(req.x, want, rtol=1e-6)
    assert req.outputs == {"probabilities": True, "predictions": True}


def test_whole_benchmark_on_tiny_durations(tmp_path: Path) -> None:
    assert shutil.which("wrk"), (
        "wrk is not installed: `make install` (scripts/ensure-system-tools.sh)"
    )
    out = tmp_path / "serving.json"
    before = set(Path(tempfile.gettempdir()).glob("digitflow-bench-serving-*"))
    results = serving.main(
        [
            "--model", str(tiny_model(tmp_path)),
            "--seconds", "1", "--reps", "1",
            "--concurrency", "1",
            "--batches", "4",
            "--cold-repeats", "1", "--versions", "3",
            "--quiet-wait", "0",
            "--variant", "logged:ACCESS_LOG=-",
            "--baseline", "HEAD",
            "--sections", "latency,routes,profile,batch,cold",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text())["benchmark"] == "serving"

    lat = results["latency"]["points"]
    assert set(lat) == {"1"}
    for point in lat.values():
        for label in ("bare", "ours"):
            assert point[label]["requests"] > 0 and point[label]["errors"] == 0, point
            assert 0 < point[label]["p50_us"] <= point[label]["p99_us"]
        assert point["throughput_ratio"] > 0
        for label in ("ours[logged]", "baseline[HEAD]"):  # with its access log; as committed
            other = point["variants"][label]
            assert other["requests"] > 0 and other["errors"] == 0 and other["throughput_ratio"] > 0
    assert results["latency"]["variants"] == {"logged": {"ACCESS_LOG": "-"}}
    assert results["latency"]["baseline"] == "HEAD"

    routes = results["routes"]["points"]
    assert set(routes) == {"1"}
    for point in routes.values():
        assert point["json"]["requests"] > 0 and point["json"]["errors"] == 0
        for kind in serving.ROUTE_KINDS[1:]:
            assert point[kind]["errors"] == 0 and point[kind]["throughput_ratio"] > 0

    profile = results["profile"]
    assert sum(profile["samples"].values()) > 0 and profile["rps"] > 0
    assert profile["samples"]["forward"] > 0  # the model ran in the sampled worker
    baseline_profile = results["profile_baseline"]  # the same breakdown, the --baseline checkout
    assert sum(baseline_profile["samples"].values()) > 0
    assert baseline_profile["samples"]["forward"] > 0

    batch = results["batch"]["points"]
    assert set(batch) == {"4"}
    for row in batch.values():
        assert row["inprocess"] > 0
        for kind in serving.BODY_KINDS:
            assert row[kind] > 0 and row[f"{kind}_vs_inprocess"] > 0
    assert batch["4"]["body_bytes"]["npy"] == 128 + 4 * 784 * 4  # .npy header + float32 data
    based = batch["4"]["baseline"]  # the --baseline checkout's .npy rate, in the same rotation
    assert based["ref"] == "HEAD" and based["npy"] > 0 and based["npy_ours_vs_baseline"] > 0

    cold = results["cold_start"]
    assert cold["ready_seconds_median"] > 0
    one, many = cold["memory_one_version"], cold["memory_many_versions"]
    assert len(one["workers"]) == 2 and len(many["workers"]) == 2  # WEB_CONCURRENCY default
    for loaded in many["loaded"].values():  # every worker holds every version
        assert loaded == ["mnist:1", "mnist:2", "mnist:3"]
    assert all(w["rss_mib"] > 0 for w in many["workers"].values())
    assert set(results["targets"]) >= {"c1_p50_ms", "c1_p99_ms"}

    # Nothing left behind: the temp folder is gone, no server answers any more.
    after = set(Path(tempfile.gettempdir()).glob("digitflow-bench-serving-*"))
    assert after <= before
    worktrees = subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "list"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "baseline-src" not in worktrees, worktrees
