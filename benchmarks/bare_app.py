"""The baseline of the serving benchmark: a bare Flask endpoint, nothing else.

    gunicorn -c inference_service/gunicorn.conf.py "benchmarks.bare_app:create_app()"

It answers the inference service's single-image predict route with a constant, after parsing the
same JSON body with the same parser (orjson), so the difference between the two under the same
gunicorn configuration and load generator is what the service itself costs: routing to a model,
validation, the forward pass, metrics, building the response.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

#: Shaped like the service's answer to one image (same order of size).
_ANSWER = orjson.dumps(
    {
        "model": "mnist",
        "model_version": 1,
        "predictions": [7],
        "probabilities": [[0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.95, 0.008, 0.014]],
    }
)


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/v1/models/<name>/predict")
    def predict(name: str) -> Response:
        payload = orjson.loads(request.get_data(cache=False))
        if not isinstance(payload, dict) or "instances" not in payload:
            return Response(b'{"error": "bad body"}', status=400, mimetype="application/json")
        return Response(_ANSWER, mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(b'{"ready": true}', mimetype="application/json")

    return app
