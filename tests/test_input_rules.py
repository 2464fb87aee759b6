"""The input rules every route keeps (README, "Using the API"): undeclared methods are 405 before authentication,
undeclared query parameters are 422 naming them, text with NUL or unpaired surrogates and integers past 64 bits are
422 `validation_failed` wherever they appear, and a refused call changes nothing."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.register.models import Returnee
from tests.conftest import AgencyClient, returnee_body
from tests.test_app import assert_error

AsAgency = Callable[..., AgencyClient]
INT64_MAX = 2**63 - 1
BAD_TEXT = ["nul\u0000", "\ud800", "a\udfffb"]
SAMPLE_ARGS = {"uuid": str(uuid.UUID(int=1)), "int": "1", "string": "x", "default": "x", "path": "x"}


def returnees(app: Flask) -> int:
    with Session(app.extensions["exchange.db"]) as session:
        return session.scalar(select(func.count()).select_from(Returnee)) or 0


def every_operation(app: Flask) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, with sample path arguments."""
    operations = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", lambda m: SAMPLE_ARGS.get(m.group(1) or "default", "x"),
                      rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append((method, path))
    return sorted(set(operations))


# ---- methods --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("TRACE", "/v1/returnees"), ("PUT", "/v1/returnees"), ("DELETE", "/v1/returnees"), ("TRACE", "/oauth/token"),
    ("TRACE", "/v1/audit/checkpoint"), ("PATCH", "/v1/keys"), ("TRACE", "/healthz"), ("BREW", "/v1/screening"),
])
def test_undeclared_methods_are_405_before_authentication(app: Flask, method: str, path: str) -> None:
    response = app.test_client().open(path, method=method)  # no credentials at all
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


# ---- query parameters -----------------------------------------------------------------------------------------------


def test_every_operation_refuses_an_undeclared_query_parameter(app: Flask, as_agency: AsAgency) -> None:
    """The sweep covers every route and method the app serves, documented or not: one undeclared parameter is 422
    naming it, whatever the caller may do there."""
    security = as_agency("security")
    operations = every_operation(app)
    assert len(operations) > 40
    for method, path in operations:
        response = security.open(method, f"{path}?dry_run=true", json={} if method in ("POST", "PATCH") else None)
        assert response.status_code == 422, (method, path, response.get_json())
        body = assert_error(response, 422, "validation_failed")
        assert "dry_run" in body["errors"], (method, path, body)


def test_a_write_with_an_undeclared_query_parameter_stores_nothing(app: Flask, interior: AgencyClient) -> None:
    assert_error(interior.post("/v1/returnees?dry_run=true", json=returnee_body()), 422, "validation_failed")
    assert returnees(app) == 0
    assert interior.post("/v1/returnees", json=returnee_body()).status_code == 201


def test_declared_query_parameters_still_work_and_others_are_refused(as_agency: AsAgency) -> None:
    security = as_agency("security")
    assert security.get("/v1/keys?purpose=audit").status_code == 200
    assert security.get("/v1/keys/approvals?status=pending").status_code == 200
    for path in ("/v1/keys?purpose=audit&colour=blue", "/v1/keys/approvals?colour=blue", "/v1/clients?colour=blue"):
        assert list(assert_error(security.get(path), 422, "validation_failed")["errors"]) == ["colour"]


@pytest.mark.parametrize("query", ["status=%00", "page=1%00", "risk_level=high%00", "%00=1", "q%00=1"])
def test_nul_in_a_query_is_422(interior: AgencyClient, query: str) -> None:
    assert_error(interior.get(f"/v1/returnees?{query}"), 422, "validation_failed")


def test_nul_in_an_audit_search_is_422(as_agency: AsAgency) -> None:
    auditor = as_agency("auditor")
    for query in ("client_id=a%00b", "record_id=%00", "purpose=x%00"):
        assert_error(auditor.get(f"/v1/audit/search?{query}"), 422, "validation_failed")


# ---- integers -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    f"/v1/audit/search?after={2**63}", f"/v1/audit/search?after={2**200}", f"/v1/audit/entries?start={2**63}",
    f"/v1/audit/entries?start=0&end={2**64}", f"/v1/audit/proofs/inclusion?index={2**63}&size=1",
    f"/v1/audit/proofs/consistency?old=0&new={2**63}", f"/v1/audit/receipts/{2**63}", f"/v1/audit/receipts/{10**40}",
    f"/v1/audit/receipts/0?size={2**63}", f"/v1/audit/export?start={2**63}", "/v1/audit/search?after=-1",
    f"/v1/returnees?page={2**63}", f"/v1/returnees?page_size={2**63}",
])
def test_integers_past_64_bits_or_negative_are_422(as_agency: AsAgency, path: str) -> None:
    caller = as_agency("interior" if path.startswith("/v1/returnees") else "auditor")
    assert_error(caller.get(path), 422, "validation_failed")


def test_the_largest_64_bit_integer_is_accepted(as_agency: AsAgency) -> None:
    assert as_agency("auditor").get(f"/v1/audit/search?after={INT64_MAX}").status_code == 200


def test_integers_past_64_bits_in_a_body_are_422(border: AgencyClient) -> None:
    response = border.post("/v1/screening", json={"document_number": "400123456", "limit": 2**64})
    assert "limit" in assert_error(response, 422, "validation_failed")["errors"]


# ---- text ------------------------------------------------------------------------------------------------------------


def raw(body: Any) -> dict[str, Any]:
    """A request body with NUL and lone surrogates as JSON escapes, as an attacker sends them."""
    return {"data": json.dumps(body), "content_type": "application/json"}


@pytest.mark.parametrize("bad", BAD_TEXT)
@pytest.mark.parametrize(("where", "field"), [
    (lambda b: {"birth_place": b}, "birth_place"),
    (lambda b: {"person_name": {"given": b, "surname": "Халимов"}}, "person_name"),
    (lambda b: {"name_variants": [{"value": b, "script": "latn", "kind": "transliteration"}]}, "name_variants"),
    (lambda b: {"identifications": [{"category": "passport", "id": b, "issuer_country": "TJ"}]}, "identifications"),
    (lambda b: {"handling_restriction": b}, "handling_restriction"),
    (lambda b: {"register_number": b}, "register_number"),
    (lambda b: {b: "x"}, "_schema"),  # a key, too
])
def test_unstorable_text_anywhere_in_a_returnee_is_422_and_stores_nothing(
    app: Flask, interior: AgencyClient, bad: str, where: Callable[[str], dict[str, Any]], field: str
) -> None:
    response = interior.post("/v1/returnees", **raw(returnee_body(**where(bad))))
    assert field in assert_error(response, 422, "validation_failed")["errors"]
    assert returnees(app) == 0


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_unstorable_text_in_a_returnee_change_is_422(
    interior: AgencyClient, make_returnee: Callable[..., dict[str, Any]], bad: str
) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    response = interior.patch(path, headers={"If-Match": created["_etag"]},
                              **raw({"person_name": {"given": bad, "surname": "X"}}))
    assert "person_name" in assert_error(response, 422, "validation_failed")["errors"]
    assert interior.get(path).get_json()["version"] == created["version"]


@pytest.mark.parametrize("bad", BAD_TEXT)
@pytest.mark.parametrize("body", [
    lambda b: {"document_number": b}, lambda b: {"name": f"Gulmurod {b}"},
    lambda b: {"name": "Gulmurod Khalimov", "birth_date": b},
])
def test_unstorable_text_in_screening_is_422(
    as_agency: AsAgency, bad: str, body: Callable[[str], dict[str, Any]]
) -> None:
    assert_error(as_agency("border").post("/v1/screening", **raw(body(bad))), 422, "validation_failed")


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_unstorable_text_in_key_administration_is_422(as_agency: AsAgency, app: Flask, bad: str) -> None:
    security = as_agency("security", officer="TJ-SEC-1")
    kid = app.extensions["exchange.keystore"].active("token").kid
    response = security.post(f"/v1/keys/{kid}/revocation", **raw({"reason": bad}))
    assert "reason" in assert_error(response, 422, "validation_failed")["errors"]
    assert security.get("/v1/keys/approvals").get_json()["items"] == []


@pytest.mark.parametrize("path", ["/v1/clients/a%00b", "/v1/keys/a%00b", "/v1/clients/a%00b/keys"])
def test_unstorable_text_in_a_path_is_422(as_agency: AsAgency, path: str) -> None:
    security = as_agency("security")
    method = "POST" if path.endswith("/keys") else "GET"
    assert_error(security.open(method, path, json={"purpose": "auth", "jwk": {}}), 422, "validation_failed")
