"""Returnees: register, read, list (paging, filters), change with optimistic concurrency, refuse bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.register.models import Returnee, ReturneeSearchKey
from tests.conftest import AgencyClient, returnee_body
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]


def count_returnees(app: Flask) -> int:
    with Session(app.extensions["exchange.db"]) as session:
        return session.scalar(select(func.count()).select_from(Returnee)) or 0


def test_register_allocates_number_and_returns_interior_view(interior: AgencyClient, app: Flask) -> None:
    response = interior.post("/v1/returnees", json=returnee_body(person_name={
        "given": "Гулмурод", "surname": "Халимов", "patronymic": "Саидович"}))
    assert response.status_code == 201
    data = response.get_json()
    assert data["register_number"].startswith("RT-") and len(data["register_number"]) == 14
    assert data["status"] == "reported" and data["risk_level"] == "unknown" and data["handling_code"] == "H0"
    assert data["person_name"] == {"given": "Гулмурод", "surname": "Халимов", "patronymic": "Саидович",
                                   "full": "Гулмурод Саидович Халимов"}
    assert data["version"] == 1 and response.headers["ETag"] == '"1"'
    assert response.headers["Location"].endswith(f"/v1/returnees/{data['id']}")
    assert data["hotline_contacts"] == [] and data["active_border_instruction"] is None
    # acknowledged means committed: a separate connection sees it
    assert count_returnees(app) == 1


def test_register_numbers_are_sequential_and_unique(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    first, second = make_returnee(), make_returnee()
    assert int(second["register_number"][-6:]) == int(first["register_number"][-6:]) + 1
    response = interior.post("/v1/returnees", json=returnee_body(register_number=first["register_number"]))
    assert_error(response, 409, "duplicate_register_number")
    assert interior.get("/v1/returnees").get_json()["total"] == 2


def test_given_register_number_is_kept(interior: AgencyClient) -> None:
    response = interior.post("/v1/returnees", json=returnee_body(register_number="RT-2015-000123"))
    assert response.status_code == 201 and response.get_json()["register_number"] == "RT-2015-000123"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"nickname": "x"}, "nickname"),
        ({"status": "vetted"}, "status"),
        ({"version": 7}, "version"),
        ({"citizenship": "Tajikistan"}, "citizenship"),
        ({"birth_date": "1990-02-30"}, "birth_date"),
        ({"birth_date": "90"}, "birth_date"),
        ({"sex": "m"}, "sex"),
        ({"risk_level": "extreme"}, "risk_level"),
        ({"handling_code": "H9"}, "handling_code"),
        ({"person_name": {"given": "A"}}, "person_name"),
        ({"person_name": {"given": "A", "surname": "B", "alias": "C"}}, "person_name"),
        ({"name_variants": [{"value": "x", "script": "grek", "kind": "alias"}]}, "name_variants"),
        ({"identifications": [{"category": "visa", "id": "1", "issuer_country": "TJ"}]}, "identifications"),
        ({"conflict_history": [{"country": "SY", "from": "2015-13"}]}, "conflict_history"),
        ({"accompanying_persons": [{"relation": "son", "full_name": "X"}]}, "accompanying_persons"),
    ],
)
def test_bad_fields_are_422_with_field_errors_and_nothing_stored(
    interior: AgencyClient, app: Flask, overrides: dict[str, Any], field: str
) -> None:
    body = assert_error(interior.post("/v1/returnees", json=returnee_body(**overrides)), 422, "validation_failed")
    assert field in body["errors"]
    assert count_returnees(app) == 0


def test_read_gives_etag_and_the_same_view(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    created = make_returnee()
    response = interior.get(f"/v1/returnees/{created['id']}")
    assert response.status_code == 200 and response.headers["ETag"] == created["_etag"]
    assert response.get_json()["register_number"] == created["register_number"]


def test_list_pages_and_bounds(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    ids = [make_returnee()["id"] for _ in range(5)]
    first = interior.get("/v1/returnees?page=1&page_size=2").get_json()
    second = interior.get("/v1/returnees?page=2&page_size=2").get_json()
    third = interior.get("/v1/returnees?page=3&page_size=2").get_json()
    assert (first["total"], first["page"], first["page_size"]) == (5, 1, 2)
    assert [r["id"] for r in first["items"] + second["items"] + third["items"]] == ids
    assert interior.get("/v1/returnees?page=4&page_size=2").get_json()["items"] == []
    assert interior.get("/v1/returnees").get_json()["page_size"] == 20
    for query, field in (("page_size=101", "page_size"), ("page_size=0", "page_size"), ("page=0", "page"),
                         ("page=x", "page"), ("stauts=reported", "stauts")):
        body = assert_error(interior.get(f"/v1/returnees?{query}"), 422, "validation_failed")
        assert field in body["errors"]


def test_list_filters(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    make_returnee(risk_level="high", citizenship="TJ")
    make_returnee(risk_level="low", citizenship="UZ", register_number="RT-2016-000042")

    def ids(query: str) -> list[str]:
        response = interior.get(f"/v1/returnees?{query}")
        assert response.status_code == 200, response.get_json()
        return [r["register_number"] for r in response.get_json()["items"]]

    assert len(ids("risk_level=high")) == 1
    assert ids("citizenship=UZ") == ["RT-2016-000042"]
    assert ids("register_number=RT-2016-000042") == ["RT-2016-000042"]
    assert len(ids("status=reported")) == 2 and ids("status=closed") == []
    assert len(ids("updated_since=2000-01-01T00:00:00Z")) == 2 and ids("updated_since=2999-01-01T00:00:00Z") == []
    assert_error(interior.get("/v1/returnees?status=sleeping"), 422, "validation_failed")


def test_update_with_if_match(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    response = interior.patch(path, json={"risk_level": "high", "birth_place": "Kulob"},
                              headers={"If-Match": created["_etag"]})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert (data["risk_level"], data["birth_place"], data["version"]) == ("high", "Kulob", 2)
    assert response.headers["ETag"] == '"2"'
    assert data["register_number"] == created["register_number"]


def test_stale_write_is_412_and_changes_nothing(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    # two officers read version 1; the first writes, the second's write is stale
    assert interior.patch(path, json={"risk_level": "high"}, headers={"If-Match": '"1"'}).status_code == 200
    assert_error(interior.patch(path, json={"risk_level": "low"}, headers={"If-Match": '"1"'}), 412,
                 "precondition_failed")
    for tag in ('W/"2"', '"2", "3"', '"abc"'):
        assert_error(interior.patch(path, json={"risk_level": "low"}, headers={"If-Match": tag}), 412,
                     "precondition_failed")
    current = interior.get(path).get_json()
    assert (current["risk_level"], current["version"]) == ("high", 2)


def test_write_without_if_match_is_428(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    assert_error(interior.patch(path, json={"risk_level": "high"}), 428, "precondition_required")
    assert interior.get(path).get_json()["version"] == 1
    # "*" means "whatever version is current": allowed for a deliberate overwrite
    assert interior.patch(path, json={"risk_level": "high"}, headers={"If-Match": "*"}).status_code == 200


@pytest.mark.parametrize(
    "changes", [{"status": "closed"}, {"register_number": "RT-2000-000001"}, {"version": 9}, {}, {"sex": "x"}]
)
def test_update_refuses_fields_it_may_not_change(
    make_returnee: MakeReturnee, interior: AgencyClient, changes: dict[str, Any]
) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    assert_error(interior.patch(path, json=changes, headers={"If-Match": '"1"'}), 422, "validation_failed")
    after = interior.get(path).get_json()
    assert (after["version"], after["status"], after["register_number"]) == (1, "reported", created["register_number"])


def test_other_agencies_may_not_register_or_change(
    make_returnee: MakeReturnee, border: AgencyClient, prosecutor: AgencyClient, as_agency: Callable[..., Any],
    app: Flask,
) -> None:
    created = make_returnee()
    # none of these agencies' tokens carries returnees:write; auditors and security officers read nothing either
    for client in (border, prosecutor, as_agency("auditor"), as_agency("security")):
        assert_error(client.post("/v1/returnees", json=returnee_body()), 403, "insufficient_scope")
        assert_error(client.patch(f"/v1/returnees/{created['id']}", json={"risk_level": "high"},
                                  headers={"If-Match": '"1"'}), 403, "insufficient_scope")
    for client in (as_agency("auditor"), as_agency("security")):
        assert_error(client.get(f"/v1/returnees/{created['id']}"), 403, "insufficient_scope")
        assert_error(client.get("/v1/returnees"), 403, "insufficient_scope")
    # a border client given a register scope by mistake is still held to need to know
    mistaken = as_agency("border", scopes=frozenset({"returnees:write"}))
    assert_error(mistaken.post("/v1/returnees", json=returnee_body()), 403, "not_permitted")
    assert count_returnees(app) == 1


def test_search_keys_follow_name_and_document_changes(
    make_returnee: MakeReturnee, interior: AgencyClient, app: Flask
) -> None:
    created = make_returnee()
    interior.patch(f"/v1/returnees/{created['id']}", headers={"If-Match": '"1"'}, json={
        "identifications": [{"category": "passport", "id": "500 999-111", "issuer_country": "TJ"}]})
    with Session(app.extensions["exchange.db"]) as session:
        documents = session.scalars(select(ReturneeSearchKey.key).where(ReturneeSearchKey.kind == "document")).all()
    assert documents == ["500999111"]


def test_a_write_that_changes_no_value_makes_no_version_and_is_still_conditional(
    make_returnee: MakeReturnee, interior: AgencyClient
) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    body = assert_error(interior.patch(path, json={}, headers={"If-Match": '"1"'}), 422, "validation_failed")
    assert "_schema" in body["errors"]
    for same in ({"risk_level": created["risk_level"]}, {"person_name": created["person_name"],
                                                          "identifications": created["identifications"]}):
        response = interior.patch(path, json=same, headers={"If-Match": '"1"'})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["version"] == 1 and response.headers["ETag"] == '"1"'
        assert response.get_json()["updated_at"] == created["updated_at"]
        assert_error(interior.patch(path, json=same, headers={"If-Match": '"2"'}), 412, "precondition_failed")
    changed = interior.patch(path, json={"risk_level": "high"}, headers={"If-Match": '"1"'})
    assert changed.status_code == 200 and changed.get_json()["version"] == 2


def test_identification_expiry_dates_round_trip(interior: AgencyClient) -> None:
    body = returnee_body(identifications=[{"category": "passport", "id": "400123456", "issuer_country": "TJ",
                                           "expires": "2030-06-30"}])
    response = interior.post("/v1/returnees", json=body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["identifications"][0]["expires"] == "2030-06-30"
    bad = returnee_body(identifications=[{"category": "passport", "id": "1", "issuer_country": "TJ",
                                          "expires": "2030-02-30"}])
    assert_error(interior.post("/v1/returnees", json=bad), 422, "validation_failed")
