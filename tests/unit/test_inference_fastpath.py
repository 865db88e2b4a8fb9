"""The WSGI fast path of the predict and infer routes (inference_service/fastpath.py): it answers
the happy path exactly as the Flask views would, and hands everything else to Flask with the body
intact."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from inference_service.app import create_app
from inference_service.fastpath import match_route
from inference_service.settings import Settings, SettingsError
from tests.unit.test_inference_app import (  # noqa: F401 - fixtures
    digit_picture,
    error_of,
    expected_proba,
    publish,
    registry,
)
from tests.unit.test_inference_npy import npy

RNG = np.random.default_rng(11)
IMAGES = RNG.integers(0, 256, size=(3, 784)).astype(np.uint8)
URL = "/v1/models/digits/predict"
V2_URL = "/v2/models/digits/infer"
HEADER = "Inference-Header-Content-Length"


def v2_binary(x: np.ndarray, binary_out: bool = False) -> tuple[bytes, dict[str, str]]:
    """A V2 binary-extension body for uint8 images x [N, 784], and its header; `binary_out` asks
    for binary outputs too."""
    raw = x.astype(np.uint8).tobytes()
    request = {
        "id": "r-1",
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "UINT8",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    if binary_out:
        request["parameters"] = {"binary_data_output": True}
    head = orjson.dumps(request)
    return head + raw, {HEADER: str(len(head))}


def v2_json(x: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": list(x.shape), "datatype": "UINT8", "data": x.tolist()}
            ]
        }
    )


@pytest.fixture
def pair(registry):  # noqa: F811
    """Two apps on one registry: fast path on (the default) and off."""
    apps = []
    for flag in (None, "off"):
        config = {"MODEL_REGISTRY_DIR": str(registry.root), "REGISTRY_POLL_SECONDS": 0}
        if flag:
            config["PREDICT_FAST_PATH"] = flag
        apps.append(create_app(config))
    yield apps
    for app in apps:
        app.extensions["digitflow"].cache.stop()


def answered(app) -> int:
    return app.wsgi_app.answered


def both(pair, method: str, url: str, **kw):
    """The same request to both apps: (fast response, flask response)."""
    fast, slow = (getattr(app.test_client(), method)(url, **kw) for app in pair)
    return fast, slow


def same_answer(fast, slow) -> None:
    assert fast.status_code == slow.status_code
    assert fast.get_data() == slow.get_data()
    for header in ("Content-Type", "Content-Length", "X-Model-Version", HEADER):
        assert fast.headers.get(header) == slow.headers.get(header), header


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/v1/models/digits/predict", ("/v1/models/<name>/predict", "digits", None)),
        ("/v1/models/digits/versions/3/predict", ("/v1/models/<name>/versions/<ref>/predict", "digits", "3")),
        ("/v1/models/digits/versions/latest/predict", ("/v1/models/<name>/versions/<ref>/predict", "digits", "latest")),
        ("/v2/models/digits/infer", ("/v2/models/<name>/infer", "digits", None)),
        ("/v2/models/digits/versions/2/infer", ("/v2/models/<name>/versions/<ref>/infer", "digits", "2")),
        ("/v1/models//predict", None),
        ("/v1/models/digits/predict/", None),
        ("/v1/models/a/b/predict", None),
        ("/v1/models/digits/versions//predict", None),
        ("/v1/models/digits/other/3/predict", None),
        ("/v1/models/digits/infer", None),
        ("/v2/models/digits/predict", None),
        ("/v2/models/digits/ready", None),
        ("/v1/models/dígits/predict", None),
    ],
)  # fmt: skip
def test_match_route(path: str, want) -> None:
    got = match_route(path)
    assert (got if got is None else (got[0], got[2], got[3])) == want
    if got is not None:  # the template is the rule Flask routes the same path with
        assert got[1].__name__ == ("_v1_predict" if "/v1/" in path else "_v2_infer")


def test_setting_is_parsed_and_checked() -> None:
    assert Settings.load({}, environ={}).predict_fast_path is True
    assert Settings.load({}, environ={"PREDICT_FAST_PATH": "off"}).predict_fast_path is False
    assert Settings.load({"PREDICT_FAST_PATH": False}, environ={}).predict_fast_path is False
    with pytest.raises(SettingsError, match="PREDICT_FAST_PATH"):
        Settings.load({}, environ={"PREDICT_FAST_PATH": "sometimes"})


def test_off_means_no_middleware(pair) -> None:
    assert hasattr(pair[0].wsgi_app, "answered")
    assert not hasattr(pair[1].wsgi_app, "answered")


@pytest.mark.parametrize(
    ("url", "body", "ctype"),
    [
        (URL, orjson.dumps({"instances": IMAGES.tolist()}), "application/json"),
        (URL, orjson.dumps({"instances": (IMAGES / 255).tolist(), "scale": "unit"}), None),
        (URL, npy(IMAGES), "application/x-npy"),
        ("/v1/models/digits/versions/1/predict", npy(IMAGES), "application/x-npy"),
        ("/v1/models/digits/versions/latest/predict", npy(IMAGES[:1]), "application/x-npy"),
    ],
    ids=["json", "json-unit-charset", "npy", "version", "latest"],
)
def test_happy_path_is_answered_fast_and_identically(pair, registry, tmp_path, url, body, ctype):  # noqa: F811
    publish(registry, tmp_path)
    publish(registry, tmp_path, seed=1)  # the default is version 2; versions/1 asks for 1
    ctype = ctype or "application/json; charset=utf-8"
    fast, slow = both(pair, "post", url, data=body, content_type=ctype)
    assert fast.status_code == 200, fast.get_data()[:300]
    same_answer(fast, slow)
    assert answered(pair[0]) == 1
    version = 1 if "/versions/1/" in url else 2
    assert fast.headers["X-Model-Version"] == str(version)
    assert fast.get_json()["model_version"] == version
    n = len(fast.get_json()["predictions"])
    want = expected_proba(registry, "digits", version, IMAGES[:n] / 255.0)
    np.testing.assert_allclose(fast.get_json()["probabilities"], want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("url", "body", "ctype", "status", "field"),
    [
        (URL, b'{"instances": [[1, 2', "application/json", 400, None),
        (
            URL,
            orjson.dumps({"instances": [[300] * 784]}),
            "application/json",
            400,
            "instances[0][0]",
        ),
        (URL, orjson.dumps({"images": []}), "application/json", 400, "images"),
        (URL, npy(IMAGES[:, :10]), "application/x-npy", 400, "body.shape"),
        (URL, b"x" * 10, "text/plain", 415, "Content-Type"),
        ("/v1/models/nope/predict", npy(IMAGES), "application/x-npy", 404, None),
        ("/v1/models/digits/versions/9/predict", npy(IMAGES), "application/x-npy", 404, None),
        (
            "/v1/models/digits/versions/champion/predict",
            npy(IMAGES),
            "application/x-npy",
            404,
            None,
        ),
        ("/v1/models/BAD!/predict", npy(IMAGES), "application/x-npy", 404, None),
    ],
)
def test_errors_are_answered_by_flask_with_the_body_intact(
    pair,
    registry,  # noqa: F811
    tmp_path,
    url,
    body,
    ctype,
    status,
    field,
) -> None:
    """Flask re-reads the body the fast path consumed: its error names the field inside it."""
    publish(registry, tmp_path)
    fast, slow = both(pair, "post", url, data=body, content_type=ctype)
    assert fast.status_code == status, fast.get_data()[:300]
    same_answer(fast, slow)
    if field is not None:
        assert error_of(fast).get("field") == field
    assert answered(pair[0]) == 0


def test_oversized_body_is_left_to_flask(registry, tmp_path) -> None:  # noqa: F811
    publish(registry, tmp_path)
    app = create_app(
        {
            "MODEL_REGISTRY_DIR": str(registry.root),
            "REGISTRY_POLL_SECONDS": 0,
            "MAX_CONTENT_LENGTH": 2048,
        }
    )
    try:
        resp = app.test_client().post(URL, data=npy(IMAGES), content_type="application/x-npy")
        assert resp.status_code == 413
        assert app.wsgi_app.answered == 0
        ok = app.test_client().post(URL, data=npy(IMAGES[:1]), content_type="application/x-npy")
        assert ok.status_code == 200 and app.wsgi_app.answered == 1
    finally:
        app.extensions["digitflow"].cache.stop()


def test_pictures_and_other_methods_go_through_flask(pair, registry, tmp_path) -> None:  # noqa: F811
    publish(registry, tmp_path)
    fast, slow = both(pair, "post", URL, data=digit_picture("png"), content_type="image/png")
    assert fast.status_code == 200
    same_answer(fast, slow)
    fast, slow = both(pair, "get", URL)
    assert fast.status_code == 405
    same_answer(fast, slow)
    assert answered(pair[0]) == 0


def test_fast_answers_are_counted_in_metrics_like_flask_ones(pair, registry, tmp_path):  # noqa: F811
    publish(registry, tmp_path)
    body = npy(IMAGES)
    for app in pair:
        client = app.test_client()
        assert client.post(URL, data=body, content_type="application/x-npy").status_code == 200
        assert client.post(URL, data=b"{", content_type="application/json").status_code == 400
    texts = [app.test_client().get("/metrics").get_data(as_text=True) for app in pair]
    for text in texts:
        ok = (
            'digitflow_inference_requests_total{method="POST",'
            'route="/v1/models/<name>/predict",status="200"} 1.0'
        )
        bad = ok.replace('"200"', '"400"')
        assert ok in text and bad in text, text[:2000]
        assert 'digitflow_inference_images_total{model="digits",version="1"} 3.0' in text
        assert (
            'digitflow_inference_request_duration_seconds_count{route="/v1/models/<name>/predict"}'
            " 2.0" in text
        )
    assert answered(pair[0]) == 1


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (V2_URL, "json"),
        (V2_URL, "binary"),
        (V2_URL, "binary-out"),
        ("/v2/models/digits/versions/1/infer", "binary"),
    ],
)
def test_v2_infer_is_answered_fast_and_identically(pair, registry, tmp_path, url, kind):  # noqa: F811
    publish(registry, tmp_path)
    publish(registry, tmp_path, seed=1)
    if kind == "json":
        body, headers = v2_json(IMAGES), {}
    elif kind == "binary":
        body, headers = v2_binary(IMAGES)
    else:
        body, headers = v2_binary(IMAGES, binary_out=True)
    fast, slow = both(
        pair,
        "post",
        url,
        data=body,
        headers=headers,
        content_type="application/octet-stream" if headers else "application/json",
    )
    assert fast.status_code == 200, fast.get_data()[:300]
    same_answer(fast, slow)
    assert answered(pair[0]) == 1
    version = 1 if "/versions/1/" in url else 2
    assert fast.headers["X-Model-Version"] == str(version)
    want = expected_proba(registry, "digits", version, IMAGES / 255.0)
    assert (HEADER in fast.headers) == (kind == "binary-out")  # binary answer only when asked
    n = int(fast.headers.get(HEADER, len(fast.get_data())))
    head = orjson.loads(fast.get_data()[:n])
    probs = {o["name"]: o for o in head["outputs"]}["probabilities"]
    if "data" in probs:
        got = np.asarray(probs["data"], np.float32).reshape(3, 10)
    else:
        got = np.frombuffer(fast.get_data()[n : n + 120], "<f4").reshape(3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("url", "body", "headers", "ctype", "status"),
    [
        (V2_URL, b"{", {}, "application/json", 400),
        (V2_URL, v2_json(IMAGES[:, :10]), {}, "application/json", 400),
        (V2_URL, v2_binary(IMAGES)[0], {}, "application/octet-stream", 415),
        (V2_URL, v2_binary(IMAGES)[0][:-3], v2_binary(IMAGES)[1], "application/octet-stream", 400),
        ("/v2/models/nope/infer", *v2_binary(IMAGES), "application/octet-stream", 404),
    ],
)
def test_v2_errors_are_answered_by_flask(
    pair,
    registry,  # noqa: F811
    tmp_path,
    url,
    body,
    headers,
    ctype,
    status,
):
    publish(registry, tmp_path)
    fast, slow = both(pair, "post", url, data=body, headers=headers, content_type=ctype)
    assert fast.status_code == status, fast.get_data()[:300]
    same_answer(fast, slow)
    assert error_of(fast)["code"]
    assert answered(pair[0]) == 0
