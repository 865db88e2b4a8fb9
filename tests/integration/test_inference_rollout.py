"""Traffic splits and shadow versions on a REAL gunicorn inference service (2 sync workers):
the split's observed shares, sticky routing keys, a broken candidate getting nothing (and /readyz
saying why), and a shadow that never changes an answer — even a damaged one — while its
agreement figures are summed over the workers in /metrics and GET /v1/models/<name>."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from shared.registry import Registry
from tests.service_support import BATCH, Service, flip_weights_byte, inference_service, publish

pytestmark = [pytest.mark.slow]

SPLIT_REQUESTS = 2000
#: Observed share within this many standard deviations of the binomial (4σ: a false failure
#: about once in 16,000 runs).
SIGMAS = 4


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, Registry]]:
    registry = Registry(tmp_path / "models")
    registry.root.mkdir(parents=True)
    assert publish(registry, tmp_path, seed=1) == 1
    assert publish(registry, tmp_path, seed=2) == 2
    registry.pin("digits", 1)
    with inference_service(registry.root, tmp_path) as svc:
        yield svc, registry


def post(svc: Service, key: str | None = None, path: str = "/v1/models/digits/predict"):
    headers = {} if key is None else {"X-Routing-Key": key}
    return requests.post(svc.base + path, json={"instances": BATCH[:1].tolist()}, headers=headers,
                         timeout=10)  # fmt: skip


def versions_of(calls: list[Callable[[], requests.Response]]) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda call: call(), calls))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers[:3]]
    return [r.headers["X-Model-Version"] for r in answers]


def wait_for(check: Callable[[], bool], what: str, svc: Service, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} not seen after {seconds}s:\n{svc.log()}"
        time.sleep(0.05)


def shadowing(version: int | None) -> Callable[[dict], bool]:
    """A model's /readyz entry shadows `version` (None: no shadow served)."""
    return lambda model: (model.get("shadow") or {}).get("serving") == version


def test_a_90_10_split_is_served_in_those_shares_and_keys_stick(service) -> None:
    svc, registry = service
    registry.set_alias("digits", "champion", 1)
    registry.set_alias("digits", "candidate", 2)
    registry.set_traffic(
        "digits", [{"version": "champion", "weight": 90}, {"version": "candidate", "weight": 10}]
    )

    def split(model: dict) -> bool:
        return [r.get("serving") for r in model.get("traffic") or []] == [1, 2]

    wait_for(lambda: svc.every_worker(split, model="digits"), "the split", svc)

    got = Counter(versions_of([lambda: post(svc)] * SPLIT_REQUESTS))
    assert set(got) == {"1", "2"}
    sigma = math.sqrt(SPLIT_REQUESTS * 0.1 * 0.9)
    assert abs(got["2"] - SPLIT_REQUESTS * 0.1) <= SIGMAS * sigma, got

    # Sticky: one key, one version, in every worker, while the split is unchanged.
    for key in ("alice", "bob", "carol"):
        assert len(set(versions_of([lambda k=key: post(svc, k)] * 200))) == 1
    # ... and the keys spread over both sides (the same V2 route follows the split too).
    seen = versions_of([lambda i=i: post(svc, f"user-{i}") for i in range(300)])
    assert set(seen) == {"1", "2"}
    v2 = {"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 784],
                      "data": BATCH[0].tolist()}]}  # fmt: skip
    infer = [requests.post(svc.base + "/v2/models/digits/infer", json=v2, timeout=10)
             for _ in range(40)]  # fmt: skip
    assert {r.headers["X-Model-Version"] for r in infer} == {"1", "2"}

    # Promote: the alias moves, the traffic follows; back to the default when the split goes.
    registry.set_alias("digits", "champion", 2)
    wait_for(lambda: set(versions_of([lambda: post(svc)] * 40)) == {"2"}, "the promotion", svc)
    registry.clear_traffic("digits")
    wait_for(lambda: set(versions_of([lambda: post(svc)] * 40)) == {"1"}, "the default", svc)


def test_a_broken_candidate_gets_no_traffic_and_readyz_explains(service) -> None:
    svc, registry = service
    registry.set_traffic("digits", [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}])
    wait_for(lambda: set(versions_of([lambda: post(svc)] * 40)) == {"1", "2"}, "the split", svc)

    flip_weights_byte(registry.weights_path("digits", 2).parent)  # damaged on disk, in place

    def no_traffic(model: dict) -> bool:
        routes = model.get("traffic") or []
        return len(routes) == 2 and routes[1]["serving"] is None

    wait_for(lambda: svc.every_worker(no_traffic, model="digits"), "the broken route dropped", svc)
    assert set(versions_of([lambda: post(svc)] * 200)) == {"1"}
    for view in svc.worker_views().values():
        assert view["ready"] is True
        problem = view["models"]["digits"]["traffic"][1]["problem"]
        assert problem.startswith("gets no traffic") and "sha256" in problem, problem


def test_the_shadow_never_changes_an_answer_and_its_figures_add_up(service) -> None:
    svc, registry = service
    before = [post(svc) for _ in range(10)]
    registry.set_shadow("digits", 2)
    wait_for(lambda: svc.every_worker(shadowing(2), model="digits"), "the shadow", svc)

    with_shadow = [post(svc) for _ in range(60)]
    assert {(r.status_code, r.headers["X-Model-Version"]) for r in with_shadow} == {(200, "1")}
    assert {r.content for r in with_shadow} == {before[0].content}  # byte for byte

    def compared() -> dict:
        return svc.get("/v1/models/digits").json()["live"]["shadows"].get("2") or {}

    wait_for(lambda: compared().get("requests") == 60, "60 comparisons", svc)
    figures = compared()
    assert figures["images"] == 60 and sum(map(sum, figures["confusion"])) == 60
    assert len(figures["confusion"]) == 10 and 0.0 <= figures["agreement"] <= 1.0
    assert set(figures["mean_confidence"]) == {"served", "shadow"}
    live = svc.get("/v1/models/digits").json()["live"]
    assert live["versions"]["1"]["requests"] == 70
    assert sum(live["versions"]["1"]["predicted_classes"]) == 70
    metrics = svc.get("/metrics").text
    assert 'digitflow_shadow_requests_total{model="digits",shadow="2"} 60.0' in metrics
    assert 'digitflow_inference_version_requests_total{model="digits",version="1"} 70.0' in metrics

    # The shadow version damaged on disk: answers unchanged, never an error; it stops shadowing.
    flip_weights_byte(registry.weights_path("digits", 2).parent)
    during = [post(svc) for _ in range(60)]
    assert {(r.status_code, r.content) for r in during} == {(200, before[0].content)}
    wait_for(lambda: svc.every_worker(shadowing(None), model="digits"), "the damaged shadow dropped",
             svc)  # fmt: skip
    shadow = svc.worker_views()
    assert all("not shadowing" in v["models"]["digits"]["shadow"]["problem"]
               for v in shadow.values())  # fmt: skip
    assert {(r.status_code, r.content) for r in [post(svc) for _ in range(20)]} == {
        (200, before[0].content)
    }
