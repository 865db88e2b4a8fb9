"""The issue's scenario end to end, on real processes and free ports.

Redis (the `redis_url` fixture), the trainer API under gunicorn, an RQ worker
(`python -m trainer_service worker`) and the inference service under gunicorn share a temporary
model registry. Driven through `shared.client.DigitflowClient` (and the `digitflow` CLI) like a
user would: submit a small job, follow it to `finished`, see version 1 served within seconds,
predict with the default and a pinned version, train version 2, watch `latest` move while a
request for version 1 still gets version 1, pin the default back to 1, cancel a queued job, stop a
running one, and check the KServe V2 endpoints.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid

import numpy as np
import pytest
import requests
from PIL import Image

from shared.client import DigitflowClient, DigitflowError
from shared.client import main as cli_main
from shared.datasets import load_dataset
from shared.modelfile import load_model
from shared.registry import Registry
from tests import REPO_ROOT
from tests.service_support import Service, v2_binary
from tests.trainer_support import (
    delete_queue_keys,
    free_port,
    service_env,
    start_gunicorn,
    start_worker,
    stop_process,
    tail,
    wait_for,
    wait_http_ok,
    wait_worker_registered,
)

TOKEN = "e2e-" + uuid.uuid4().hex
SMALL = {"hidden_layers": [32], "epochs": 2, "train_limit": 2000}
LONG = {"hidden_layers": [256, 256], "epochs": 1000, "train_limit": 3000}
#: The issue: a new version is picked up by every inference worker within 2 seconds.
RELOAD_SECONDS = 5.0
#: gunicorn workers of the inference service (WEB_CONCURRENCY).
WORKERS = 2


@pytest.fixture(scope="module")
def full_stack(redis_url, tmp_path_factory, mnist_dir):
    tmp = tmp_path_factory.mktemp("e2e")
    queue = f"e2e{uuid.uuid4().hex[:10]}"
    registry_dir = tmp / "models"
    trainer_port, inference_port = free_port(), free_port()
    env = service_env(
        REDIS_URL=redis_url,
        RQ_QUEUE=queue,
        MODEL_REGISTRY_DIR=str(registry_dir),
        MNIST_DATA_DIR=str(mnist_dir),
        API_TOKEN=TOKEN,
        WEB_CONCURRENCY=str(WORKERS),
        REGISTRY_POLL_SECONDS="0.5",
        JOB_HEARTBEAT_SECONDS="1",
        JOB_HEARTBEAT_GRACE="3",
        TRAINER_PORT=str(trainer_port),
        INFERENCE_PORT=str(inference_port),
    )
    procs = []
    logs = {name: tmp / f"{name}.log" for name in ("trainer", "worker", "inference")}
    try:
        procs.append(
            start_gunicorn(
                "trainer_service.api.app:create_app()",
                "trainer_service/api/gunicorn.conf.py",
                trainer_port,
                env,
                logs["trainer"],
            )
        )
        procs.append(
            start_gunicorn(
                "inference_service.app:create_app()",
                "inference_service/gunicorn.conf.py",
                inference_port,
                env,
                logs["inference"],
            )
        )
        worker = start_worker(env, logs["worker"], name=f"{queue}-worker")
        procs.append(worker)
        trainer_url = f"http://127.0.0.1:{trainer_port}"
        inference_url = f"http://127.0.0.1:{inference_port}"
        wait_http_ok(trainer_url + "/readyz", procs[0], logs["trainer"])
        wait_http_ok(inference_url + "/healthz", procs[1], logs["inference"])
        wait_worker_registered(redis_url, queue, worker, logs["worker"])
        yield {
            "client": DigitflowClient(trainer_url, inference_url, TOKEN),
            "trainer_url": trainer_url,
            "inference_url": inference_url,
            "inference": Service(inference_url, procs[1], logs["inference"]),
            "registry": Registry(registry_dir),
            "logs": logs,
        }
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        delete_queue_keys(redis_url, queue)


def _logs(full_stack) -> str:
    return "\n".join(f"--- {n}\n{tail(p, 40)}" for n, p in full_stack["logs"].items())


def _png(image: np.ndarray) -> bytes:
    """A test digit as a user would send it: a larger, dark-on-light PNG."""
    pic = Image.fromarray((255 - image.reshape(28, 28) * 255).astype(np.uint8)).resize((112, 112))
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def _train(full_stack, body) -> dict:
    client: DigitflowClient = full_stack["client"]
    job_id = client.submit(body)["job_id"]
    seen: list[dict] = []
    final = client.wait(job_id, on_progress=seen.append, poll=0.1, timeout=120)
    assert final["status"] == "finished", (final, _logs(full_stack))
    assert {j["status"] for j in seen} >= {"finished"}
    return final


def _default_version(full_stack, name="mnist"):
    return {m["name"]: m for m in full_stack["client"].models()}.get(name, {}).get(
        "serving_version"
    )


def _all_workers_serve(full_stack, version: int, images: np.ndarray, model: str = "mnist") -> bool:
    """Every gunicorn worker serves `version` by default (each polls the registry on its own, so
    each one's /readyz is asked: `Service.every_worker`), and a prediction carries it."""
    serving = full_stack["inference"].every_worker(
        lambda entry: entry.get("serving") == version, model=model, workers=WORKERS
    )
    if serving is None:
        return False
    r = requests.post(
        f"{full_stack['inference_url']}/v1/models/{model}/predict",
        json={"instances": images[:2].tolist()},
        timeout=10,
    )
    return r.status_code == 200 and r.headers.get("X-Model-Version") == str(version)


def test_the_whole_scenario(full_stack, mnist_dir, tmp_path):
    client: DigitflowClient = full_stack["client"]
    test = load_dataset("mnist", mnist_dir)
    images = (test.x_test[:200] * 255).round().astype(np.uint8)
    labels = test.y_test[:200]

    # Mutations need the token; reads do not.
    anonymous = DigitflowClient(full_stack["trainer_url"], full_stack["inference_url"], token="")
    with pytest.raises(DigitflowError) as err:
        anonymous.submit(SMALL)
    assert err.value.status == 401

    # 1. A small job: queued → started → finished, per-epoch progress, version 1.
    v1_job = _train(full_stack, SMALL)
    assert v1_job["model"] == "mnist" and v1_job["model_version"] == 1
    assert [h["epoch"] for h in v1_job["history"]] == [1, 2]
    assert v1_job["progress"]["epoch"] == 2

    # 2. Inference lists and serves version 1 within seconds, without a restart.
    wait_for(
        lambda: _default_version(full_stack) == 1, RELOAD_SECONDS, what="inference to serve v1"
    )
    wait_for(lambda: _all_workers_serve(full_stack, 1, images), RELOAD_SECONDS, what="every worker")
    listed = {m["name"]: m for m in client.models()}["mnist"]
    assert listed["latest_version"] == 1 and listed["default_version"] == 1

    # 3. Predict with the default version and with an explicitly named (pinned) version.
    default = client.predict(images, model="mnist")
    assert default["model_version"] == 1
    assert np.mean(np.asarray(default["predictions"]) == labels) > 0.3
    named = client.predict(images, model="mnist", version=1)
    assert named["model_version"] == 1 and named["predictions"] == default["predictions"]
    picture = tmp_path / "digit.png"
    picture.write_bytes(_png(test.x_test[0]))
    assert client.predict_file(picture, model="mnist")["model_version"] == 1

    # 4. A second version: latest and the (unpinned) default move to 2, version 1 stays reachable.
    v2_job = _train(full_stack, {**SMALL, "hidden_layers": [48], "seed": 1})
    assert v2_job["model_version"] == 2
    wait_for(
        lambda: _all_workers_serve(full_stack, 2, images), RELOAD_SECONDS, what="v2 everywhere"
    )
    assert client.predict(images, model="mnist")["model_version"] == 2
    assert client.predict(images, model="mnist", version="latest")["model_version"] == 2
    assert client.predict(images, model="mnist", version=1)["model_version"] == 1

    # 5. Pin the default back to 1: served everywhere within seconds; latest is still 2.
    state = client.pin("mnist", 1)
    assert state["default_version"] == 1 and state["pinned_version"] == 1
    wait_for(lambda: _all_workers_serve(full_stack, 1, images), RELOAD_SECONDS, what="the pin")
    assert _default_version(full_stack) == 1
    assert client.predict(images, model="mnist", version="latest")["model_version"] == 2
    assert full_stack["registry"].state("mnist")["history"][-1]["action"] == "pin"

    # 6. Cancel a queued job and stop a running one: neither publishes anything.
    running = client.submit(LONG)["job_id"]
    wait_for(
        lambda: (client.status(running).get("progress") or {}).get("epoch", 0) >= 1,
        60,
        what="the long job to report an epoch",
    )
    queued = client.submit(SMALL)["job_id"]
    assert client.status(queued)["status"] == "queued"
    assert client.cancel(queued)["status"] == "canceled"
    assert client.cancel(running)["status"] == "stopping"
    stopped = client.wait(running, poll=0.1, timeout=30)
    assert stopped["status"] == "stopped" and stopped["model_version"] is None
    assert client.status(queued)["status"] == "canceled"
    assert full_stack["registry"].versions("mnist") == [1, 2]
    statuses = {j["job_id"]: j["status"] for j in client.jobs(limit=50)}
    assert statuses[running] == "stopped" and statuses[queued] == "canceled"
    assert statuses[v1_job["job_id"]] == statuses[v2_job["job_id"]] == "finished"

    # 7. The KServe V2 endpoints answer.
    base = full_stack["inference_url"]
    assert requests.get(f"{base}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
    meta = requests.get(f"{base}/v2/models/mnist", timeout=5).json()
    assert meta["name"] == "mnist" and set(meta["versions"]) >= {"1", "2"}
    assert requests.get(f"{base}/v2/models/mnist/versions/2/ready", timeout=5).status_code == 200
    body = {
        "inputs": [
            {
                "name": meta["inputs"][0]["name"],
                "datatype": "FP32",
                "shape": [5, 784],
                "data": test.x_test[:5].reshape(-1).tolist(),
            }
        ]
    }
    out = requests.post(f"{base}/v2/models/mnist/infer", json=body, timeout=10).json()
    assert out["model_version"] == "1"  # the pinned default
    outputs = {o["name"]: o for o in out["outputs"]}
    assert outputs["probabilities"]["shape"] == [5, 10]
    assert outputs["predictions"]["data"] == default["predictions"][:5]
    out2 = requests.post(f"{base}/v2/models/mnist/versions/2/infer", json=body, timeout=10).json()
    assert out2["model_version"] == "2"


def test_cli_drives_the_same_stack(full_stack, capsys, monkeypatch, tmp_path, mnist_dir):
    """The `digitflow` command against the running services. It trains a model of its own name,
    so it sees the same versions whether it runs before, after or without the scenario above."""
    monkeypatch.setenv("TRAINER_URL", full_stack["trainer_url"])
    monkeypatch.setenv("INFERENCE_URL", full_stack["inference_url"])
    monkeypatch.setenv("API_TOKEN", TOKEN)
    model = f"cli{uuid.uuid4().hex[:8]}"

    for version in (1, 2):
        assert cli_main(["submit", "--preset", "seed-basic", "--epochs=2", "--train-limit=2000",
                         "--hidden-layers=16", "--batch-size", "64", f"--model={model}",
                         "--wait"]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert f"finished: {model} version {version}" in out

    assert cli_main(["models"]) == 0
    assert f"{model}: latest 2, default 2" in capsys.readouterr().out
    assert cli_main(["pin", model, "1"]) == 0
    assert f"{model}: default version is now 1" in capsys.readouterr().out

    x_test = load_dataset("mnist", mnist_dir).x_test
    digit = x_test[0]
    wait_for(
        lambda: _all_workers_serve(full_stack, 1, (x_test[:2] * 255).round(), model=model),
        RELOAD_SECONDS,
        what="pin",
    )
    picture = tmp_path / "digit.png"
    picture.write_bytes(_png(digit))
    assert cli_main(["predict", str(picture), "--model", model, "--version", "2"]) == 0
    assert f"[{model} v2]" in capsys.readouterr().out
    assert cli_main(["predict", str(picture), "--model", model]) == 0
    assert f"[{model} v1]" in capsys.readouterr().out  # the new pin
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)  # no ink: the service says why, exit 2
    assert cli_main(["predict", str(blank), "--model", model]) == 2
    assert "error" in capsys.readouterr().err

    # Errors: a message and exit status 2, never a traceback.
    assert cli_main(["submit", "--epochs=0", "--bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "422" in err and "epochs" in err and "bogus" in err
    assert cli_main(["status", uuid.uuid4().hex]) == 2
    assert "404" in capsys.readouterr().err

    # The installed console script works too (a real subprocess).
    proc = subprocess.run(
        [sys.executable, "-m", "shared.client", "jobs", "--status", "finished"],
        cwd=REPO_ROOT,
        env=service_env(
            TRAINER_URL=full_stack["trainer_url"], INFERENCE_URL=full_stack["inference_url"]
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    mine = [line for line in proc.stdout.splitlines() if f" {model} " in line]
    assert len(mine) == 2 and all(" finished " in line for line in mine), proc.stdout


#: A tiny convolutional network, trained through the whole stack in a second or two.
CNN = {
    "model": "digits-cnn",
    "epochs": 1,
    "train_limit": 1000,
    "batch_size": 32,
    "network": [{"conv": 8, "kernel": 5}, {"pool": 2}, {"conv": 8, "kernel": 3}, {"pool": 2},
                {"dense": 32}],
}  # fmt: skip


def test_a_small_cnn_is_trained_published_and_served_on_every_route(full_stack, mnist_dir):
    """API → worker → registry → inference: a convolutional job, refused at the door when a
    layer does not fit, then its version served through every route and explained."""
    client: DigitflowClient = full_stack["client"]
    bad = {**CNN, "network": [*CNN["network"][:4], {"conv": 4, "kernel": 7}]}  # on 5x5
    with pytest.raises(DigitflowError) as err:
        client.submit(bad)
    assert err.value.status == 422 and "network[4].kernel" in str(err.value)
    assert "digits-cnn" not in full_stack["registry"].model_names()

    job = _train(full_stack, CNN)
    assert job["model"] == "digits-cnn" and job["model_version"] == 1
    manifest = full_stack["registry"].manifest("digits-cnn", 1)
    assert manifest["config"]["network"][1] == {"pool": 2, "stride": 2}
    assert manifest["config"]["hidden_layers"] is None
    wait_for(
        lambda: _default_version(full_stack, "digits-cnn") == 1, RELOAD_SECONDS, what="the CNN"
    )

    test = load_dataset("mnist", mnist_dir)
    images = (test.x_test[:40] * 255).round().astype(np.uint8)
    model = load_model(full_stack["registry"].weights_path("digits-cnn", 1)).model
    want = model.predict_proba(images.astype(np.float32) / 255)
    assert np.mean(want.argmax(axis=1) == test.y_test[:40]) > 0.3  # it learned something
    base = full_stack["inference_url"]
    url, infer = f"{base}/v1/models/digits-cnn/predict", f"{base}/v2/models/digits-cnn/infer"
    answers = [
        requests.post(url, json={"instances": images.tolist()}, timeout=10),
        requests.post(url, json={"instances": images.reshape(-1, 28, 28).tolist()}, timeout=10),
    ]
    for shape in ([40, 784], [40, 28, 28], [40, 1, 28, 28]):
        buf = io.BytesIO()
        np.save(buf, images.reshape(shape))
        headers = {"Content-Type": "application/x-npy"}
        answers.append(requests.post(url, data=buf.getvalue(), headers=headers, timeout=10))
        tensor = {"name": "input", "shape": shape, "datatype": "UINT8"}
        v2 = {"inputs": [{**tensor, "data": images.reshape(shape).tolist()}]}
        answers.append(requests.post(infer, json=v2, timeout=10))
        body, length = v2_binary(images.astype(np.float32) / 255, shape)
        headers = {"Inference-Header-Content-Length": length}
        answers.append(requests.post(infer, data=body, headers=headers, timeout=10))
    for resp in answers:
        assert resp.status_code == 200, resp.text[:300]
        got = resp.json().get("probabilities") or resp.json()["outputs"][0]["data"]
        np.testing.assert_allclose(np.reshape(got, (40, 10)), want, rtol=1e-4, atol=1e-6)
    picture = _png(test.x_test[0])
    resp = requests.post(url, data=picture, headers={"Content-Type": "image/png"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["model_version"] == 1

    meta = requests.get(f"{base}/v2/models/digits-cnn", timeout=5).json()
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert [-1, 1, 28, 28] in meta["inputs"][0]["parameters"]["accepted_shapes"]
    explain = {"instances": images[:3].tolist(), "steps": 64}
    found = requests.post(f"{base}/v1/models/digits-cnn/explain", json=explain, timeout=30).json()
    gap, diff = np.array(found["completeness_gap"]), np.array(found["logit_difference"])
    assert (np.abs(gap) / (np.abs(diff) + 1)).max() <= 1e-2
