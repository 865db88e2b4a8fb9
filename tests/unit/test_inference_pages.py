"""The web page, its static files and the report-file route, through Flask's test client on a
real temporary registry (tiny untrained models, reports drawn from synthetic numbers)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.config import TrainConfig
from shared.metrics import evaluate
from shared.modelfile import save_model
from shared.registry import Registry
from shared.reports import FIGURE_PIXELS, REPORT_FILES, write_report
from shared.web.settings import SettingsError
from tests import REPO_ROOT

INFERENCE_DIR = REPO_ROOT / "inference_service"


def publish(registry: Registry, tmp_path: Path, *, report: bool = True, seed: int = 0) -> int:
    config = TrainConfig(model="digits", hidden_layers=[8], seed=seed)
    weights = tmp_path / f"w-{uuid.uuid4().hex}.npz"
    save_model(weights, config.build_model())
    extra = None
    metrics = {"test_accuracy": 0.5}
    if report:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, 50)
        proba = rng.dirichlet(np.ones(10), 50).astype(np.float32)
        x = rng.random((50, 784), dtype=np.float32)
        full = evaluate(proba, y)
        history = [{"epoch": 1, "epochs": 1, "train_loss": 1.0, "train_accuracy": 0.5,
                    "val_loss": 1.1, "val_accuracy": 0.4, "learning_rate": 1e-3, "seconds": 1.0}]  # fmt: skip
        extra = write_report(
            tmp_path / f"r-{uuid.uuid4().hex}",
            history=history,
            metrics=full,
            x_test=x,
            y_test=y,
            test_proba=proba,
        )
        metrics = json.loads(extra["report.json"].read_text())["metrics"]
    return registry.publish(
        "digits",
        weights,
        {"config": config.public_dict(), "metrics": metrics},
        extra_files=extra,
    )


# ---- report files -------------------------------------------------------------------------


def test_report_files_are_served_with_their_type_and_caching(
    inference_client, registry, tmp_path
) -> None:
    v = publish(registry, tmp_path)
    folder = registry.weights_path("digits", v).parent
    for name in REPORT_FILES:
        r = inference_client.get(f"/v1/models/digits/versions/{v}/report/{name}")
        assert r.status_code == 200, (name, r.data[:200])
        assert r.data == (folder / name).read_bytes()
        expected = "application/json" if name.endswith(".json") else "image/png"
        assert r.mimetype == expected
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Model-Version"] == str(v)
        assert "immutable" in r.headers["Cache-Control"]
        sha = registry.manifest("digits", v)["files"][name]["sha256"]
        assert r.headers["ETag"] == f'"{sha}"'
        again = inference_client.get(
            f"/v1/models/digits/versions/{v}/report/{name}", headers={"If-None-Match": f'"{sha}"'}
        )
        assert again.status_code == 304 and again.data == b""
    report = inference_client.get(f"/v1/models/digits/versions/{v}/report/report.json").get_json()
    assert report["metrics"] == registry.manifest("digits", v)["metrics"]

    # Moving references resolve, and must be revalidated.
    v2 = publish(registry, tmp_path, seed=1)
    for ref in ("latest", "default"):
        r = inference_client.get(f"/v1/models/digits/versions/{ref}/report/learning_curves.png")
        assert r.status_code == 200 and r.headers["X-Model-Version"] == str(v2)
        assert r.headers["Cache-Control"] == "no-cache"


def test_only_files_listed_in_the_manifest(inference_client, registry, tmp_path) -> None:
    v = publish(registry, tmp_path)
    folder = registry.weights_path("digits", v).parent
    (folder / "stray.png").write_bytes(b"not listed")  # present on disk, not in the manifest
    base = f"/v1/models/digits/versions/{v}/report"
    for name in ("weights.npz", "manifest.json", "stray.png", "nope.png", ".hidden", "a%2Fb",
                 "..%2Fstate.json", "%2e%2e"):  # fmt: skip
        r = inference_client.get(f"{base}/{name}")
        assert r.status_code == 404, name
        assert r.get_json()["error"]["code"] in ("file_not_found", "not_found"), name
    assert inference_client.get(f"{base}/../../state.json").status_code == 404
    assert (
        inference_client.get("/v1/models/digits/versions/9/report/report.json").status_code == 404
    )
    assert inference_client.get("/v1/models/other/versions/1/report/report.json").status_code == 404
    assert inference_client.post(f"{base}/report.json").status_code == 405
    # A version published without a report has no files to serve.
    bare = publish(registry, tmp_path, report=False)
    r = inference_client.get(f"/v1/models/digits/versions/{bare}/report/report.json")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "file_not_found"


def test_a_tampered_report_file_is_409_never_served(inference_client, registry, tmp_path) -> None:
    v = publish(registry, tmp_path)
    path = registry.weights_path("digits", v).parent / "per_class.png"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    r = inference_client.get(f"/v1/models/digits/versions/{v}/report/per_class.png")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "version_broken"


def test_version_listing_names_the_files(inference_client, registry, tmp_path) -> None:
    publish(registry, tmp_path)
    publish(registry, tmp_path, report=False)
    rows = inference_client.get("/v1/models/digits").get_json()["versions"]
    assert [r["files"] for r in rows] == [sorted(REPORT_FILES), []]


# ---- the page -----------------------------------------------------------------------------


def _config(html: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="digitflow-config">(.*?)</script>', html, re.S
    )
    assert match, "page config missing"
    return json.loads(match.group(1))


def test_page_embeds_its_config_under_a_strict_csp(make_inference_app, monkeypatch) -> None:
    monkeypatch.delenv("TRAINER_PUBLIC_URL", raising=False)
    monkeypatch.delenv("TRAINER_PORT", raising=False)
    app = make_inference_app()
    r = app.test_client().get("/", base_url="http://digits.example:8000")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    config = _config(html)
    # Unset: the trainer on the page's host, port 8001.
    assert config["trainer_url"] == "http://digits.example:8001"
    assert set(config["presets"]) >= {"default", "seed-basic", "seed-deep", "best"}
    assert config["defaults"]["hidden_layers"] == TrainConfig().hidden_layers
    assert "adam" in config["choices"]["optimizer"]
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert "connect-src 'self' http://digits.example:8001" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # Accessible basics: language, labelled controls, live prediction.
    assert '<html lang="en">' in html
    for control in ("draw-model", "draw-version", "f-epochs", "f-preset", "compare-a"):
        assert f'for="{control}"' in html, control
    assert 'aria-live="polite"' in html and 'name="viewport"' in html


def test_trainer_public_url_is_configurable_and_checked(make_inference_app, monkeypatch) -> None:
    app = make_inference_app(TRAINER_PUBLIC_URL="https://train.example/")
    r = app.test_client().get("/")
    assert _config(r.get_data(as_text=True))["trainer_url"] == "https://train.example"
    assert "connect-src 'self' https://train.example" in r.headers["Content-Security-Policy"]
    monkeypatch.setenv("TRAINER_PUBLIC_URL", "http://10.0.0.5:9001")
    r = make_inference_app().test_client().get("/")
    assert _config(r.get_data(as_text=True))["trainer_url"] == "http://10.0.0.5:9001"
    for bad in ("trainer:8001", "ftp://x", "http://x/?a=1"):
        with pytest.raises(SettingsError, match="TRAINER_PUBLIC_URL"):
            make_inference_app(TRAINER_PUBLIC_URL=bad)


def test_static_files_exist_and_nothing_comes_from_elsewhere(inference_client) -> None:
    html = inference_client.get("/").get_data(as_text=True)
    local = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {"/static/digitflow.js", "/static/digitflow.css", "/static/favicon.svg"} <= set(local)
    for url in local:
        r = inference_client.get(url)
        assert r.status_code == 200, url
    assert inference_client.get("/static/digitflow.js").mimetype in (
        "text/javascript",
        "application/javascript",
    )
    assert inference_client.get("/static/digitflow.css").mimetype == "text/css"
    # No CDN, no build step: no external URL in the template or the static files.
    for path in [INFERENCE_DIR / "templates" / "index.html", *(INFERENCE_DIR / "static").iterdir()]:
        text = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path
    assert inference_client.get("/static/missing.js").status_code == 404


def test_report_figure_sizes_match_the_page(inference_client) -> None:
    """The page reserves each figure's space from these sizes; keep them in step."""
    js = (INFERENCE_DIR / "static" / "digitflow.js").read_text()
    for name, (w, h) in FIGURE_PIXELS.items():
        assert re.search(rf'"{re.escape(name)}",\s*"[^"]+",\s*{w},\s*{h}\]', js), name
