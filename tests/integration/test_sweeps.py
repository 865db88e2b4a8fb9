"""Sweeps on a real Redis with real RQ worker processes: trials are ordinary training jobs,
`parallelism` at a time; weak trials are pruned; cancel leaves nothing queued; a trial whose
worker is SIGKILLed is retried once and never hangs the sweep; promotion only on improvement; the objective comes from
the validation split only. Pruned trials and the trials of a canceled sweep say so in their own job
(`GET /v1/jobs/<id>`, `digitflow jobs`), with their sweep and trial number."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
import requests
from PIL import Image
from rq import Queue
from werkzeug.serving import make_server

from shared.client import run
from shared.config import TrainConfig
from shared.reports import SWEEP_REPORT_PIXELS
from tests.service_support import inference_service
from tests.trainer_support import horse_pids, wait_for
from trainer_service.api.routes_jobs import JobView

BASE = {"hidden_layers": [16], "epochs": 2, "train_limit": 1000, "augment": False}
TIMEOUT = 120


def start(stack, body) -> str:
    r = stack.client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.json
    assert r.headers["Location"] == f"/v1/sweeps/{r.json['sweep_id']}"
    return r.json["sweep_id"]


def sweep(stack, sweep_id: str) -> dict:
    r = stack.client.get(f"/v1/sweeps/{sweep_id}")
    assert r.status_code == 200, r.json
    return r.json


def wait_done(stack, sweep_id: str, timeout: float = TIMEOUT) -> dict:
    def done():
        view = sweep(stack, sweep_id)
        return view if view["status"] != "running" else None

    try:
        return wait_for(done, timeout, interval=0.3, what=f"sweep {sweep_id} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{sweep(stack, sweep_id)}\n{stack.logs()}") from None


@contextlib.contextmanager
def served(stack) -> Iterator[str]:
    """The stack's API over real HTTP (for the `digitflow` CLI): its base URL."""
    server = make_server("127.0.0.1", 0, stack.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def max_overlap(trials: list[dict]) -> int:
    """The most trials running at one instant, from the trials' own start and end times."""
    events = []
    for t in trials:
        events += [(_t(t["started_at"]), 1), (_t(t["ended_at"]), -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_grid_sweep_parallelism_promotion_and_keep(trainer_stack):
    stack = trainer_stack
    stack.start_worker()
    stack.start_worker()
    stack.start_worker()  # three workers, parallelism 2: the sweep, not the workers, limits it
    body = {
        "base": {**BASE, "model": "swept"},
        "space": {"learning_rate": [0.01, 0.003], "seed": [1, 2, 3]},
        "parallelism": 2,
        "objective": "val_accuracy",
        "promote_to": "candidate",
        "keep": 2,
    }
    sweep_id = start(stack, body)
    view = wait_done(stack, sweep_id)
    assert view["status"] == "finished", view
    trials = view["trials"]
    assert len(trials) == 6 and all(t["status"] == "finished" for t in trials), trials
    params = sorted((t["params"]["learning_rate"], t["params"]["seed"]) for t in trials)
    assert params == sorted((lr, s) for lr in (0.01, 0.003) for s in (1, 2, 3))
    assert max_overlap(trials) <= 2, trials

    best = max(trials, key=lambda t: t["value"])
    assert view["best"]["number"] == best["number"]
    registry = stack.registry
    state = registry.state("swept")
    assert state["aliases"]["candidate"] == best["model_version"]
    entry = next(h for h in state["history"] if h.get("sweep") == sweep_id)
    assert (entry["action"], entry["alias"], entry["reason"]) == (
        "alias_set",
        "candidate",
        "the alias was not set",
    )

    ranked = sorted(trials, key=lambda t: t["value"], reverse=True)
    kept = {t["model_version"] for t in ranked[:2]}
    assert set(registry.versions("swept")) == kept
    # Trials are staged and an alias is not the default: nothing of this sweep is served yet.
    assert registry.staged_versions("swept") == sorted(kept)
    assert registry.latest_version("swept") is None and registry.default_version("swept") is None
    assert sorted(view["removed_versions"]) == sorted(t["model_version"] for t in ranked[2:])

    # The objective is the validation metric of the published weights, never the test set.
    for trial in ranked[:2]:
        manifest = registry.manifest("swept", trial["model_version"])
        assert manifest["sweep"]["sweep_id"] == sweep_id
        assert manifest["sweep"]["params"] == trial["params"]
        epoch = next(h for h in manifest["history"] if h["epoch"] == manifest["best_epoch"])
        assert trial["value"] == pytest.approx(epoch["val_accuracy"])
        assert [c["val_accuracy"] for c in trial["curve"]] == pytest.approx(
            [h["val_accuracy"] for h in manifest["history"]]
        )

    # Trials are ordinary training jobs.
    job = stack.job(best["job_id"])
    assert job["status"] == "finished" and job["model_version"] == best["model_version"]
    listed = stack.client.get("/v1/sweeps").json
    assert [s["sweep_id"] for s in listed["sweeps"]] == [sweep_id]

    # A worse sweep does not take the alias; the history says why.
    worse = start(stack, {**body, "space": {"learning_rate": [1e-6]}, "keep": 3})
    view2 = wait_done(stack, worse)
    assert view2["status"] == "finished" and view2["promotion"]["promoted"] is False
    state = registry.state("swept")
    assert state["aliases"]["candidate"] == best["model_version"]
    kept_entry = next(h for h in reversed(state["history"]) if h.get("sweep") == worse)
    assert kept_entry["action"] == "alias_kept" and "does not beat" in kept_entry["reason"]


def test_a_sweep_searches_convolutional_networks_on_two_workers(trainer_stack):
    stack = trainer_stack
    stack.start_worker()
    stack.start_worker()
    networks = [
        [{"conv": 4, "kernel": 5}, {"pool": 2}, {"dense": 16}],
        [{"conv": 6, "kernel": 3, "padding": "same"}, {"pool": 4}, {"dense": 16}],
    ]
    base = {key: value for key, value in BASE.items() if key != "hidden_layers"}
    body = {"base": {**base, "model": "cnn-swept"}, "space": {"network": networks},
            "parallelism": 2}  # fmt: skip
    view = wait_done(stack, start(stack, body))
    assert view["status"] == "finished", view
    trials = view["trials"]
    assert all(t["status"] == "finished" for t in trials), trials
    assert sorted(map(json.dumps, (t["params"]["network"] for t in trials))) == sorted(
        map(json.dumps, networks)
    )
    for trial in trials:
        config = stack.registry.manifest("cnn-swept", trial["model_version"])["config"]
        given = TrainConfig(network=trial["params"]["network"]).public_dict()["network"]
        assert config["network"] == given and config["hidden_layers"] is None


def test_median_pruning_stops_weak_trials_after_the_first_epoch(trainer_stack):
    stack = trainer_stack
    stack.start_worker()
    # seed 1 orders the grid good, good, then the tiny learning rates (see sweeps.sampler).
    body = {
        "base": {**BASE, "epochs": 3},
        "space": {"learning_rate": [0.01, 1e-6], "seed": [1, 2, 3]},
        "parallelism": 1,
        "pruner": "median",
        "seed": 1,
    }
    sweep_id = start(stack, body)
    view = wait_done(stack, sweep_id)
    trials = view["trials"]
    first_two = trials[:2]
    assert all(t["params"]["learning_rate"] == 0.01 for t in first_two), trials
    assert all(t["status"] == "finished" and len(t["curve"]) == 3 for t in first_two)
    weak = [t for t in trials if t["params"]["learning_rate"] == 1e-6]
    assert len(weak) == 3
    for t in weak:
        assert t["pruned"] and t["status"] == "pruned" and t["job_status"] == "pruned", t
        assert len(t["curve"]) < 3 and t["model_version"] is None, t
    assert view["best"]["params"]["learning_rate"] == 0.01

    # The trials' jobs say the same, and which sweep and trial they belong to.
    for t in trials:
        job = JobView.model_validate(stack.job(t["job_id"]))
        assert (job.sweep_id, job.trial) == (sweep_id, t["number"]), job
        assert job.status == ("pruned" if t in weak else "finished"), job
    for t in weak:
        job = stack.job(t["job_id"])
        assert job["model_version"] is None, job
        assert job["error"].startswith(
            f"trial {t['number']} of sweep {sweep_id} pruned at epoch {len(t['curve'])}: "
        ), job
        assert job["error"].endswith("; nothing was published"), job
    listed = stack.client.get("/v1/jobs?status=pruned").json["jobs"]
    assert sorted(j["job_id"] for j in listed) == sorted(t["job_id"] for t in weak)

    # The CLI: `digitflow jobs` names the status and the sweep; `wait` ends on a pruned job.
    with served(stack) as url:
        out = io.StringIO()
        assert run(["--trainer-url", url, "jobs", "--status", "pruned"], out=out) == 0
        lines = out.getvalue().splitlines()
        assert len(lines) == 3, lines
        for t in weak:
            (line,) = [line for line in lines if line.startswith(t["job_id"])]
            assert re.fullmatch(
                rf"{t['job_id']}  pruned    mnist +epoch {len(t['curve'])}/3 +version -  "
                rf"sweep {sweep_id} trial {t['number']}",
                line,
            ), line
        out = io.StringIO()
        assert run(["--trainer-url", url, "status", weak[0]["job_id"]], out=out) == 0
        shown = json.loads(out.getvalue())
        assert (shown["status"], shown["sweep_id"], shown["trial"]) == (
            "pruned",
            sweep_id,
            weak[0]["number"],
        )
        out = io.StringIO()
        assert run(["--trainer-url", url, "wait", weak[0]["job_id"]], out=out) == 1
        assert f"{weak[0]['job_id']} pruned: trial {weak[0]['number']} of sweep {sweep_id}" in (
            out.getvalue()
        )


def test_cancel_leaves_no_queued_trial(trainer_stack, redis_url):
    stack = trainer_stack
    stack.start_worker()
    body = {
        "base": {**BASE, "hidden_layers": [256, 256], "epochs": 1000, "train_limit": 3000},
        "space": {"seed": [1, 2, 3, 4]},
        "parallelism": 2,
    }
    sweep_id = start(stack, body)
    wait_for(
        lambda: any(t["job_status"] == "started" for t in sweep(stack, sweep_id)["trials"]),
        60,
        what="a running trial",
    )
    r = stack.client.delete(f"/v1/sweeps/{sweep_id}")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "canceled"
    assert [t["status"] for t in r.json["trials"]] == ["canceled", "canceled"], r.json

    def settled():
        view = sweep(stack, sweep_id)
        return view if all(t["job_status"] == "canceled" for t in view["trials"]) else None

    # The running trial is stopped and the queued one canceled: both say canceled, like the sweep.
    view = wait_for(settled, 60, what="every trial's job canceled")
    assert len(view["trials"]) == 2  # no trial was enqueued after the cancel
    assert [t["status"] for t in view["trials"]] == ["canceled", "canceled"], view
    for t in view["trials"]:
        job = JobView.model_validate(stack.job(t["job_id"]))
        assert (job.status, job.sweep_id, job.trial) == ("canceled", sweep_id, t["number"])
        assert job.error == f"canceled with its sweep {sweep_id}; nothing was published", job
        again = stack.client.delete(f"/v1/jobs/{t['job_id']}")
        assert again.status_code == 409, again.json
        assert "already canceled" in again.json["error"]["message"]
    listed = stack.client.get("/v1/jobs?status=canceled").json["jobs"]
    assert sorted(j["job_id"] for j in listed) == sorted(t["job_id"] for t in view["trials"])
    conn = redis.Redis.from_url(redis_url)
    try:
        assert Queue(stack.queue, connection=conn).count == 0
    finally:
        conn.close()
    assert stack.client.delete(f"/v1/sweeps/{sweep_id}").status_code == 409
    assert stack.versions("mnist") == []


def _kill_the_worker_running(stack, sweep_id: str, number: int) -> dict:
    """Once trial `number` has reported an epoch, SIGKILL the one worker (and its work horse),
    then start a fresh worker: only its reconcile thread can notice the dead trial."""
    trial = wait_for(
        lambda: next(
            (
                t
                for t in sweep(stack, sweep_id)["trials"]
                if t["number"] == number and t["job_status"] == "started"
            ),
            None,
        ),
        90,
        what=f"trial {number} to start",
    )
    stack.wait_epoch(trial["job_id"], 1)
    (doomed,) = stack.workers
    for pid in horse_pids(doomed.pid):
        os.kill(pid, signal.SIGKILL)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    stack.workers.remove(doomed)
    stack.start_worker()
    return trial


def test_a_trial_whose_worker_dies_is_retried_once_and_never_hangs_the_sweep(trainer_stack):
    """One worker at a time, parallelism 1. Trial 0 (the good learning rate) dies: it is retried
    once as trial 1, which finishes and wins the sweep. Trial 2 dies, and so does its retry
    (trial 3): it stays failed, and the sweep finishes without a fifth trial. Nothing but the
    fresh workers' reconcile threads notices the deaths (reads never move a sweep)."""
    stack = trainer_stack
    stack.start_worker()
    # seed 1 orders this grid 0.01 first, then 1e-6 (see sweeps.sampler).
    body = {"base": {**BASE, "hidden_layers": [256, 256], "epochs": 12, "train_limit": 3000},
            "space": {"learning_rate": [0.01, 1e-6]}, "parallelism": 1, "seed": 1,
            "promote_to": "candidate"}  # fmt: skip
    sweep_id = start(stack, body)
    first = _kill_the_worker_running(stack, sweep_id, 0)
    assert first["params"] == {"learning_rate": 0.01}, first
    _kill_the_worker_running(stack, sweep_id, 2)
    _kill_the_worker_running(stack, sweep_id, 3)
    view = wait_done(stack, sweep_id)

    assert view["status"] == "finished", view
    trials = view["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3], trials
    assert [t["status"] for t in trials] == ["failed", "finished", "failed", "failed"], trials
    assert [t["retry_of"] for t in trials] == [None, 0, None, 2], trials
    assert [t["retried_by"] for t in trials] == [1, None, 3, None], trials
    assert trials[1]["params"] == trials[0]["params"] == {"learning_rate": 0.01}
    assert trials[3]["params"] == trials[2]["params"] == {"learning_rate": 1e-6}
    assert trials[1]["job_id"] != trials[0]["job_id"]  # a new job, the same trial params
    assert len(trials[1]["curve"]) == 12  # the retry's own curve, not the dead attempt's

    # The retried trial's result counts: it is the best, promoted, and its version says so.
    retry = trials[1]
    assert view["best"]["number"] == 1
    assert view["promotion"] == {"alias": "candidate", "promoted": True,
                                 "version": retry["model_version"],
                                 "reason": "the alias was not set"}  # fmt: skip
    assert stack.registry.state("mnist")["aliases"]["candidate"] == retry["model_version"]
    manifest = stack.registry.manifest("mnist", retry["model_version"])
    assert manifest["sweep"]["trial"] == 1 and manifest["sweep"]["value"] == retry["value"]
    assert stack.registry.versions("mnist") == [
        retry["model_version"]
    ]  # the dead published nothing
    listed = stack.client.get("/v1/sweeps").json["sweeps"][0]
    assert (listed["n_trials"], listed["trials_started"]) == (2, 2)


def test_cli_sweep_wait_follows_the_trials_and_saves_the_report(trainer_stack, tmp_path):
    """`digitflow sweep FILE --wait --report FILE.png` over real HTTP: a line per trial event,
    the verdict, then the sweep report PNG (GET /v1/sweeps/<id>/report.png)."""
    stack = trainer_stack
    stack.start_worker()
    with served(stack) as url:
        body = {"base": BASE, "space": {"seed": [1, 2]}, "promote_to": "best"}
        path = tmp_path / "sweep.json"
        path.write_text(json.dumps(body))
        out = io.StringIO()
        report = tmp_path / "sweep.png"
        argv = ["--trainer-url", url, "sweep", str(path), "--wait", "--report", str(report)]
        assert run(argv, out=out) == 0
        missing = requests.get(f"{url}/v1/sweeps/{'0' * 32}/report.png", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    with Image.open(report) as picture:
        assert picture.format == "PNG" and picture.size == SWEEP_REPORT_PIXELS
    assert f"report: {report}" in out.getvalue()
    assert list(tmp_path.glob(".sweep.png.tmp-*")) == []
    text = out.getvalue()
    for number in (0, 1):
        assert re.search(
            rf"^trial {number} \[seed=[12]\]: finished, epoch 2, val_accuracy 0\.", text, re.M
        ), text
    assert "sweep " in text and "finished: 2 trials, 0 pruned" in text, text
    assert re.search(r"^alias best: now version [12] \(the alias was not set\)$", text, re.M), text


def test_idempotency_key_returns_the_same_sweep(trainer_stack):
    """The jobs' Idempotency-Key rules hold for sweeps: same key and body → the first sweep,
    another body → 422, another key → another sweep. (No worker: trials only queue.)"""
    stack = trainer_stack
    body = {"base": BASE, "space": {"seed": [1, 2]}, "parallelism": 1}
    headers = {"Idempotency-Key": "sweep-42"}
    first = stack.client.post("/v1/sweeps", json=body, headers=headers)
    again = stack.client.post("/v1/sweeps", json=body, headers=headers)
    assert first.status_code == again.status_code == 202, (first.json, again.json)
    assert again.json["sweep_id"] == first.json["sweep_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    clash = stack.client.post("/v1/sweeps", json={**body, "parallelism": 2}, headers=headers)
    assert clash.status_code == 422 and "different request body" in clash.json["error"]["message"]
    other = stack.client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-43"})
    assert other.status_code == 202 and other.json["sweep_id"] != first.json["sweep_id"]
    assert len(stack.client.get("/v1/sweeps").json["sweeps"]) == 2
    for sweep_id in (first.json["sweep_id"], other.json["sweep_id"]):
        assert stack.client.delete(f"/v1/sweeps/{sweep_id}").status_code == 200


def test_a_sweep_changes_nothing_served_until_it_promotes_its_winner_to_default(
    trainer_stack, tmp_path
):
    """The user's own version keeps answering the default route from the first trial to the
    last, although every trial publishes a newer version; only the promotion to "default" (a
    pin, recorded with the sweep) moves it, and then to the winner, never another trial."""
    stack = trainer_stack
    stack.start_worker()
    # The user's own version, deliberately weak, so that the sweep's winner beats it.
    weak = {**BASE, "model": "served", "learning_rate": 1e-6}
    own = stack.wait_status(stack.submit(weak), "finished")
    v1 = own["model_version"]
    body = {
        "base": {**BASE, "model": "served"},
        "space": {"learning_rate": [0.01, 0.003], "seed": [1, 2]},
        "promote_to": "default",
        "keep": 4,
    }
    image = {"instances": [[0] * 784]}
    seen: list[tuple[float, int, int]] = []  # (request start, version served, versions published)
    with inference_service(stack.registry_dir, tmp_path) as svc:
        url = svc.base + "/v1/models/served/predict"
        assert requests.post(url, json=image, timeout=10).headers["X-Model-Version"] == str(v1)
        sweep_id = start(stack, body)
        while True:
            published = max(stack.versions("served"))
            started = time.time()
            r = requests.post(url, json=image, timeout=10)
            assert r.status_code == 200, r.text
            seen.append((started, int(r.headers["X-Model-Version"]), published))
            if sweep(stack, sweep_id)["status"] != "running":
                break
            assert started - seen[0][0] < TIMEOUT, stack.logs()
            time.sleep(0.05)
        view = sweep(stack, sweep_id)
        assert view["status"] == "finished", view
        winner = view["best"]["model_version"]
        entry = next(h for h in stack.registry.state("served")["history"] if h.get("sweep"))
        assert (entry["action"], entry["to"]) == ("pin", winner), entry
        promoted_at = datetime.fromisoformat(entry["at"]).timestamp()
        wait_for(
            lambda: (
                requests.post(url, json=image, timeout=10).headers["X-Model-Version"] == str(winner)
            ),
            30,
            what="the default route to serve the promoted winner",
        )
    trial_versions = {t["model_version"] for t in view["trials"]}
    assert len(trial_versions) == 4 and v1 not in trial_versions
    # Trial versions were published while the route still answered with the user's version,
    # and every one of them before the promotion (whose response times are checked below). The
    # newest one and the pin land within one job, too close for the loop to see between them.
    assert any(v == v1 and published > v1 for _, v, published in seen), seen
    for trial in trial_versions:
        created = stack.registry.manifest("served", trial)["created_at"]
        assert datetime.fromisoformat(created).timestamp() <= promoted_at, (trial, created)
    for started, version, _ in seen:
        assert version in (v1, winner), (version, seen)
        assert version == v1 or started >= promoted_at, (started, promoted_at, seen)
    promotion = view["promotion"]
    assert (promotion["alias"], promotion["promoted"], promotion["version"]) == (
        "default",
        True,
        winner,
    )
    assert f"beats version {v1}'s" in promotion["reason"], promotion
    assert stack.registry.latest_version("served") == v1


def test_a_retention_rule_never_deletes_a_running_sweeps_trials(trainer_stack):
    """keep_last 1: each trial's publish deletes the model's older plain version, never a trial
    of the sweep still running (its promotion names the best one); once the sweep has ended, the
    next publish keeps the promoted version (aliased) and the newest one only."""
    stack = trainer_stack
    stack.start_worker()
    stack.start_worker()
    plain = stack.submit({**BASE, "model": "kept"})
    assert stack.wait_status(plain, ("finished", "failed"))["status"] == "finished"
    stack.registry.set_retention("kept", 1)
    body = {
        "base": {**BASE, "model": "kept"},
        "space": {"seed": [1, 2, 3]},
        "parallelism": 2,
        "objective": "val_accuracy",
        "promote_to": "candidate",
        "keep": 3,
    }
    view = wait_done(stack, start(stack, body))
    assert view["status"] == "finished" and view["promotion"]["promoted"], view
    trials = {t["model_version"] for t in view["trials"]}
    assert all(t["status"] == "finished" for t in view["trials"]) and len(trials) == 3
    assert stack.registry.versions("kept") == sorted(trials), "the plain version 1 went"
    last = stack.submit({**BASE, "model": "kept"})
    job = stack.wait_status(last, ("finished", "failed"))
    assert job["status"] == "finished", stack.logs()
    best = view["promotion"]["version"]
    assert stack.registry.versions("kept") == sorted({best, job["model_version"]})
