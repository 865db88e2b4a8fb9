"""The web page in a real headless Chromium (Debian's `chromium`), driven by Playwright.

Real processes on free ports: the inference service under gunicorn (serving the page), the
trainer API under gunicorn with CORS_ORIGINS = the page's origin, an RQ worker and Redis. The
registry starts with two versions trained on real MNIST slices by the same code the RQ job runs
(pipeline + manifest + report): v1 small and weak, v2 good enough to read a clearly drawn digit.

The tests draw digits stroke by stroke with the mouse and check the prediction and the bars,
switch versions, open a version's report (the pictures must load), compare two versions, read
what each version gets under a traffic split, start a training job from the form and watch it
finish, stop another one, start one on a trainer that needs a token (asked for before Start),
follow real sweeps in the Sweeps view (table, sorting, curves, parameter charts, versions the
sweep removed, cancel), and finally stop the trainer and check the page says so while drawing
still works.

The test installs what it needs: Debian's chromium through scripts/ensure-system-tools.sh (the
same script `make install` runs) and Playwright through pip when either is missing. Playwright's
own browser download (`playwright install`) is never used.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.config import TrainConfig
from shared.datasets import load_dataset
from shared.manifest import Manifest
from shared.modelfile import load_model, save_model
from shared.pipeline import run_training
from shared.registry import Registry
from shared.reports import FIGURE_PIXELS
from tests import REPO_ROOT
from tests.service_support import Service
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
from trainer_service.worker.jobs import write_report_files

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: v1: tiny and weak; v2: reads clearly drawn digits (≈ 93 % on the test set, seconds to train).
WEAK = {"hidden_layers": [16], "epochs": 1, "train_limit": 1000, "seed": 1}
GOOD = {"hidden_layers": [128], "epochs": 3, "train_limit": 10000, "augment": True,
        "learning_rate": 3e-3}  # fmt: skip
#: Digits as pen strokes in pad coordinates (0..1), drawn the way a person would.
STROKES = {
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "0": [
        [(0.5, 0.15), (0.3, 0.3), (0.28, 0.6), (0.5, 0.85), (0.7, 0.6), (0.72, 0.3), (0.5, 0.15)]
    ],  # fmt: skip
    "4": [[(0.35, 0.15), (0.25, 0.55), (0.75, 0.55)], [(0.62, 0.3), (0.62, 0.88)]],
}


# ---- what the test needs installed ----------------------------------------------------------


def _ensure_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "ensure-system-tools.sh")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert os.access(CHROMIUM, os.X_OK), (
            f"{CHROMIUM} is missing and scripts/ensure-system-tools.sh could not install it:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return CHROMIUM


def _sync_playwright():
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "playwright>=1.45,<2"],
            check=True,
            timeout=600,
        )
        importlib.invalidate_caches()
        module = importlib.import_module("playwright.sync_api")
    return module.sync_playwright


# ---- the stack ------------------------------------------------------------------------------


def _publish(registry: Registry, dataset, overrides: dict) -> int:
    """Train and publish exactly as the RQ job does (manifest and report included)."""
    config = TrainConfig(**overrides)
    outcome = run_training(config, dataset=dataset)
    manifest = Manifest.from_outcome(outcome)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.npz"
        save_model(weights, outcome.model)
        report = write_report_files(Path(tmp) / "report", outcome, manifest)
        assert report, "the report was not written"
        return registry.publish(config.model_name, weights, manifest.to_json(), extra_files=report)


def _start_trainer(port: int, env: dict[str, str], log: Path):
    return start_gunicorn(
        "trainer_service.api.app:create_app()",
        "trainer_service/api/gunicorn.conf.py",
        port,
        env,
        log,
    )


@pytest.fixture(scope="module")
def site(redis_url, tmp_path_factory, mnist_dir):
    tmp = tmp_path_factory.mktemp("browser")
    registry = Registry(tmp / "models")
    queue = f"web{uuid.uuid4().hex[:10]}"
    trainer_port, inference_port = free_port(), free_port()
    trainer_url = f"http://127.0.0.1:{trainer_port}"
    inference_url = f"http://127.0.0.1:{inference_port}"
    env = service_env(
        REDIS_URL=redis_url,
        RQ_QUEUE=queue,
        MODEL_REGISTRY_DIR=str(registry.root),
        MNIST_DATA_DIR=str(mnist_dir),
        API_TOKEN="",
        CORS_ORIGINS=inference_url,
        TRAINER_PUBLIC_URL=trainer_url,
        WEB_CONCURRENCY="2",
        REGISTRY_POLL_SECONDS="0.2",
        JOB_HEARTBEAT_SECONDS="1",
        JOB_HEARTBEAT_GRACE="3",
    )
    logs = {name: tmp / f"{name}.log" for name in ("trainer", "worker", "inference")}
    procs = {}
    try:
        # Processes first: they start while the models train (inference picks the versions up
        # by itself, and is ready once it serves one).
        procs["trainer"] = _start_trainer(trainer_port, env, logs["trainer"])
        procs["worker"] = start_worker(env, logs["worker"], name=f"{queue}-worker")
        procs["inference"] = start_gunicorn(
            "inference_service.app:create_app()",
            "inference_service/gunicorn.conf.py",
            inference_port,
            env,
            logs["inference"],
        )
        ds = load_dataset("mnist", mnist_dir)
        assert _publish(registry, ds, WEAK) == 1
        assert _publish(registry, ds, GOOD) == 2
        wait_http_ok(trainer_url + "/readyz", procs["trainer"], logs["trainer"])
        wait_http_ok(inference_url + "/readyz", procs["inference"], logs["inference"])
        wait_worker_registered(redis_url, queue, procs["worker"], logs["worker"])
        yield {
            "tmp": tmp,
            "url": inference_url,
            "inference": Service(inference_url, procs["inference"], logs["inference"]),
            "trainer_url": trainer_url,
            "trainer_port": trainer_port,
            "env": env,
            "registry": registry,
            "procs": procs,
            "logs": logs,
        }
    finally:
        for proc in reversed(list(procs.values())):
            stop_process(proc)
        delete_queue_keys(redis_url, queue)


@pytest.fixture(scope="module")
def browser():
    executable = _ensure_chromium()
    with _sync_playwright()() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}\n{_logs(site)}"


def _logs(site) -> str:
    return "\n".join(f"--- {name}\n{tail(path, 30)}" for name, path in site["logs"].items())


def _open(page, site, view: str = "draw"):
    page.goto(f"{site['url']}/#{view}")
    page.wait_for_selector("body[data-ready=true]")


def _draw(page, strokes) -> None:
    """Press, move in small steps and release for each stroke, like a hand with a mouse."""
    box = page.locator("#pad").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    for stroke in strokes:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(*point), steps=8)
        page.mouse.up()


def _bars(page) -> list[float]:
    values = page.eval_on_selector_all(
        "#bars li", "rows => rows.map(r => r.dataset.probability ?? null)"
    )
    return [float(v) if v is not None else None for v in values]


def _wait_prediction(page, digit: str, version: str) -> None:
    page.wait_for_function(
        "([d, v]) => document.querySelector('#prediction').textContent === d"
        " && document.querySelector('#served-version').textContent === v",
        arg=[digit, version],
    )


def _wait_status(page, site, status: str, timeout_ms: float) -> None:
    """Wait for the watched job's status, with what the page and the services said on failure."""
    try:
        page.wait_for_function(
            "(s) => document.querySelector('#job-panel').dataset.status === s",
            arg=status,
            timeout=timeout_ms,
        )
    except Exception as exc:
        shown = page.evaluate(
            "() => [document.querySelector('#job-panel').dataset.status,"
            " document.querySelector('#job-result').textContent]"
        )
        raise AssertionError(f"job never {status}: page shows {shown}\n{_logs(site)}") from exc


# ---- the tests ------------------------------------------------------------------------------


def test_page_is_self_contained(page, site) -> None:
    """Everything the page loads comes from the service itself (no CDN), under a strict CSP."""
    foreign: list[str] = []
    page.on(
        "request",
        lambda req: (
            foreign.append(req.url)
            if not req.url.startswith((site["url"], site["trainer_url"], "data:"))
            else None
        ),
    )
    response = page.goto(site["url"] + "/")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#draw-model").input_value() == "mnist"
    assert page.locator("#draw-version option").count() == 4  # default, latest, v2, v1
    assert foreign == []


def test_draw_digits_see_bars_and_switch_versions(page, site) -> None:
    _open(page, site)
    assert page.locator("#pad").get_attribute("aria-label")
    # A two-stroke 4: after the first stroke there is already a prediction; the second changes it.
    _draw(page, STROKES["4"][:1])
    page.wait_for_function(
        "() => document.querySelector('#bars li').dataset.probability !== undefined"
    )
    after_first = _bars(page)
    _draw(page, STROKES["4"][1:])
    _wait_prediction(page, "4", "2")
    after_second = _bars(page)
    assert after_second != after_first, "the bars did not update"
    assert abs(sum(after_second) - 1.0) < 1e-3
    assert max(range(10), key=lambda d: after_second[d]) == 4
    top = page.locator("#bars li.is-top")
    assert top.get_attribute("data-digit") == "4"
    assert float(top.locator("[role=meter]").get_attribute("aria-valuenow")) > 30

    for digit in ("7", "1", "0"):
        page.click("#clear")
        assert page.text_content("#prediction") == "–"
        _draw(page, STROKES[digit])
        _wait_prediction(page, digit, "2")

    # Another version: the request goes to /versions/1 and the answer says version 1.
    with page.expect_response(lambda r: "/versions/1/predict" in r.url) as answer:
        page.select_option("#draw-version", "1")
    assert answer.value.headers["x-model-version"] == "1"
    page.wait_for_function("() => document.querySelector('#served-version').textContent === '1'")
    with page.expect_response(lambda r: "/versions/latest/predict" in r.url) as answer:
        page.select_option("#draw-version", "latest")
    assert answer.value.headers["x-model-version"] == "2"
    _wait_prediction(page, "0", "2")


def _heatmap(page) -> list[int]:
    """The overlay's RGBA pixels (28 x 28 x 4)."""
    return page.evaluate(
        "() => Array.from(document.querySelector('#heatmap').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data)"
    )


def test_heatmap_explains_the_prediction_and_another_class(page, site) -> None:
    """ "Why 7": the attributions painted over the 28x28 preview; picking class 1 asks the service
    for that class ("why not 1") and repaints."""
    _open(page, site)
    with page.expect_response(lambda r: r.url.endswith("/explain")) as answer:
        _draw(page, STROKES["7"])
    assert answer.value.status == 200
    _wait_prediction(page, "7", "2")
    page.wait_for_function(
        "() => document.querySelector('#heatmap').dataset.target === '7'"
        " && document.querySelector('#why').textContent === 'Why 7'"
    )
    why_7 = _heatmap(page)
    alphas = why_7[3::4]
    assert sum(a > 0 for a in alphas) >= 20, "the heatmap is blank"
    assert sum(a > 0 for a in alphas) < 784  # an overlay: the blank corners stay clear
    with page.expect_request(lambda r: r.url.endswith("/explain")) as sent:
        page.select_option("#explain-target", "1")
    assert sent.value.post_data_json["target"] == 1
    page.wait_for_function(
        "() => document.querySelector('#heatmap').dataset.target === '1'"
        " && document.querySelector('#why').textContent === 'Why not 1'"
    )
    assert _heatmap(page) != why_7, "another class, the same heatmap"
    assert page.text_content("#prediction") == "7"  # the prediction itself is unchanged
    page.select_option("#explain-target", "")
    page.wait_for_function("() => document.querySelector('#why').textContent === 'Why 7'")
    page.click("#clear")
    assert page.evaluate("() => document.querySelector('#heatmap').dataset.painted") == "false"
    assert page.text_content("#why") == ""


def test_models_view_lists_versions_opens_a_report_and_compares(page, site) -> None:
    _open(page, site, "models")
    page.wait_for_selector("#versions-table tbody tr[data-version='2']")
    rows = page.locator("#versions-table tbody tr")
    assert rows.count() == 2
    default_row = page.locator("#versions-table tr.is-default")
    assert default_row.get_attribute("data-version") == "2"
    assert "default" in default_row.inner_text()
    accuracy = site["registry"].manifest("mnist", 2)["metrics"]["test_accuracy"]
    assert f"{accuracy * 100:.2f} %" in default_row.inner_text()

    page.click("#versions-table tr[data-version='2'] .report-button")
    images = page.locator("#report-body img")
    assert images.count() == len(FIGURE_PIXELS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#report-body img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    for i in range(images.count()):
        img = images.nth(i)
        file = img.get_attribute("data-file")
        size = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert tuple(size) == FIGURE_PIXELS[file], file
        assert img.get_attribute("alt")

    # Compare: v1 vs v2 side by side; the better accuracy is marked, differing settings shown.
    page.select_option("#compare-a", "1")
    page.select_option("#compare-b", "2")
    table = page.locator("#compare-body table")
    table.locator("th:text('v1')").wait_for()
    accuracy_row = table.locator("tr", has=page.locator("th:text-is('Test accuracy')"))
    assert accuracy_row.locator("td.better").count() == 1
    assert accuracy_row.locator("td").nth(1).get_attribute("class") == "num better"
    assert table.locator("tr.diff", has=page.locator("th:text-is('hidden_layers')")).count() == 1
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#compare-body img')];"
        " return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
    )


#: A small convolutional network trained for the first-convolution tests (seconds).
CNN_MODEL = "browser-cnn"
CNN = {"model": CNN_MODEL, "network": [{"conv": 6, "kernel": 5}, {"pool": 2}, {"dense": 32}],
       "epochs": 1, "train_limit": 3000, "augment": False, "seed": 3}  # fmt: skip


@pytest.fixture(scope="module")
def cnn(site, mnist_dir):
    """Model browser-cnn version 1 (its own name: the other tests' models are left as they are),
    and the layers the engine describes for it."""
    registry = site["registry"]
    if CNN_MODEL not in registry.model_names():
        assert _publish(registry, load_dataset("mnist", mnist_dir), CNN) == 1
    return load_model(registry.weights_path(CNN_MODEL, 1)).model.describe()


def test_models_view_draws_each_versions_network(page, site, cnn) -> None:
    """The CNN version's network drawn as its layers, each with the output shape and parameter
    count the engine gives (and the blocks' heights growing with the values a layer outputs); a
    perceptron's too."""
    _open(page, site, "models")
    page.select_option("#models-model", CNN_MODEL)
    layers = "#versions-table tr[data-version='1'] .network li"
    page.wait_for_selector(layers + "[data-kind='conv2d']")
    drawn = page.eval_on_selector_all(
        layers,
        "items => items.map(li => [li.dataset.kind, li.dataset.shape, Number(li.dataset.params),"
        " li.querySelector('.layer-block').getBoundingClientRect().height])",
    )
    want = [(e["kind"], "×".join(map(str, e["output_shape"])), e["params"]) for e in cnn]
    assert [tuple(d[:3]) for d in drawn] == want
    kinds = [d[0] for d in drawn]
    conv, pool, dense = (drawn[kinds.index(k)] for k in ("conv2d", "maxpool2d", "dense"))
    assert conv[1:3] == ["6×24×24", 5 * 5 * 6 + 6] and pool[1:3] == ["6×12×12", 0]
    assert dense[1:3] == ["32", 6 * 12 * 12 * 32 + 32]
    assert conv[3] > pool[3] > dense[3] > 0, "the blocks are not drawn by size"
    row = page.locator("#versions-table tr[data-version='1']")
    assert "conv 6 5×5" in row.inner_text() and "pool 2" in row.inner_text()
    total = sum(e["params"] for e in cnn)
    assert row.locator(".network-total").get_attribute("data-params") == str(total)
    # A perceptron (mnist v2: 784-128-10) is drawn the same way.
    page.select_option("#models-model", "mnist")
    mlp = "#versions-table tr[data-version='2'] .network li[data-kind='dense']"
    page.wait_for_selector(mlp)
    dense = page.eval_on_selector_all(mlp, "items => items.map(li => li.dataset.params)")
    assert dense == [str(784 * 128 + 128), str(128 * 10 + 10)]


def _canvases(page, selector: str) -> list[list[int]]:
    """Each canvas's RGBA pixels."""
    return page.eval_on_selector_all(
        selector,
        "cs => cs.map(c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height)"
        ".data))",
    )


def _settled(page) -> int:
    """The first-convolution panel once its paints stop (the drawing's last answer is in)."""
    paints, since = None, time.monotonic()
    while time.monotonic() - since < 0.8:
        now = page.get_attribute("#conv-panel", "data-paints")
        if now != paints:
            paints, since = now, time.monotonic()
        time.sleep(0.1)
    return int(paints)


def test_draw_view_shows_what_the_first_convolution_sees(page, site, cnn) -> None:
    """A CNN version: its filters and their feature maps of the drawing, painted from the very
    numbers the service answered, and the maps change as the digit does (the filters do not);
    hidden for a perceptron, which is never asked."""
    answers = []
    page.on("response", lambda r: answers.append(r) if r.url.endswith("/feature-maps") else None)
    _open(page, site)
    page.select_option("#draw-model", CNN_MODEL)
    page.wait_for_selector("#draw-version option[value='1']", state="attached")
    _draw(page, STROKES["1"])
    page.wait_for_selector("#conv-panel:not([hidden])")
    first = _settled(page)
    assert page.get_attribute("#conv-panel", "data-version") == "1"
    sizes = "cs => cs.map(c => [c.width, c.height])"
    assert page.eval_on_selector_all("#conv-filters canvas", sizes) == [[5, 5]] * 6
    assert page.eval_on_selector_all("#conv-maps canvas", sizes) == [[24, 24]] * 6
    filters, maps = _canvases(page, "#conv-filters canvas"), _canvases(page, "#conv-maps canvas")
    # The painted maps are the service's numbers: grey = |value| / the largest value.
    body = answers[-1].json()
    values = np.array(body["feature_maps"][0])
    grey = np.floor(255 * np.abs(values) / np.abs(values).max() + 0.5)
    shown = np.array(maps).reshape(6, 24, 24, 4)
    assert np.abs(shown[..., 0] - grey).max() <= 1
    assert (shown[..., 0] > 0).sum() > 50, "the maps are blank"
    weights, rgba = np.array(body["filters"])[:, 0], np.array(filters).reshape(6, 5, 5, 4)
    assert (rgba[..., 0][weights > 0] == 255).all() and (rgba[..., 2][weights < 0] == 255).all()
    assert (rgba[..., :3] < 128).any(), "the filters are blank"  # red for +, blue for -

    _draw(page, [[(0.25, 0.2), (0.5, 0.15)]])  # more ink: a flag on the 1
    second = _settled(page)
    assert second > first
    more = _canvases(page, "#conv-maps canvas")
    assert more != maps, "more ink, the same feature maps"
    assert _canvases(page, "#conv-filters canvas") == filters  # the filters are the model's
    page.click("#clear")
    assert page.locator("#conv-panel").is_hidden()
    _draw(page, STROKES["0"])
    page.wait_for_selector("#conv-panel:not([hidden])")
    _settled(page)
    zero = _canvases(page, "#conv-maps canvas")
    assert zero != maps and zero != more, "another digit, the same feature maps"

    # A perceptron: the panel goes, and no feature maps are asked for.
    asked = len(answers)
    page.select_option("#draw-model", "mnist")
    _wait_prediction(page, "0", "2")
    time.sleep(0.5)
    assert page.locator("#conv-panel").is_hidden()
    assert len(answers) == asked


def test_training_view_starts_a_job_watches_it_and_stops_another(page, site) -> None:
    _open(page, site, "train")
    page.wait_for_function(
        "() => document.querySelector('#trainer-status').textContent.includes('ready')"
    )
    assert page.locator("#train-start").is_enabled()
    page.fill("#f-model", "browser")
    page.fill("#f-hidden_layers", "32")
    page.fill("#f-epochs", "3")
    page.fill("#f-train_limit", "2000")
    page.click("#train-start")
    page.wait_for_selector("#job-panel:not([hidden])")
    _wait_status(page, site, "finished", 90_000)
    assert page.locator("#epochs-table tbody tr").count() == 3
    assert page.text_content("#job-progress-text") == "3 / 3"
    assert "version 1" in page.text_content("#job-result")
    assert site["registry"].versions("browser") == [1]
    # The new model shows up in the pickers without a reload.
    page.wait_for_selector("#draw-model option[value='browser']", state="attached")

    # A long job: stop it from the page once it reports an epoch; nothing is published.
    page.fill("#f-model", "browser-long")
    page.fill("#f-hidden_layers", "256 256")
    page.fill("#f-epochs", "1000")
    page.fill("#f-train_limit", "3000")
    first_job = page.text_content("#job-id")
    page.click("#train-start")
    page.wait_for_function(  # the panel now shows the new job (the POST has answered)
        "(old) => document.querySelector('#job-id').textContent !== old", arg=first_job
    )
    page.wait_for_function(
        "() => Number(document.querySelector('#job-panel').dataset.epoch) >= 1", timeout=60_000
    )
    page.click("#job-stop")
    _wait_status(page, site, "stopped", 30_000)
    assert "nothing was published" in page.text_content("#job-result")
    assert "browser-long" not in site["registry"].model_names()
    page.wait_for_function(  # the recent-jobs list is refreshed once the job has ended
        "() => [...document.querySelectorAll('#jobs-list li')]"
        ".filter(li => li.textContent.includes('stopped')).length === 1"
    )


def test_training_view_asks_for_the_token_before_start(page, site) -> None:
    """The trainer restarted with API_TOKEN (for this test only; back without it afterwards):
    the view asks for the token before Start, sends nothing without it, shows a refused token
    next to the button, and starts the job with the right one (kept in the tab's session)."""
    token = "page-token-" + uuid.uuid4().hex
    stop_process(site["procs"]["trainer"])
    trainer = _start_trainer(
        site["trainer_port"], {**site["env"], "API_TOKEN": token}, site["logs"]["trainer"]
    )
    site["procs"]["trainer"] = trainer
    try:
        wait_http_ok(site["trainer_url"] + "/readyz", trainer, site["logs"]["trainer"])
        posts: list[str] = []
        page.on(
            "request",
            lambda r: posts.append(r.url) if r.method == "POST" and "/v1/jobs" in r.url else None,
        )
        _open(page, site, "train")
        page.wait_for_function(
            "() => document.querySelector('#trainer-status').textContent"
            '.includes("needs the trainer\'s API token")'
        )
        assert page.locator("#f-token").is_visible()
        assert page.locator("#train-start").is_enabled()
        page.fill("#f-model", "browser-token")
        page.fill("#f-hidden_layers", "16")
        page.fill("#f-epochs", "1")
        page.fill("#f-train_limit", "1000")
        note = page.locator("#train-start-note")

        def beside_the_button() -> None:
            box, button = note.bounding_box(), page.locator("#train-start").bounding_box()
            assert abs((box["y"] + box["height"] / 2) - (button["y"] + button["height"] / 2)) < 40
            assert box["y"] + box["height"] <= page.viewport_size["height"]

        page.click("#train-start")  # no token yet: asked for, nothing sent
        page.wait_for_selector("#train-start-note:not([hidden])")
        assert "API token" in note.inner_text()
        beside_the_button()
        assert page.evaluate("document.activeElement.id") == "f-token"
        assert page.get_attribute("#f-token", "aria-invalid") == "true"
        assert posts == []

        page.fill("#f-token", token + "x")  # a wrong token: the 401 beside the button
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#train-start")
        assert answer.value.status == 401
        page.wait_for_selector("#train-start-note:not([hidden])")
        assert "Refused (HTTP 401): invalid bearer token" in note.inner_text()
        beside_the_button()
        assert page.locator("#job-panel").is_hidden()

        page.fill("#f-token", token)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#train-start")
        assert answer.value.status == 202
        assert answer.value.request.headers["authorization"] == f"Bearer {token}"
        assert note.is_hidden()
        _wait_status(page, site, "finished", 90_000)
        assert site["registry"].versions("browser-token") == [1]
        assert page.evaluate("sessionStorage.getItem('digitflow-token')") == token
    finally:
        stop_process(site["procs"]["trainer"])
        trainer = _start_trainer(site["trainer_port"], site["env"], site["logs"]["trainer"])
        site["procs"]["trainer"] = trainer
        wait_http_ok(site["trainer_url"] + "/readyz", trainer, site["logs"]["trainer"])


def test_trainer_down_page_says_so_and_drawing_still_works(page, site) -> None:
    """The trainer API is stopped for this test only: started again on the same port afterwards,
    so the tests of this module may run in any order."""
    stop_process(site["procs"]["trainer"])
    try:
        _open(page, site, "train")
        status = page.locator("#trainer-status")
        page.wait_for_function(
            "() => document.querySelector('#trainer-status').textContent"
            ".includes('cannot be reached')"
        )
        assert "warn" in status.get_attribute("class")
        assert page.locator("#train-start").is_disabled()
        page.click("#tab-draw")
        _draw(page, STROKES["7"])
        _wait_prediction(page, "7", "2")
        page.click("#tab-models")
        page.wait_for_selector("#versions-table tbody tr[data-version='1']")
    finally:
        trainer = _start_trainer(site["trainer_port"], site["env"], site["logs"]["trainer"])
        site["procs"]["trainer"] = trainer
        wait_http_ok(site["trainer_url"] + "/readyz", trainer, site["logs"]["trainer"])


def test_phone_width(browser, site) -> None:
    """At 375 px the pad, the bars and the tabs fit without horizontal scrolling."""
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True
    )
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _open(page, site)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        pad = page.locator("#pad").bounding_box()
        assert pad["width"] >= 250 and pad["x"] >= 0 and pad["x"] + pad["width"] <= 375
        for tab in ("Draw", "Models", "Train", "Sweeps"):
            assert page.get_by_role("link", name=tab).is_visible()
        # A finger draws a 7: real touch events through the DevTools protocol.
        touch = context.new_cdp_session(page)
        for stroke in STROKES["7"]:
            points = _path(pad, stroke)
            kinds = ["touchStart"] + ["touchMove"] * (len(points) - 1)
            for kind, (x, y) in zip(kinds, points, strict=True):
                touch.send(
                    "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
                )
            touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        _wait_prediction(page, "7", "2")
        assert page.evaluate("document.documentElement.scrollTop") == 0, "the page scrolled"
        assert not errors, errors
    finally:
        context.close()


def _path(box: dict, stroke, steps: int = 8) -> list[tuple[float, float]]:
    """A stroke's corners joined by `steps` points per segment, in page pixels."""

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    points = [at(*stroke[0])]
    for (xa, ya), (xb, yb) in zip(stroke, stroke[1:], strict=False):
        points += [
            at(xa + (xb - xa) * k / steps, ya + (yb - ya) * k / steps) for k in range(1, steps + 1)
        ]
    return points


def test_models_view_shows_the_rollout_line(page, site) -> None:
    """A shadow on the default route: the Models view says how often it agrees with the
    champion on live requests, and each version's live figures."""
    registry = site["registry"]
    registry.set_alias("mnist", "champion", 2)
    registry.set_shadow("mnist", 1)
    try:
        _wait_every_worker(site, "mnist", lambda m: (m.get("shadow") or {}).get("serving") == 1,
                           "shadow v1 loaded")  # fmt: skip
        x = load_dataset("mnist", site["env"]["MNIST_DATA_DIR"]).x_test[:30]
        for image in x:
            body = {"instances": [image.tolist()], "scale": "unit"}
            r = requests.post(f"{site['url']}/v1/models/mnist/predict", json=body, timeout=10)
            assert r.status_code == 200 and r.headers["X-Model-Version"] == "2"
        # Each worker adds its live figures to the shared ones every LIVE_FIGURES_FLUSH_SECONDS:
        # wait until both workers' 30 comparisons (or drops) are in, then look.
        deadline = time.monotonic() + 15
        while True:
            live = requests.get(f"{site['url']}/v1/models/mnist", timeout=10).json()["live"]
            compared = (live["shadows"].get("1") or {}).get("requests", 0)
            if compared + live["shadow_dropped"] == 30 and compared:
                break
            assert time.monotonic() < deadline, live
            time.sleep(0.1)
        _open(page, site, "models")
        rollout = page.locator("#models-rollout")
        _refresh_until(page, f"#models-rollout:has-text('of {compared} live requests')")
        text = rollout.inner_text()
        assert re.search(r"v1 agrees with champion on [0-9.]+ % of [0-9,]+ live requests", text)
        assert "Live: " in text and "v2 " in text, text
    finally:
        registry.clear_shadow("mnist")
        registry.delete_alias("mnist", "champion")


def _wait_every_worker(site, model: str, check, what: str) -> None:
    """Until `check(the model's /readyz entry)` holds in both gunicorn workers: the page shows
    whichever worker answers its request, so a view can flip back until both have."""
    wait_for(lambda: site["inference"].every_worker(check, model=model), 15, what=what)


def _refresh_until(page, selector: str, timeout_s: float = 15.0) -> None:
    """Click the Models view's Refresh until `selector` shows: each worker picks registry
    changes up on its own poll, and the page asks whichever worker answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.click("#models-refresh")
        try:
            page.wait_for_selector(selector, timeout=1000)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def test_models_view_shows_what_each_version_gets_under_a_split(page, site) -> None:
    """v1 pinned as the default, the split 90/10 over v2 and v3, v4 the shadow: the Models view
    says the default gets nothing under the split, each split version its share, the shadow,
    and the draw view's default names the split."""
    registry = site["registry"]
    ds = load_dataset("mnist", site["env"]["MNIST_DATA_DIR"])
    tiny = {"model": "split", "hidden_layers": [8], "epochs": 1, "train_limit": 500}
    assert [_publish(registry, ds, {**tiny, "seed": seed}) for seed in (1, 2, 3, 4)] == [1, 2, 3, 4]
    registry.pin("split", 1)
    registry.set_traffic("split", [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}])
    registry.set_shadow("split", 4)
    _wait_every_worker(site, "split", lambda m: [r.get("serving") for r in m.get("traffic") or []]
                       == [2, 3] and (m.get("shadow") or {}).get("serving") == 4,
                       "the split and the shadow")  # fmt: skip
    _open(page, site, "models/split")
    assert page.locator("#models-model").input_value() == "split"  # the deep link chose it
    _refresh_until(page, "#versions-table tr[data-version='4'] td.traffic:text-is('shadow')")
    cells = {
        v: page.locator(f"#versions-table tr[data-version='{v}'] td.traffic") for v in (1, 2, 3, 4)
    }
    assert cells[1].inner_text() == "default (no traffic under the split)"
    assert cells[2].inner_text() == "90 % of traffic"
    assert cells[3].inner_text() == "10 % of traffic"
    assert [cells[v].get_attribute("data-share") for v in (1, 2, 3, 4)] == ["0", "90", "10", "0"]
    default_badge = page.locator("#versions-table tr[data-version='1'] .badge.default")
    assert "idle" in default_badge.get_attribute("class")
    assert "traffic split decides" in page.text_content("#models-summary")
    page.click("#tab-draw")
    page.select_option("#draw-model", "split")
    page.wait_for_selector(
        "#draw-version option[value=default]:text-is('default (split: v2 90 % · v3 10 %)')",
        state="attached",
    )
    # The split gone: the pinned default takes all the traffic again.
    registry.clear_traffic("split")
    _wait_every_worker(site, "split", lambda m: "traffic" not in m, "the split cleared")
    page.click("#tab-models")
    _refresh_until(page, "#versions-table tr[data-version='1'] td.traffic[data-share='100']")
    assert cells[1].inner_text() == "all traffic"
    assert cells[2].inner_text() == "–"


def _post_sweep(site, body: dict) -> str:
    r = requests.post(f"{site['trainer_url']}/v1/sweeps", json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["sweep_id"]


def _sweep(site, sweep_id: str) -> dict:
    r = requests.get(f"{site['trainer_url']}/v1/sweeps/{sweep_id}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _trial_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#trials-table tbody tr",
        "rows => rows.map(r => ({number: Number(r.dataset.trial), status: r.dataset.status,"
        " value: r.dataset.value === '' ? null : Number(r.dataset.value)}))",
    )


def _wait_panel_status(page, site, sweep_id: str, status: str, timeout_ms: float) -> None:
    try:
        page.wait_for_function(
            "([id, s]) => { const p = document.querySelector('#sweep-panel');"
            " return p.dataset.sweep === id && p.dataset.status === s; }",
            arg=[sweep_id, status],
            timeout=timeout_ms,
        )
    except Exception as exc:
        shown = page.text_content("#sweep-summary")
        raise AssertionError(
            f"sweep never {status} on the page: {shown}\n{_sweep(site, sweep_id)}\n{_logs(site)}"
        ) from exc


def test_sweeps_view_follows_a_sweep_sorts_its_trials_and_plots_them(page, site) -> None:
    """A real grid sweep with the median pruner (the tiny learning rate is pruned after its
    first epoch): the page follows it live until it finishes; the table has a row per trial
    and sorts by the objective; the curves chart draws one curve per trial that reported, a ×
    per pruned trial and one highlighted best; each parameter's chart has a point per trial
    with an objective or a pruned value. A log-uniform parameter gets a log axis. A running
    sweep is canceled from the page."""
    # seed 1 orders this grid good, good, then the tiny learning rates (tests/integration).
    body = {
        "base": {"model": "swept", "hidden_layers": [16], "epochs": 3, "train_limit": 1000,
                 "augment": False},
        "space": {"learning_rate": [0.01, 1e-6], "seed": [1, 2, 3]},
        "parallelism": 1, "pruner": "median", "seed": 1, "promote_to": "candidate", "keep": 1,
    }  # fmt: skip
    sweep_id = _post_sweep(site, body)
    _open(page, site, "sweeps")
    page.click(f"#sweeps-table tr[data-sweep='{sweep_id}'] button")
    _wait_panel_status(page, site, sweep_id, "running", 15_000)
    _wait_panel_status(page, site, sweep_id, "finished", 120_000)  # live, without a reload
    truth = _sweep(site, sweep_id)
    assert truth["status"] == "finished"
    trials = truth["trials"]
    assert len(trials) == 6

    rows = _trial_rows(page)
    assert [r["number"] for r in rows] == [t["number"] for t in trials]
    assert [r["status"] for r in rows] == [t["status"] for t in trials]
    best = truth["best"]
    assert page.locator("#trials-table tr.is-best").get_attribute("data-trial") == str(
        best["number"]
    )
    # Sort by the objective (click its header): best first, trials without a value last, ties
    # in trial order.
    page.click("#trials-table th[data-sort=value] button")
    scored = [t for t in trials if t["value"] is not None]
    unscored = [t["number"] for t in trials if t["value"] is None]
    best_first = [t["number"] for t in sorted(scored, key=lambda t: (-t["value"], t["number"]))]
    assert [r["number"] for r in _trial_rows(page)] == best_first + unscored
    assert page.get_attribute("#trials-table th[data-sort=value]", "aria-sort") == "descending"
    page.click("#trials-table th[data-sort=value] button")  # again: worst first
    worst_first = [t["number"] for t in sorted(scored, key=lambda t: (t["value"], t["number"]))]
    assert [r["number"] for r in _trial_rows(page)] == worst_first + unscored
    assert page.get_attribute("#trials-table th[data-sort=value]", "aria-sort") == "ascending"

    # The curves: one per trial that reported, pruned ones marked, the best highlighted.
    reported = [t for t in trials if t["curve"]]
    pruned = [t for t in trials if t["pruned"]]
    assert len(pruned) >= 3, trials  # the three tiny learning rates
    curves = page.locator("#sweep-curves")
    assert curves.get_attribute("data-curves") == str(len(reported))
    assert page.locator("#sweep-curves g.curve").count() == len(reported)
    assert page.locator("#sweep-curves g.curve.pruned .prune-mark").count() == len(pruned)
    assert curves.get_attribute("data-pruned") == str(len(pruned))
    assert page.locator("#sweep-curves g.curve.best").get_attribute("data-trial") == str(
        best["number"]
    )
    # Each parameter against the objective: a point per finished or pruned trial.
    plotted = [t for t in trials if t["value"] is not None or (t["pruned"] and t["curve"])]
    for name in ("learning_rate", "seed"):
        plot = page.locator(f"#sweep-params svg[data-param={name}]")
        assert plot.get_attribute("data-scale") == "categorical"
        assert plot.get_attribute("data-points") == str(len(plotted))
        assert plot.locator(".point").count() == len(plotted)
        assert plot.locator(".point.best").count() == 1
        assert plot.locator(".point.pruned").count() == len(pruned)
    assert f"Alias candidate: {truth['promotion']['reason']}" in page.text_content("#sweep-best")
    # keep 1: every published trial version but the best was deleted; the table says so and
    # links only the version that is still there.
    published = [t["model_version"] for t in trials if t["model_version"]]
    removed = truth["removed_versions"]
    assert len(published) >= 2 and sorted(removed) == sorted(
        v for v in published if v != best["model_version"]
    ), truth
    for t in trials:
        cell = page.locator(f"#trials-table tr[data-trial='{t['number']}'] td").last
        if t["model_version"] in removed:
            assert cell.get_attribute("data-removed") == "true"
            assert cell.inner_text() == f"v{t['model_version']} removed"
            assert cell.locator("a").count() == 0
        elif t["model_version"]:
            assert cell.get_attribute("data-removed") is None
            assert cell.locator("a").get_attribute("href") == "#models/swept"
    assert site["registry"].versions("swept") == [best["model_version"]]
    report = page.get_attribute("#sweep-report", "href")
    assert report == f"{site['trainer_url']}/v1/sweeps/{sweep_id}/report.png"
    answer = requests.get(report, timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    page.screenshot(path=str(site["tmp"] / "sweeps-view.png"), full_page=True)
    # The Models view links each trial version to its sweep.
    page.click("#tab-models")
    page.select_option("#models-model", "swept")
    winner = page.locator(f"#versions-table tr[data-version='{best['model_version']}']")
    # A trial is staged (never latest nor the default until promoted): the row says so.
    assert winner.locator(".badge.staged").inner_text() == "staged (sweep trial)"
    link = winner.locator("a.sweep-link")
    assert link.get_attribute("href") == f"#sweeps/{sweep_id}"
    assert link.inner_text() == f"sweep {sweep_id[:8]} #{best['number']}"
    link.click()
    _wait_panel_status(page, site, sweep_id, "finished", 15_000)
    # The Train view's recent jobs: a pruned trial says so and names its sweep and trial.
    page.click("#tab-train")
    last = trials[-1]  # the last trial run, among the ten most recent jobs
    assert last["status"] == "pruned", trials
    row = page.locator(f"#jobs-list li:has(code:text-is('{last['job_id'][:8]}'))")
    row.wait_for()
    assert row.locator("strong.job-status").inner_text() == (
        f"pruned (sweep {sweep_id[:8]} #{last['number']})"
    )
    page.goto(f"{site['url']}/#sweeps/{sweep_id}")
    _wait_panel_status(page, site, sweep_id, "finished", 15_000)
    # On a phone the view fits the width (the tables scroll inside their own box).
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.wait_for_function(  # the curves are drawn again at the new width
        "() => document.querySelector('#sweep-curves svg').viewBox.baseVal.width <= 375"
    )
    page.screenshot(path=str(site["tmp"] / "sweeps-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1100, "height": 900})

    # A log-uniform parameter: a log axis.
    log_id = _post_sweep(site, {
        "base": {"model": "swept", "hidden_layers": [16], "epochs": 2, "train_limit": 1000},
        "space": {"learning_rate": {"log_uniform": [1e-3, 1e-2]}},
        "trials": 2, "sampler": "random", "seed": 3,
    })  # fmt: skip
    page.goto(f"{site['url']}/#sweeps/{log_id}")  # a deep link opens the sweep
    _wait_panel_status(page, site, log_id, "finished", 90_000)
    plot = page.locator("#sweep-params svg[data-param=learning_rate]")
    assert plot.get_attribute("data-scale") == "log"
    assert plot.get_attribute("data-points") == "2"
    assert page.locator("#sweep-curves g.curve").count() == 2

    # Cancel a running sweep from the page.
    long_id = _post_sweep(site, {
        "base": {"model": "swept-long", "hidden_layers": [256, 256], "epochs": 1000,
                 "train_limit": 3000},
        "space": {"seed": [1, 2]}, "parallelism": 1,
    })  # fmt: skip
    page.goto(f"{site['url']}/#sweeps/{long_id}")
    page.wait_for_function(
        "() => document.querySelectorAll('#sweep-curves g.curve.running').length === 1",
        timeout=60_000,
    )
    page.click("#sweep-cancel")
    _wait_panel_status(page, site, long_id, "canceled", 15_000)
    assert page.locator("#sweep-cancel").is_hidden()
    page.wait_for_selector(f"#sweeps-table tr[data-sweep='{long_id}'][data-status=canceled]")
