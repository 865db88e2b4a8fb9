"""Explain latency (issue 14): one image, the default architecture (784-512-256-10), 32 steps.

    python -m benchmarks.explain            # ~1 min; results/explain-<date>.json
    python -m benchmarks.explain --quick    # a few seconds per point

Measures, on real MNIST test images (random pixels if the data set is missing):

1. in process, one BLAS thread like a gunicorn worker: `integrated_gradients` for one image
   (the frozen copy, 33 forward and backward rows, the trapezoid sum), next to the one-image
   inference pass it explains;
2. over HTTP, the inference service under its default gunicorn configuration, one client at a
   time: ``POST /v1/models/mnist/explain`` next to ``/predict`` on the same server, p50 / p95.

The completeness gaps of the explained images are recorded too. Latency does not depend on the
weights, so the model is the default architecture, untrained (seeded), published into a
temporary registry that is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_info, markdown_table, now_iso, write_result
from benchmarks.serving import (
    GUNICORN_CONF,
    MODEL_NAME,
    OURS_APP,
    PREDICT_PATH,
    Server,
    http_post,
    json_body,
    publish_model,
    running,
    sample_images,
)
from shared.config import TrainConfig
from shared.modelfile import save_model
from shared.nn.explain import DEFAULT_STEPS, integrated_gradients

EXPLAIN_PATH = f"/v1/models/{MODEL_NAME}/explain"
#: Steps whose completeness gaps are recorded (the default and the tested tolerance's 64).
GAP_STEPS = (DEFAULT_STEPS, 64)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 / p95 / mean of `samples` (seconds) in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def bench_in_process(model: Any, x01: np.ndarray, repeats: int) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        explain, predict = [], []
        for i in range(repeats):
            one = x01[i % len(x01)][None]
            started = time.perf_counter()
            integrated_gradients(model, one, int(model.predict_proba(one).argmax()))
            explain.append(time.perf_counter() - started)
            started = time.perf_counter()
            model.predict_proba(one)
            predict.append(time.perf_counter() - started)
    return {
        "explain": percentiles(explain),
        "predict": percentiles(predict),
        "relative_gap": {steps: relative_gaps(model, x01, steps) for steps in GAP_STEPS},
    }


def relative_gaps(model: Any, x01: np.ndarray, steps: int) -> dict[str, float]:
    """|completeness gap| / (|F(x) - F(x')| + 1) over the images: max and median."""
    target = model.predict_proba(x01).argmax(axis=1)
    found = integrated_gradients(model, x01, target, steps=steps)
    relative = np.abs(found.completeness_gap) / (np.abs(found.logit_difference) + 1)
    return {"max": float(relative.max()), "median": float(np.median(relative))}


def bench_http(registry: Path, x: np.ndarray, repeats: int, log_path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running(Server(OURS_APP, registry, log_path)) as server:
        bodies = [json_body(x[i : i + 1]) for i in range(len(x))]
        for label, path in (("explain", EXPLAIN_PATH), ("predict", PREDICT_PATH)):
            for body in bodies[:5]:  # warm-up: load the model in both workers
                status, answer = http_post(server.port, path, body, "application/json")
                if status != 200:
                    raise RuntimeError(f"{path}: {status} {answer[:300]!r}")
            samples = []
            for i in range(repeats):
                started = time.perf_counter()
                status, _ = http_post(
                    server.port, path, bodies[i % len(bodies)], "application/json"
                )
                samples.append(time.perf_counter() - started)
                assert status == 200
            out[label] = percentiles(samples)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args(argv)
    repeats = 30 if args.quick else 300
    x = sample_images(64)
    x01 = (x / 255.0).astype(np.float32)
    config = TrainConfig()
    model = config.build_model(mean=x01.mean(axis=0))
    results: dict[str, Any] = {
        "benchmark": "explain",
        "date": now_iso(),
        "machine": machine_info(),
        "model": f"784-{'-'.join(map(str, config.hidden_layers))}-10 (default, untrained)",
        "steps": DEFAULT_STEPS,
        "gunicorn": GUNICORN_CONF,
        "in_process": bench_in_process(model, x01, repeats),
    }
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as tmp:
        weights = Path(tmp) / "weights.npz"
        save_model(weights, model)
        registry = Path(tmp) / "models"
        registry.mkdir()
        publish_model(registry, weights)
        results["http_c1"] = bench_http(registry, x, repeats, Path(tmp) / "server.log")
    path = write_result("explain", results)
    ip, web = results["in_process"], results["http_c1"]
    print(
        markdown_table(
            ["one image", "explain p50 / p95 (ms)", "predict p50 / p95 (ms)"],
            [
                [
                    "in process (1 BLAS thread)",
                    f"{ip['explain']['p50_ms']} / {ip['explain']['p95_ms']}",
                    f"{ip['predict']['p50_ms']} / {ip['predict']['p95_ms']}",
                ],
                [
                    "HTTP, c=1",
                    f"{web['explain']['p50_ms']} / {web['explain']['p95_ms']}",
                    f"{web['predict']['p50_ms']} / {web['predict']['p95_ms']}",
                ],
            ],
        )  # fmt: skip
    )
    for steps, gap in ip["relative_gap"].items():
        print(f"relative completeness gap, {steps} steps, {len(x01)} images: max {gap['max']:.2e}, "
              f"median {gap['median']:.2e}")  # fmt: skip
    print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
