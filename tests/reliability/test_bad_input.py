"""Hand-written bad input the other suites do not already cover (they cover malformed JSON, wrong
content types, 413 bodies, JSON too-many-images, NaN/Infinity literals in V1, out-of-range
pixels, wrong shapes, non-image bodies, decompression bombs at the preprocessing level, most
absurd configs and many odd paths: see tests/unit/test_inference_*.py, test_trainer_api_*.py,
test_preprocess.py). Every answer here must be a 4xx JSON error, never a 500, and nothing may be
written anywhere.
"""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from inference_service.app import create_app as create_inference
from shared.registry import Registry
from tests.service_support import BATCH, png_header_only, publish
from tests.trainer_support import SMALL
from trainer_service.api.app import create_app as create_trainer


def _error(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.is_json, resp.headers.get("Content-Type")
    error = resp.get_json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


def _tree(root) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


# ---- inference ----------------------------------------------------------------------------------


@pytest.fixture
def inference(tmp_path):
    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, seed=1)
    app = create_inference(
        {
            "MODEL_REGISTRY_DIR": str(registry.root),
            "REGISTRY_POLL_SECONDS": 0,
            "MAX_BATCH_IMAGES": 3,
            "MAX_CONTENT_LENGTH": 256 * 1024,
        }
    )
    before = _tree(registry.root)
    yield app.test_client()
    assert _tree(registry.root) == before  # inference never writes into the registry


def _png(color: int = 0) -> bytes:
    buf = io.BytesIO()
    img = Image.new("L", (40, 40), 255)
    img.paste(color, (15, 5, 25, 35))
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_decompression_bomb_uploads_are_413_before_decoding(inference):
    url = "/v1/models/digits/predict"
    bomb = png_header_only(100_000, 100_000)  # 10^10 pixels declared in 100 bytes
    error = _error(inference.post(url, data=bomb, content_type="image/png"), 413)
    assert error["code"] == "image_too_large" and error["field"] == "body"
    resp = inference.post(
        url,
        data={"image": [(io.BytesIO(_png()), "ok.png"), (io.BytesIO(bomb), "bomb.png")]},
        content_type="multipart/form-data",
    )
    assert _error(resp, 413)["field"] == "image[1]"


def test_non_image_and_too_many_multipart_uploads(inference):
    url = "/v1/models/digits/predict"
    resp = inference.post(
        url,
        data={"image": [(io.BytesIO(_png()), "a.png"), (io.BytesIO(b"%PDF-1.7 ..."), "b.pdf")]},
        content_type="multipart/form-data",
    )
    error = _error(resp, 400)
    assert error["code"] == "invalid_image" and error["field"] == "image[1]"
    resp = inference.post(
        url,
        data={"image": [(io.BytesIO(_png()), f"{i}.png") for i in range(4)]},  # limit is 3
        content_type="multipart/form-data",
    )
    assert _error(resp, 413)["code"] == "too_many_images"
    resp = inference.post(url, data=_png(), content_type="image/gif")  # a type we do not take
    assert _error(resp, 415)["field"] == "Content-Type"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"instances": [[-1' + b", 0" * 783 + b"]]}", "instances[0][0]"),
        (b'{"instances": [[1e308' + b", 0" * 783 + b"]]}", "instances[0][0]"),
        (b'{"instances": [[0' + b", 0" * 782 + b", -0.0001]]}", "instances[0][783]"),
        (b'{"scale": "unit", "instances": [[0' + b", 0" * 782 + b", 1.5]]}", "instances[0][783]"),
    ],
)
def test_negative_and_huge_pixels_are_400_naming_the_index(inference, body, field):
    resp = inference.post("/v1/models/digits/predict", data=body, content_type="application/json")
    error = _error(resp, 400)
    if field is not None:
        assert error["field"] == field


@pytest.mark.parametrize(
    "data",
    [
        "[NaN, 0]",
        "[Infinity, 0]",
        "[-Infinity, 0]",
        "[1e400, 0]",
        "[1.5, 0]",  # FP32 is 0-1
        "[-0.5, 0]",
        "[256, 0]",  # declared UINT8 below for these
    ],
)
def test_v2_non_finite_and_out_of_range_tensors_are_400(inference, data):
    datatype = "UINT8" if data.startswith("[256") else "FP32"
    data = data.replace(", 0]", ", 0" * 783 + "]")
    body = f'{{"inputs": [{{"name": "input", "datatype": "{datatype}", "shape": [1, 784], "data": {data}}}]}}'
    resp = inference.post(
        "/v2/models/digits/infer", data=body.encode(), content_type="application/json"
    )
    _error(resp, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/digits/versions/%EF%BC%91/predict",  # fullwidth digit one: not a version
        "/v1/models/digits/versions/%D9%A1/predict",  # Arabic-Indic digit one
        "/v1/models/digit%D1%95/predict",  # Cyrillic dze looks like "s"
        "/v1/models/digits%E2%80%8B/predict",  # zero-width space
        "/v1/models/%E2%80%AEstigid/predict",  # right-to-left override
        "/v1/models/digits/versions/1%00/predict",  # NUL
        "/v1/models/digits/versions/..%2F1/predict",
        "/v1/models/..%2Fdigits/versions/1/predict",
        "/v1/models/digits%2F..%2Fdigits/predict",
        "/v1/models/DIGITS/predict",  # case matters: names are lowercase
        "/v2/models/digits/versions/%EF%BC%91/infer",
        "/v2/models/digit%D1%95/infer",
    ],
)
def test_unicode_and_traversal_names_and_versions_are_404(inference, path):
    if "/v2/" in path:
        body = {
            "inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 784], "data": [0] * 784}]
        }
    else:
        body = {"instances": BATCH[:1].tolist()}
    _error(inference.post(path, json=body), 404)


# ---- trainer ------------------------------------------------------------------------------------


@pytest.fixture
def trainer(redis_url, queue, tmp_path):
    registry = Registry(tmp_path / "models")
    publish(registry, tmp_path, seed=1, name="mnist")
    app = create_trainer(
        {
            "REDIS_URL": redis_url,
            "RQ_QUEUE": queue,
            "MODEL_REGISTRY_DIR": str(registry.root),
            "API_TOKEN": "",
        }
    )
    before = _tree(tmp_path)
    yield app.test_client()
    assert _tree(tmp_path) == before  # nothing written, anywhere under the test's folder


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ({"epochs": 10_000}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"hidden_layers": [0]}, "hidden_layers"),
        ({"hidden_layers": [10**9]}, "hidden_layers"),
        ({"hidden_layers": [32] * 100}, "hidden_layers"),
        ({"hidden_layers": []}, "hidden_layers"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": 1e308}, "learning_rate"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"optimizer": "ADAM "}, "optimizer"),
        ({"batch_size": 10**12}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"seed": -1}, "seed"),
        ({"epochs": True}, "epochs"),
        ({"model": "../../etc"}, "model"),
        ({"model": "a/b"}, "model"),
        ({"model": "mnist\u0000"}, "model"),
        ({"model": "mn\u0456st"}, "model"),  # Cyrillic i
        ({"model": "MNIST"}, "model"),
        ({"dataset": "../mnist"}, "dataset"),
    ],
)
def test_absurd_training_configs_are_422_naming_the_field(trainer, body, bad):
    error = _error(trainer.post("/v1/jobs", json={**SMALL, **body}), 422)
    assert error["invalid_fields"] == [bad], error


@pytest.mark.parametrize(
    "raw",
    [
        b'{"epochs": NaN}',
        b'{"learning_rate": NaN}',
        b'{"learning_rate": Infinity}',
        b'{"epochs": 1e999}',
    ],
)
def test_non_finite_numbers_in_a_training_config_are_rejected(trainer, raw):
    resp = trainer.post("/v1/jobs", data=raw, content_type="application/json")
    assert resp.status_code in (400, 422), resp.get_data(as_text=True)
    _error(resp, resp.status_code)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("put", "/v1/models/..%2F..%2Fetc/pin", 404),
        ("put", "/v1/models/mnist%00/pin", 404),
        ("put", "/v1/models/mn%D1%96st/pin", 404),
        ("put", "/v1/models/%EF%BD%8Dnist/pin", 404),  # fullwidth m
        ("delete", "/v1/models/..%2Fmnist/pin", 404),
        ("put", "/v1/models/mnist/aliases/..%2F..%2Fx", 404),  # a "/" never matches a route
        ("put", "/v1/models/mnist/aliases/champ%00", 422),
        ("put", "/v1/models/mnist/aliases/ch%D0%B0mpion", 422),  # Cyrillic a
        ("put", "/v1/models/mnist/aliases/%EF%BC%91", 422),  # fullwidth 1
        ("delete", "/v1/models/mnist/aliases/.hidden", 422),
        ("get", "/v1/models/..%2F..", 404),
        ("get", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404),
    ],
)
def test_traversal_and_unicode_names_on_trainer_routes(trainer, method, path, status):
    resp = getattr(trainer, method)(path, json={"version": 1})
    _error(resp, status)


@pytest.mark.parametrize("version", [0, -1, 1.5, "1", "１", None, 10**20, [1]])
def test_pin_versions_that_cannot_exist_are_422(trainer, version):
    _error(trainer.put("/v1/models/mnist/pin", json={"version": version}), 422)


def test_idempotency_key_with_control_characters_is_400(trainer):
    for key in ("a\x00b", "a\x7fb", "a\x1bb"):
        resp = trainer.post("/v1/jobs", json=SMALL, headers={"Idempotency-Key": key})
        _error(resp, 400)
