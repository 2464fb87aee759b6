"""`POST /v1/screening/manifests`: at most 500 travellers, one answer, one audit entry naming every record returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.audit.conftest import stored_entries
from tests.conftest import AgencyClient
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]


def traveller(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "flight": "FZ 341", **extra}


def test_more_than_500_travellers_are_refused_with_their_own_code(app: Flask, border: AgencyClient) -> None:
    before = len(stored_entries(app))
    response = border.post("/v1/screening/manifests", json={"travellers": [traveller("A B")] * 501})
    assert_error(response, 422, "manifest_too_large")
    assert "500" in response.get_json()["message"]
    assert stored_entries(app)[before:][-1]["outcome"] == "failure"


def test_a_manifest_of_exactly_the_limit_is_screened(monkeypatch: pytest.MonkeyPatch, border: AgencyClient) -> None:
    monkeypatch.setattr("exchange.register.services.MANIFEST_LIMIT", 3)
    assert border.post("/v1/screening/manifests",
                       json={"travellers": [traveller("A B")] * 3}).status_code == 200
    assert_error(border.post("/v1/screening/manifests", json={"travellers": [traveller("A B")] * 4}),
                 422, "manifest_too_large")


@pytest.mark.parametrize("body, field", [
    ({"travellers": []}, "travellers"),
    ({"travellers": [{"name": "A B"}]}, "travellers"),  # neither flight nor crossing point
    ({"travellers": [traveller("A B", nationality="Tajik")]}, "travellers"),
    ({"travellers": [traveller("A B")], "limit": 0}, "limit"),
])
def test_a_malformed_manifest_is_refused(border: AgencyClient, body: dict[str, Any], field: str) -> None:
    error = assert_error(border.post("/v1/screening/manifests", json=body), 422, "validation_failed")
    assert field in error["errors"]


def test_only_the_border_screens_manifests(interior: AgencyClient, prosecutor: AgencyClient) -> None:
    body = {"travellers": [traveller("A B")]}
    assert_error(interior.post("/v1/screening/manifests", json=body), 403, "insufficient_scope")
    assert_error(prosecutor.post("/v1/screening/manifests", json=body), 403, "insufficient_scope")


def test_one_audit_entry_names_every_record_returned(app: Flask, make_returnee: MakeReturnee,
                                                     border: AgencyClient) -> None:
    first = make_returnee(person_name={"given": "Гулмурод", "surname": "Халимов"}, name_variants=[])
    second = make_returnee(person_name={"given": "Фирдавс", "surname": "Раҳимов"}, name_variants=[],
                           birth_date="1994-02-11", identifications=[])
    before = len(stored_entries(app))
    response = border.post("/v1/screening/manifests", json={"travellers": [
        traveller("Gulmurod Halimov", birth_date="1975-05-14"), traveller("Nobody Known At All"),
        traveller("Firdavs Rahimov", birth_date="1994-02-11", document_number="XX"),
    ]})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    returned = {c["returnee"]["id"] for t in answer["travellers"] for c in t["candidates"]}
    assert {first["id"], second["id"]} <= returned
    assert [t["index"] for t in answer["travellers"]] == [0, 1, 2] and answer["travellers"][1]["candidates"] == []
    entries = stored_entries(app)[before:]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["action"] == "consult" and entry["path"] == "/v1/screening/manifests"
    assert set(entry["record_ids"]) == returned
