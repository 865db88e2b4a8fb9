"""CORS on the trainer API: only the configured origins (the web page's) may read answers or
send preflighted requests from a browser; without CORS_ORIGINS there are no CORS headers."""

from __future__ import annotations

import pytest

from trainer_service.api.cors import CorsSettingsError, parse_origins

PAGE = "http://127.0.0.1:8000"


def test_allowed_origin_gets_the_headers_on_answers_and_errors(make_trainer_client) -> None:
    c = make_trainer_client(CORS_ORIGINS=f"{PAGE}, https://digits.example/")
    for path, status in (("/healthz", 200), ("/v1/models/nope", 404)):
        r = c.get(path, headers={"Origin": PAGE})
        assert r.status_code == status
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
        assert "Location" in r.headers["Access-Control-Expose-Headers"]
        assert "Origin" in r.headers["Vary"]
    r = c.get("/healthz", headers={"Origin": "https://digits.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://digits.example"


def test_preflight_for_a_json_post_with_a_token(make_trainer_client) -> None:
    c = make_trainer_client(CORS_ORIGINS=PAGE, API_TOKEN="secret")
    r = c.options(
        "/v1/jobs",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert r.status_code == 200  # a preflight never needs the token
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "DELETE" in r.headers["Access-Control-Allow-Methods"]
    allowed = r.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed and "authorization" in allowed
    # The 401 of a token-less POST is readable by the page (it can tell the user why).
    r = c.post("/v1/jobs", json={}, headers={"Origin": PAGE})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == PAGE


def test_other_origins_get_nothing(make_trainer_client) -> None:
    c = make_trainer_client(CORS_ORIGINS=PAGE)
    for origin in ("http://evil.example", "http://127.0.0.1:8001", "null", PAGE + ".evil.example"):
        r = c.get("/healthz", headers={"Origin": origin})
        assert r.status_code == 200
        assert "Access-Control-Allow-Origin" not in r.headers, origin
        r = c.options(
            "/v1/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert "Access-Control-Allow-Methods" not in r.headers
    # Same-origin / non-browser requests (no Origin header) are untouched.
    assert "Access-Control-Allow-Origin" not in c.get("/healthz").headers


def test_unset_means_no_cors_at_all(make_trainer_client, monkeypatch) -> None:
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    r = make_trainer_client().get("/healthz", headers={"Origin": PAGE})
    assert "Access-Control-Allow-Origin" not in r.headers
    monkeypatch.setenv("CORS_ORIGINS", PAGE)  # the environment variable works too
    r = make_trainer_client().get("/healthz", headers={"Origin": PAGE})
    assert r.headers["Access-Control-Allow-Origin"] == PAGE


def test_wildcard_echoes_any_origin(make_trainer_client) -> None:
    r = make_trainer_client(CORS_ORIGINS="*").get("/healthz", headers={"Origin": "http://x.test:9"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://x.test:9"


def test_origin_list_is_validated() -> None:
    assert parse_origins(" http://A.example:8000/ ,,https://b.example") == {
        "http://a.example:8000",
        "https://b.example",
    }
    for bad in ("localhost:8000", "ftp://x.example", "http://x.example/path", "http://"):
        with pytest.raises(CorsSettingsError, match="CORS_ORIGINS"):
            parse_origins(bad)
