"""Never a 500 for bad input: seeded random garbage against every POST route and odd paths.

A small, dependency-free fuzzer (the OpenAPI-driven one comes later): random JSON values of every
type and nesting, truncated/mutated valid bodies, random bytes under every content type. Every
answer must be a documented 4xx with the JSON error shape, or a 200 with a well-formed body.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from inference_service.app import create_app
from shared.registry import Registry
from tests.cache_support import stop_polling
from tests.service_support import publish

ALLOWED = {200, 400, 404, 405, 409, 413, 415, 422}
POST_ROUTES = [
    "/v1/models/digits/predict",
    "/v1/models/digits/versions/1/predict",
    "/v1/models/digits/versions/latest/predict",
    "/v2/models/digits/infer",
    "/v2/models/digits/versions/1/infer",
]
CONTENT_TYPES = [
    "application/json",
    None,
    "image/png",
    "image/jpeg",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "text/plain",
    "application/json; charset=latin-1",
]


@pytest.fixture(scope="module")
def served_client(tmp_path_factory: pytest.TempPathFactory):
    """The inference app serving one "digits" model, shared by every garbage loop of this module
    (nothing here publishes or pins, so no test can change what another sees)."""
    tmp: Path = tmp_path_factory.mktemp("robust")
    registry = Registry(tmp / "models")
    publish(registry, tmp)
    app = create_app(
        {"MODEL_REGISTRY_DIR": str(registry.root), "REGISTRY_POLL_SECONDS": 0, "LOG_LEVEL": "ERROR"}
    )
    yield app.test_client()
    stop_polling(app.extensions["digitflow"].cache)


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 255, 256, 2**63 - 1, -(2**63), 10**30])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308, 3.14, 255.0001])
    if kind == 4:
        return rng.choice(["", "input", "FP32", "UINT8", "raw", "unit", "\u0000", "é" * 10])
    if kind == 5:
        return rng.choice([[], {}, [0] * 784, [[0] * 28] * 28])
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["instances", "scale", "inputs", "outputs", "id", "parameters", "name", "shape"]
    keys += ["datatype", "data", "binary_data_size", "binary_data_output", "binary_data", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def valid_bodies() -> list[bytes]:
    img = list(range(0, 784, 1))
    img = [v % 256 for v in img]
    return [
        orjson.dumps({"instances": [img]}),
        orjson.dumps({"instances": [img], "scale": "raw"}),
        orjson.dumps(
            {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8", "data": img}]}
        ),
    ]


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[pos : pos + rng.randrange(1, 50)]
        elif op == 1:
            data[pos:pos] = rng.choice([b"[", b"]", b"{", b"}", b",", b'"', b"-", b"e9", b"nul"])
        elif op == 2 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data = data[:pos]
    return bytes(data)


def check(resp) -> None:
    assert resp.status_code in ALLOWED, (resp.status_code, resp.data[:300])
    if resp.status_code != 200:
        body = orjson.loads(resp.data)
        assert set(body) == {"error"}
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)


def test_random_json_never_500(served_client) -> None:
    rng = random.Random(1234)
    for i in range(400):
        route = POST_ROUTES[i % len(POST_ROUTES)]
        payload = random_json(rng)
        if rng.random() < 0.5:
            # put the garbage where the service looks for data
            payload = rng.choice(
                [
                    {"instances": payload},
                    {"instances": [payload]},
                    {"inputs": [payload]},
                    {
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [1, 784],
                                "datatype": "FP32",
                                "data": payload,
                            }
                        ]
                    },
                    {"inputs": [{"name": "input", "shape": payload, "datatype": "UINT8"}]},
                    {"instances": [[0] * 784], "scale": payload},
                    {"inputs": [], "outputs": payload},
                ]
            )
        body = json.dumps(payload).encode()  # stdlib: also encodes ints beyond 64 bits
        check(served_client.post(route, data=body, content_type="application/json"))


def test_mutated_bodies_and_content_types_never_500(served_client) -> None:
    rng = random.Random(99)
    bodies = valid_bodies()
    for i in range(400):
        route = POST_ROUTES[i % len(POST_ROUTES)]
        body = mutate(rng, rng.choice(bodies)) if i % 3 else rng.randbytes(rng.randrange(200))
        ctype = rng.choice(CONTENT_TYPES)
        headers = {}
        if rng.random() < 0.2:
            headers["Inference-Header-Content-Length"] = rng.choice(
                ["0", "5", str(len(body)), "-1", "x", "99999999999999999999", " 3"]
            )
        kwargs = {"content_type": ctype} if ctype else {}
        check(served_client.post(route, data=body, headers=headers, **kwargs))


def test_binary_tensor_garbage_never_500(served_client) -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        dtype = rng.choice(["<f4", "u1", "<f8", "<i8"])
        n = int(rng.integers(0, 3))
        raw = rng.bytes(int(rng.integers(0, 784 * 4 * 2)))
        if rng.random() < 0.5:
            raw = (rng.random((n, 784)) * rng.choice([1, 2, 300])).astype(dtype).tobytes()
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [int(rng.integers(-1, 3)), 784],
                        "datatype": str(rng.choice(["FP32", "UINT8", "FP64", "BYTES"])),
                        "parameters": {"binary_data_size": int(rng.integers(0, 2 * len(raw) + 1))},
                    }
                ],
                "parameters": {"binary_data_output": bool(rng.random() < 0.5)},
            }
        )
        check(
            served_client.post(
                "/v2/models/digits/infer",
                data=header + raw,
                headers={"Inference-Header-Content-Length": str(len(header))},
            )
        )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/%2e%2e",
        "/v1/models/..",
        "/v1/models/a%00b",
        "/v1/models/" + "a" * 300,
        "/v1/models/digits/versions/%2e%2e",
        "/v1/models/digits/versions/1e3",
        "/v1/models/digits/versions/" + "9" * 400,
        "/v1/models/digits/versions/latest%2F..",
        "/v2/models/%ff",
        "/v2/models/digits/versions/-0/ready",
        "/v1/models/%F0%9F%98%80",
    ],
)
def test_odd_paths_are_404_json(served_client, path: str) -> None:
    resp = served_client.get(path)
    assert resp.status_code == 404, resp.data
    check(resp)
