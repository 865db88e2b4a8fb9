"""Faults on real processes: workers SIGKILLed mid-publish, workers finishing at the same instant,
damaged registry files under a running gunicorn inference service.

(A worker SIGKILLed mid-training and a job over its time limit are covered by
tests/integration/test_trainer_worker.py; a Redis restart by test_redis_restart.py.)

The publish pause is tests/gated_publish.py: the worker runs under a wrapper that makes the real
publish wait for a file to appear just before its version-allocating rename.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from shared.registry import Registry
from shared.registry.publishing import publisher_is_dead, temp_name
from tests.service_support import flip_weights_byte, inference_service, publish, publish_damaged
from tests.trainer_support import SMALL, horse_pids, pid_alive, wait_for
from trainer_service.worker.jobs import SCRATCH_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _temps(model_dir: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(model_dir) if n.startswith(".tmp-"))
    except FileNotFoundError:
        return []


def _scratch_of(pids: list[int]) -> list[Path]:
    root = Path(tempfile.gettempdir())
    return [p for pid in pids for p in root.glob(f"{SCRATCH_PREFIX}{pid}-*")]


# ---- SIGKILL mid-publish --------------------------------------------------------------------


def test_worker_killed_mid_publish_publishes_nothing_and_the_next_job_gets_the_next_number(
    trainer_stack, tmp_path
):
    assert (
        publish(trainer_stack.registry, tmp_path, seed=1, name="mnist") == 1
    )  # an earlier version
    gate = tmp_path / "never-opened"
    worker = trainer_stack.start_worker(publish_gate=gate)
    doomed = trainer_stack.submit(SMALL)

    # Trained, evaluated, weights copied and manifest written: only the rename is left.
    model_dir = trainer_stack.registry_dir / "mnist"

    def gated_manifest() -> dict | None:
        """The temp folder exists before its files do: wait until its manifest is complete."""
        for temp in _temps(model_dir):
            try:
                return json.loads((model_dir / temp / "manifest.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
        return None

    wait_for(gated_manifest, 90, what="the publish to reach the gate")
    job = trainer_stack.job(doomed)
    assert job["status"] == "started" and job["phase"] == "publishing"
    assert gated_manifest()["job_id"] == doomed
    horses = horse_pids(worker.pid)
    assert horses and _scratch_of(horses), "the work horse writes the model in its scratch folder"
    assert trainer_stack.client.delete(f"/v1/jobs/{doomed}").status_code == 409  # too late to stop

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: not any(pid_alive(p) for p in horses), 10, what="the work horse to die")

    job = trainer_stack.wait_status(doomed, "failed", timeout=30)
    assert "died" in job["error"] and "nothing was published" in job["error"], job
    assert job["model_version"] is None
    # Nothing partial is visible to any reader: not listed, not the default, not served.
    assert trainer_stack.versions() == [1]
    assert trainer_stack.registry.default_version("mnist") == 1
    assert [d["version"] for d in trainer_stack.registry.describe_versions("mnist")] == [1]
    listed = trainer_stack.client.get("/v1/models/mnist").json["versions"]
    assert [row["version"] for row in listed] == [1]

    # The next job publishes version 2; its publish removes the dead horse's temp folder and
    # its start removes the dead horse's scratch folder.
    trainer_stack.start_worker()
    nxt = trainer_stack.submit(SMALL)
    job = trainer_stack.wait_status(nxt, ("finished", "failed"), timeout=90)
    assert job["status"] == "finished" and job["model_version"] == 2, (job, trainer_stack.logs())
    assert trainer_stack.versions() == [1, 2]
    assert _temps(model_dir) == []
    assert _scratch_of(horses) == []
    assert trainer_stack.registry.verify("mnist", 2)["job_id"] == nxt


def test_temp_folder_cleanup_only_takes_dead_publishers_on_this_host(tmp_path):
    """The rule the next publish applies: the dead publisher's folder goes at once; a live
    publisher's, another host's and an unnamed one wait for the age rule (1 hour)."""
    reg = Registry(tmp_path / "models")
    assert publish(reg, tmp_path, seed=1) == 1
    model_dir = reg.root / "digits"
    mine = temp_name()  # this process: alive
    dead = mine.replace(f".{os.getpid()}.", f".{_dead_pid()}.")
    other_host = mine.rsplit(".", 1)[0] + ".some-other-host"
    for name in (mine, dead, other_host, ".tmp-legacy"):
        (model_dir / name).mkdir()
        (model_dir / name / "weights.npz").write_bytes(b"partial")
    assert publisher_is_dead(dead) and not publisher_is_dead(mine)
    assert not publisher_is_dead(other_host) and not publisher_is_dead(".tmp-legacy")
    assert publish(reg, tmp_path, seed=2) == 2
    assert _temps(model_dir) == sorted([mine, other_host, ".tmp-legacy"])


def _dead_pid() -> int:
    """A pid that certainly does not run: a child we started and reaped."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- several workers finishing at the same instant --------------------------------------------


def test_workers_finishing_together_get_distinct_versions_and_intact_manifests(
    trainer_stack, tmp_path
):
    n = 3
    gate = tmp_path / "gate"
    for _ in range(n):
        trainer_stack.start_worker(publish_gate=gate)
    ids = [trainer_stack.submit({**SMALL, "seed": 100 + i}) for i in range(n)]
    model_dir = trainer_stack.registry_dir / "mnist"
    wait_for(lambda: len(_temps(model_dir)) == n, 120, what=f"{n} publishes at the gate")
    assert trainer_stack.versions() == []
    gate.touch()  # every worker renames in the same instant

    jobs = [trainer_stack.wait_status(job_id, ("finished", "failed"), timeout=60) for job_id in ids]
    assert [j["status"] for j in jobs] == ["finished"] * n, (jobs, trainer_stack.logs())
    versions = sorted(j["model_version"] for j in jobs)
    assert versions == [1, 2, 3]
    assert trainer_stack.versions() == [1, 2, 3]
    for job in jobs:
        manifest = trainer_stack.registry.verify(
            "mnist", job["model_version"]
        )  # sha256 of every file
        assert manifest["job_id"] == job["job_id"]
        assert manifest["config"]["seed"] == job["config"]["seed"]
    assert _temps(model_dir) == []


# ---- damaged registry files under a running inference service ----------------------------------


def _truncate_weights(folder: Path) -> None:
    weights = folder / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:300])


def _drop_manifest(folder: Path) -> None:
    (folder / "manifest.json").unlink()


def _unloadable_with_matching_hash(folder: Path) -> None:
    """Truncated weights whose manifest was rewritten to match: only loading can tell."""
    import hashlib

    weights = folder / "weights.npz"
    data = weights.read_bytes()[:300]
    weights.write_bytes(data)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    manifest_path.write_text(json.dumps(manifest))


DAMAGES = {
    "truncated weights": (_truncate_weights, "has 300 bytes, manifest says"),
    "missing manifest": (_drop_manifest, "manifest.json is missing"),
    "sha256 mismatch": (flip_weights_byte, "sha256 mismatch"),
    "unloadable file with a matching hash": (_unloadable_with_matching_hash, "weights.npz"),
}


def _serves_only(svc, version: int, registry_default: int | None = None) -> bool | None:
    """True: both gunicorn workers serve `version` by default (and, if given, see that registry
    default). False: some worker serves something else. None: not every worker answered."""
    views = svc.worker_views()
    if len(views) < 2:
        return None
    for view in views.values():
        model = view["models"].get("digits", {})
        if model.get("serving") != version:
            return False
        if registry_default is not None and model.get("registry_default") != registry_default:
            return False
    got = [r.headers.get("X-Model-Version") for r in svc.burst(svc.predict)]
    return got == [str(version)] * len(got)


def _listed_broken(svc, version: int) -> dict | None:
    """The version rows if a burst of listings (reaching both workers) all say `version` is
    broken, else None."""
    listings = svc.burst(lambda: svc.get("/v1/models/digits"), 12)
    rows = [{r["version"]: r for r in resp.json()["versions"]} for resp in listings]
    return rows[0] if all(row[version]["status"] == "broken" for row in rows) else None


def _keeps_serving(svc, version: int) -> bool:
    """_serves_only, retried only while some worker has not answered yet."""
    for _ in range(10):
        result = _serves_only(svc, version)
        if result is not None:
            return result
    return False


def test_damaged_versions_and_state_never_reach_clients(tmp_path):
    registry = Registry(tmp_path / "models")
    registry.root.mkdir()
    with inference_service(registry.root, tmp_path) as svc:
        assert publish(registry, tmp_path, seed=1) == 1
        assert publish(registry, tmp_path, seed=2) == 2
        wait_for(lambda: _serves_only(svc, 2) is True, 10, interval=0.2, what="version 2 served")

        # Each kind of damaged version appears as the newest: never served, reported broken.
        broken: dict[int, str] = {}
        for seed, (what, (damage, reason)) in enumerate(DAMAGES.items(), start=10):
            v = publish_damaged(registry, tmp_path, seed, damage)
            broken[v] = reason
            # Every worker reports it broken once it has scanned it (a file that verifies but
            # will not load is only known broken after the worker tried to load it).
            rows = wait_for(lambda v=v: _listed_broken(svc, v), 5, interval=0.2, what=what)
            assert reason in rows[v]["error"], (what, rows[v])
            assert rows[v]["loaded"] is False and rows[2]["status"] == "ok"
            assert _keeps_serving(svc, 2), f"{what}: {svc.log()}"
            r = svc.predict(f"/v1/models/digits/versions/{v}/predict")
            assert r.status_code == 409 and r.json()["error"]["code"] == "version_broken", what
            ready = svc.get("/readyz")
            assert ready.status_code == 200 and ready.json()["models"]["digits"]["serving"] == 2

        # The served default itself is damaged in place: every worker falls back to version 1.
        _truncate_weights(registry.weights_path("digits", 2).parent)
        wait_for(
            lambda: _serves_only(svc, 1) is True, 5, interval=0.2, what="fallback to version 1"
        )
        row = {r["version"]: r for r in svc.get("/v1/models/digits").json()["versions"]}[2]
        assert row["status"] == "broken" and "bytes" in row["error"]
        assert svc.get("/readyz").status_code == 200

        # Pin/alias state: pinned to 1 and aliased, then state.json is corrupted. The workers keep
        # the last good state (pin 1, alias), say nothing is wrong with serving, and recover
        # as soon as a state change rewrites the file.
        assert publish(registry, tmp_path, seed=3) > max(broken)
        newest = registry.latest_version("digits")
        # The alias first: a worker that has seen the pin has then seen the alias too (a scan
        # between the two writes would keep a last good state without it).
        registry.set_alias("digits", "champion", newest, actor="test")
        registry.pin("digits", 1, actor="test")
        wait_for(lambda: _serves_only(svc, 1, registry_default=1), 5, interval=0.2, what="the pin")
        (registry.root / "digits" / "state.json").write_text('{"pinned": "garbage", ')
        time.sleep(0.5)
        assert _keeps_serving(svc, 1)
        listing = svc.get("/v1/models/digits").json()
        assert listing["pinned_version"] == 1 and listing["aliases"] == {"champion": newest}
        r = svc.predict("/v1/models/digits/versions/champion/predict")
        assert r.status_code == 200 and r.headers["X-Model-Version"] == str(newest)
        assert svc.get("/readyz").status_code == 200
        registry.unpin("digits", actor="test")  # rewrites state.json from the last good state
        wait_for(lambda: _serves_only(svc, newest) is True, 5, interval=0.2, what="repaired state")

        # A model whose only version is broken: /readyz names the problem, predictions are 409.
        (registry.root / "allbad").mkdir()
        v = publish_damaged(registry, tmp_path, 99, flip_weights_byte, name="allbad")
        time.sleep(0.5)
        body = svc.get("/readyz").json()
        assert body["models"]["allbad"]["serving"] is None
        assert "no usable version" in body["models"]["allbad"]["problem"]
        r = svc.predict("/v1/models/allbad/predict")
        assert r.status_code == 409 and r.json()["error"]["code"] == "version_broken"
        assert svc.get(f"/v1/models/allbad/versions/{v}").status_code == 409

        log = svc.log(400)
        assert "Traceback" not in log and " 500 " not in log


# ---- a job reported failed never publishes -----------------------------------------------------


def test_a_job_marked_failed_while_it_trains_does_not_publish(trainer_stack):
    """What the API does after a Redis outage longer than the heartbeat grace (it moves the
    running job to failed, abandoned): the still-running horse must then not publish."""
    import redis

    trainer_stack.start_worker()
    job_id = trainer_stack.submit({**SMALL, "epochs": 40})
    trainer_stack.wait_epoch(job_id, 1)
    conn = redis.Redis.from_url(trainer_stack.redis_url)
    try:
        conn.hset(f"rq:job:{job_id}", "status", "failed")  # as the abandoned-job cleanup does
    finally:
        conn.close()
    job = trainer_stack.wait_status(job_id, ("failed", "finished"), timeout=60)
    wait_for(
        lambda: "not publishing" in trainer_stack.logs(), 30, what="the horse to refuse to publish"
    )
    assert job["status"] == "failed" and job["model_version"] is None
    assert trainer_stack.versions() == []
