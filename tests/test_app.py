"""The app as a whole: errors in one shape, request ids, health, OpenAPI, the caller seam, body limits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from exchange.identity import Caller
from tests.conftest import AgencyClient


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code
    assert body["status"] == status
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_every_response_has_a_request_id(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/healthz")
    second = client.get("/healthz", headers={"X-Request-ID": "caller-chosen"})
    assert len(first.headers["X-Request-ID"]) == 32
    assert second.headers["X-Request-ID"] not in ("caller-chosen", first.headers["X-Request-ID"])


def test_readyz_checks_database_and_key_store(app: Flask) -> None:
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "key_store": "ok"}}


def test_readyz_reports_missing_key_store(make_app: Callable[..., Flask], tmp_path: Any) -> None:
    app = make_app(KEYS_DIR=str(tmp_path / "absent"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["key_store"] == "missing"


def test_released_app_refuses_api_calls_without_a_token(make_app: Callable[..., Flask]) -> None:
    """The released authenticator (OAuth2 + DPoP): no token, no call, whatever other headers say."""
    app = make_app(AUTHENTICATOR=None)
    client = app.test_client()
    response = client.get("/v1/returnees", headers={"X-Agency": "interior", "Authorization": "Bearer x"})
    assert_error(response, 401, "invalid_token")
    response = client.post("/v1/returnees", json={"person_name": {"given": "A", "surname": "B"}})
    assert_error(response, 401, "invalid_token")
    assert_error(client.get("/v1/no-such-route"), 401, "invalid_token")  # routes are not revealed either


def test_unknown_route_and_method_get_json_errors(interior: AgencyClient) -> None:
    assert_error(interior.get("/v1/nothing-here"), 404, "not_found")
    response = interior.delete("/v1/returnees")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_unknown_record_is_404(interior: AgencyClient) -> None:
    assert_error(interior.get("/v1/returnees/6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"), 404, "not_found")
    assert_error(interior.get("/v1/returnees/not-a-uuid"), 404, "not_found")


def test_oversized_body_is_refused_and_nothing_stored(interior: AgencyClient) -> None:
    huge = {"person_name": {"given": "A", "surname": "B"}, "citizenship": "TJ", "birth_place": "x" * (1024 * 1024)}
    assert_error(interior.post("/v1/returnees", json=huge), 413, "body_too_large")
    assert interior.get("/v1/returnees").get_json()["total"] == 0


def test_body_limit_is_configurable(make_app: Callable[..., Flask]) -> None:
    app = make_app(MAX_CONTENT_LENGTH=200)
    client = AgencyClient(app.test_client(), Caller(agency="interior"))
    body = {"person_name": {"given": "A", "surname": "B"}, "citizenship": "TJ", "birth_place": "x" * 300}
    assert_error(client.post("/v1/returnees", json=body), 413, "body_too_large")


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("", "application/json", 400, "malformed_json"),
        ("person_name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("", None, 415, "unsupported_media_type"),
        ("[1, 2]", "application/json", 422, "validation_failed"),
        ("null", "application/json", 400, "malformed_json"),
    ],
)
def test_malformed_bodies_are_refused_and_nothing_stored(
    interior: AgencyClient, data: str, content_type: Any, status: int, code: str
) -> None:
    assert_error(interior.post("/v1/returnees", data=data, content_type=content_type), status, code)
    assert interior.get("/v1/returnees").get_json()["total"] == 0


def test_openapi_is_served_with_a_view_per_agency(app: Flask) -> None:
    client = app.test_client()
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    for view in ("InteriorReturneeView", "BorderReturneeView", "ProsecutorReturneeView"):
        assert view in schemas
    border = schemas["BorderReturneeView"]["properties"]
    assert "risk_level" not in border and "hotline_contacts" not in border and "birth_place" not in border
    media = spec["paths"]["/v1/returnees/{returnee_id}"]["get"]["responses"]["200"]["content"][
        "application/vnd.exchange.envelope.v1+json"]
    refs = {alt["$ref"].rsplit("/", 1)[1] for alt in media["x-plaintext-schema"]["oneOf"]}
    assert refs == {"InteriorReturneeViewForAgency", "BorderReturneeViewForAgency", "ProsecutorReturneeViewForAgency"}
    for ref in refs:  # each is its agency's view with the `view` member naming the agency
        base = schemas[ref.removesuffix("ForAgency")]["properties"]
        assert set(schemas[ref]["properties"]) == {"view", *base}
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()


def test_unexpected_errors_are_500_without_details(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("SELECT secret FROM returnees WHERE name = 'Халимов'")

    with caplog.at_level(logging.ERROR, logger="exchange"):
        response = app.test_client().get("/boom")
    body = assert_error(response, 500, "internal_error")
    assert "SELECT" not in response.get_data(as_text=True) and "Халимов" not in str(body)
    assert caplog.records and all("Халимов" not in r.getMessage() for r in caplog.records)
    assert all("SELECT" not in str(r.__dict__) for r in caplog.records)


def test_access_log_is_structured_and_has_no_query_string(
    interior: AgencyClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="exchange.access"):
        interior.get("/v1/returnees?register_number=RT-2015-000123")
    [record] = [r for r in caplog.records if r.name == "exchange.access"]
    assert record.path == "/v1/returnees"  # type: ignore[attr-defined]
    assert record.status == 200 and record.agency == "interior"  # type: ignore[attr-defined]
    assert "RT-2015" not in str(record.__dict__)
