"""Explanations under a REAL gunicorn with threads (gthread: the threads of a worker share one
loaded model): concurrent explain requests for different classes, mixed with predictions, each get
the engine's own answer for their class, complete within the stated tolerance — so an explanation
neither races another nor disturbs the model the predictions use."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.modelfile import load_model
from shared.nn.explain import integrated_gradients
from shared.registry import Registry
from tests.service_support import BATCH, expected_proba, inference_service, publish

pytestmark = [pytest.mark.slow]


def test_concurrent_explanations_on_a_threaded_worker(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    registry.root.mkdir(parents=True)
    assert publish(registry, tmp_path, seed=3) == 1
    x = (BATCH / 255).astype(np.float32)
    model = load_model(registry.weights_path("digits", 1)).model
    want = {t: integrated_gradients(model, x, t, steps=64) for t in range(10)}
    proba = expected_proba(registry, "digits", 1, x)
    env = {"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4"}
    with inference_service(registry.root, tmp_path, **env) as svc:

        def explain(target: int) -> tuple[int, requests.Response]:
            body = {"instances": BATCH.tolist(), "target": target, "steps": 64}
            return target, svc.post("/v1/models/digits/explain", json=body)

        with ThreadPoolExecutor(max_workers=6) as pool:
            explained = list(pool.map(explain, [t % 10 for t in range(40)]))
            predicted = list(pool.map(lambda _: svc.predict(), range(20)))
        log = svc.log(200)
    for target, resp in explained:
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["X-Model-Version"] == "1"
        body = resp.json()
        assert body["target"] == [target] * len(BATCH)
        np.testing.assert_allclose(
            body["attributions"], want[target].attributions, rtol=1e-4, atol=1e-6
        )
        gap, diff = np.array(body["completeness_gap"]), np.array(body["logit_difference"])
        assert (np.abs(gap) <= 1e-2 * (np.abs(diff) + 1)).all(), (target, gap, diff)
    for resp in predicted:
        assert resp.status_code == 200
        np.testing.assert_allclose(resp.json()["probabilities"], proba, rtol=1e-5, atol=1e-6)
    assert "Traceback" not in log
