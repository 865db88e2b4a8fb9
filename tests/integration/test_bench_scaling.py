"""Smoke test of benchmarks/scaling.py: every section on tiny settings (~40 s; root, haproxy and
wrk, like tests/integration/test_multihost.py). No timing assertions (speed figures live in the
benchmark's output): this checks that the sections run on a real namespaced cluster, count what
they should and leave no namespace, bridge or temporary folder behind."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchmarks import scaling

pytestmark = [pytest.mark.slow, pytest.mark.exclusive]


def test_whole_benchmark_on_tiny_settings(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    before = set(Path(tempfile.gettempdir()).glob("digitflow-bench-scaling-*"))
    results = scaling.main(["--quick", "--quiet-wait", "0", "--out", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "scaling"

    for label in scaling.REGISTRIES:
        publish = results["publish"][label]
        assert [p["version"] for p in publish["publishes"]] == [1, 2]
        for row in publish["publishes"]:
            assert set(row["served_after_s"]) == {"infer1", "infer2"}
            assert all(0 <= s < 30 for s in row["served_after_s"].values())

    points = results["balancer"]["points"]
    assert set(points) == set(scaling.BALANCER_POINTS)
    for by_connections in points.values():
        assert set(by_connections) == {"1", "8"}
        assert all(p["rps"] > 0 and p["errors"] == 0 for p in by_connections.values())
        assert all(p["cluster_cpu_ms_per_request"] > 0 for p in by_connections.values())

    workers = results["workers"]
    one, two = workers["runs"]["1"][0], workers["runs"]["2"][0]
    assert one["per_host"] == {"worker1": 2} and one["versions"] == [1, 2]
    assert sum(two["per_host"].values()) == 2 and two["versions"] == [1, 2]
    assert workers["jobs_per_hour"]["1"] > 0 and workers["two_vs_one_ratio"] > 0
    assert all(cpu > 0 for cpu in workers["cluster_cpu_s_per_job"].values())
    assert "not cores" in scaling.report(results)

    after = set(Path(tempfile.gettempdir()).glob("digitflow-bench-scaling-*"))
    assert after <= before
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(host["ns"] in left for host in results["hosts"].values())
