"""shared.web: the one error table, validation answers, settings and the route/document table."""

from __future__ import annotations

import orjson
import pytest
from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import MethodNotAllowed, NotFound

from shared.registry import (
    AliasNotFoundError,
    BrokenVersionError,
    InvalidNameError,
    ModelNotFoundError,
    RegistryError,
    RegistryUnavailableError,
    VersionInUseError,
    VersionNotFoundError,
)
from shared.web.app import create_flask_app, serve_openapi
from shared.web.errors import ApiError, to_api_error
from shared.web.openapi import Api
from shared.web.settings import ServiceSettings, SettingsError
from shared.web.validation import describe, json_object, validation_error


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidNameError("bad"), 404, "not_found"),
        (ModelNotFoundError("m"), 404, "model_not_found"),
        (VersionNotFoundError("v"), 404, "version_not_found"),
        (BrokenVersionError("v2 broken"), 409, "version_broken"),
        (RegistryError("lock"), 503, "registry_unavailable"),
        (PermissionError("ro"), 503, "registry_unavailable"),
        (NotFound(), 404, "not_found"),
        (KeyError("bug"), 500, "internal_error"),
    ],
)
def test_one_table_maps_each_exception(exc, status, code) -> None:
    err = to_api_error(exc)
    assert (err.status, err.code) == (status, code)
    body = orjson.loads(err.response().get_data())
    assert body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidNameError("bad alias", field="alias"), 422, "unprocessable"),
        (InvalidNameError("w", field="routes[0].weight"), 422, "unprocessable"),
        (VersionNotFoundError("no v9", field="version"), 404, "version_not_found"),
        (AliasNotFoundError("no champion", field="routes[1].version"), 404, "version_not_found"),
        (BrokenVersionError("v2 broken", field="version"), 409, "version_broken"),
        (VersionInUseError("pinned", field="version"), 409, "version_in_use"),
    ],
)
def test_registry_errors_name_the_field_they_concern(exc, status, code) -> None:
    """The registry says which input an error concerns; the table answers naming it (a malformed
    input is 422 then, where a path name that could never exist is 404)."""
    body = to_api_error(exc).body()["error"]
    assert (to_api_error(exc).status, body["code"]) == (status, code)
    assert body["field"] == exc.field
    assert body["invalid_fields"] == [exc.field.split(".")[0].split("[")[0]]


def test_method_not_allowed_keeps_the_allow_header() -> None:
    err = to_api_error(MethodNotAllowed(valid_methods=["GET"]))
    assert err.status == 405 and err.response().headers["Allow"] == "GET"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(ge=1)
    layers: list[int] = []


def test_validation_error_names_every_field() -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"epochs": 0, "layers": [1, "x"], "extra": 1})
    err = validation_error(info.value, "training config")
    body = err.body()["error"]
    assert err.status == 422 and body["field"] == "epochs"
    assert [f["field"] for f in body["fields"]] == ["epochs", "layers[1]", "extra"]
    assert body["invalid_fields"] == ["epochs", "extra", "layers"]
    line = describe(info.value, {"epochs": "--epochs"})
    assert "invalid --epochs:" in line and "invalid layers[1]:" in line
    assert "(got 'x')" in line and "'x'" not in str(err.body())  # HTTP answers never echo


@pytest.mark.parametrize(
    ("body", "mimetype", "status"),
    [
        (b"{}", "text/plain", 415),
        (b"{", "application/json", 400),
        (b"[1]", "application/json", 422),
    ],
)
def test_json_object_errors(body, mimetype, status) -> None:
    with pytest.raises(ApiError) as info:
        json_object(body, mimetype)
    assert info.value.status == status


def test_settings_overrides_win_over_environment(monkeypatch) -> None:
    class Settings(ServiceSettings):
        max_batch_images: int = 1024

    monkeypatch.setenv("MAX_BATCH_IMAGES", "7")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert Settings.load().max_batch_images == 7
    assert Settings.load({"MAX_BATCH_IMAGES": 9, "TESTING": True}).max_batch_images == 9
    assert Settings.load({"MAX_BATCH_IMAGES": ""}).max_batch_images == 7  # empty = not given
    assert Settings.load().log_level == "WARNING"
    with pytest.raises(SettingsError, match="MAX_BATCH_IMAGES"):
        Settings.load({"MAX_BATCH_IMAGES": "many"})


def test_routes_are_registered_and_documented_from_one_declaration() -> None:
    api = Api("test", "1")
    bp = Blueprint("things", __name__)

    @api.route(bp, "POST", "/v1/things/{name}", summary="make", body=Config, errors=(422,))
    def make(name: str):
        raise KeyError("a bug in the view")

    app = create_flask_app(__name__, ServiceSettings.load(), state=None)
    app.register_blueprint(bp)
    serve_openapi(app, api)
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    op = doc["paths"]["/v1/things/{name}"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Config")
    assert "Config" in doc["components"]["schemas"] and "ErrorBody" in doc["components"]["schemas"]
    answer = client.post("/v1/things/a", json={})
    assert answer.status_code == 500 and answer.get_json()["error"]["code"] == "internal_error"
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_an_answer_documents_several_media_types_and_headers() -> None:
    from shared.web.openapi import Answer, Operation

    class Result(BaseModel):
        value: int

    api = Api("test", "1")
    api.add(
        Operation(
            method="POST",
            path="/run",
            summary="run",
            content={"application/octet-stream": {"type": "string", "format": "binary"}},
            responses={
                200: Answer(
                    "done",
                    content={"application/json": Result, "application/octet-stream": {}},
                    headers={"X-Version": "which version answered"},
                )
            },
        )
    )
    doc = api.document()
    ok = doc["paths"]["/run"]["post"]["responses"]["200"]
    assert ok["description"] == "done" and set(ok["headers"]) == {"X-Version"}
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/Result")
    assert "Result" in doc["components"]["schemas"]
    assert set(doc["paths"]["/run"]["post"]["requestBody"]["content"]) == {
        "application/octet-stream"
    }


def test_registry_url_wins_over_the_folder_and_is_checked(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MODEL_REGISTRY_URL", raising=False)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(tmp_path / "models"))
    assert ServiceSettings.load().registry_location == str(tmp_path / "models")
    settings = ServiceSettings.load({"MODEL_REGISTRY_URL": "s3://bucket/some/prefix"})
    assert settings.registry_location == "s3://bucket/some/prefix"  # the folder is ignored
    reg = settings.open_registry(read_only=True)
    assert reg.location == "s3://bucket/some/prefix" and reg.root is None and reg.read_only
    folder = ServiceSettings.load({"MODEL_REGISTRY_URL": f"file://{tmp_path}/other"})
    assert folder.open_registry().root == tmp_path / "other"
    for bad in ("http://bucket/x", "s3://", "s3:///prefix", "models", "file://relative"):
        with pytest.raises(SettingsError, match="MODEL_REGISTRY_URL"):
            ServiceSettings.load({"MODEL_REGISTRY_URL": bad})


def test_an_unreachable_store_is_a_503() -> None:
    err = to_api_error(RegistryUnavailableError("object store s3://b unreachable: refused"))
    assert err.status == 503 and err.code == "registry_unavailable"
