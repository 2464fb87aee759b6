"""The records of a returnee (hotline contacts, border instructions, crossings, vetting, decisions) and need to know.

For every kind: create, read with ETag, list with paging and filters, change with If-Match, and refusals (bad input,
wrong agency, unknown id) that change nothing. Then what each agency sees of a returnee, the unmatched-crossing flow
and emergency travel documents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.register.models import (
    BorderCrossing,
    BorderInstruction,
    HotlineContact,
    ProsecutorialDecision,
    Record,
    Returnee,
    VettingAssessment,
)
from tests.conftest import AgencyClient, refusal_code, returnee_body
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]
ReturneeIn = Callable[[str], dict[str, Any]]
AsAgency = Callable[..., AgencyClient]

ALL_AGENCIES = ("interior", "border", "prosecutor", "auditor", "security")
AT = "2015-06-01T10:00:00Z"
UNKNOWN_ID = "6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"
MODELS: tuple[type[Record], ...] = (
    Returnee, HotlineContact, BorderInstruction, BorderCrossing, VettingAssessment, ProsecutorialDecision,
)


# ---- bodies --------------------------------------------------------------------------------------------------------


def hotline_body(returnee_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"received_at": AT, "channel": "hotline", "caller_relation": "mother",
                            "location_country": "SY", "intent_to_return": True,
                            "summary": "Mother says her son wants to leave Raqqa and come home."}
    if returnee_id is not None:
        body["returnee_id"] = returnee_id
    return {**body, **overrides}


def instruction_body(returnee_id: str, instruction: str = "NOTIFY_ONLY", **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "instruction": instruction,
            "reason": "Hotline contact 2015-06-01; intends to return via Istanbul.", **overrides}


def crossing_body(returnee_id: str | None, direction: str = "entry", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"crossing_point": "DYU airport", "direction": direction, "occurred_at": AT,
                            "outcome": "admitted",
                            "documents_presented": [{"category": "passport", "id": "400123456",
                                                     "issuer_country": "TJ"}]}
    if returnee_id is not None:
        body["returnee_id"] = returnee_id
    return {**body, **overrides}


def vetting_body(returnee_id: str, **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "interviewed_at": AT, "genuine_repentance": "yes", "risk_level": "medium",
            "findings": "Served as a driver near Raqqa; account consistent with intercepts.",
            "reintegration_plan": "Vocational training in Kulob.", "source_reliability": "B",
            "information_accuracy": "2", **overrides}


def decision_body(returnee_id: str, decision: str = "no_case", **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "decision": decision, "case_number": "GP-2015-0042", "decided_at": AT,
            "statute": "Criminal Code art. 401-1", **overrides}


# ---- helpers -------------------------------------------------------------------------------------------------------


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    data["_etag"] = response.headers["ETag"]
    return data


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    data["_etag"] = response.headers.get("ETag")
    return data


def read(client: AgencyClient, path: str) -> dict[str, Any]:
    return ok(client.get(path))


def listed(client: AgencyClient, path: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"{path}?{query}" if query else path)
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def ids(client: AgencyClient, path: str, query: str = "") -> list[str]:
    return [item["id"] for item in listed(client, path, query)["items"]]


def counts(app: Flask) -> dict[str, int]:
    with Session(app.extensions["exchange.db"]) as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0 for m in MODELS}


def snapshot(returnee: dict[str, Any]) -> tuple[Any, ...]:
    return (returnee["status"], returnee["version"], returnee["updated_at"], returnee["risk_level"],
            returnee["identifications"])


def transition(client: AgencyClient, returnee_id: str, to: str) -> None:
    ok(client.post(f"/v1/returnees/{returnee_id}/transitions", json={"to": to}))


@pytest.fixture
def returnee_in(make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient) -> ReturneeIn:
    """Factory: a fresh returnee brought through the API to one of the statuses records need; its interior view."""

    def make(status: str) -> dict[str, Any]:
        rid = make_returnee()["id"]
        if status == "expected":
            created(interior.post("/v1/border-instructions", json=instruction_body(rid, "ASSIST_RETURN")))
        if status in ("arrived", "under_vetting", "under_review"):
            created(border.post("/v1/border-crossings", json=crossing_body(rid)))
        if status in ("under_vetting", "under_review"):
            transition(interior, rid, "under_vetting")
        if status == "under_review":
            created(interior.post("/v1/vetting-assessments", json=vetting_body(rid)))
            transition(interior, rid, "vetted")
            transition(interior, rid, "under_review")
        if status == "closed":
            transition(interior, rid, "closed")
        returnee = read(interior, f"/v1/returnees/{rid}")
        assert returnee["status"] == status
        return returnee

    return make


# ---- the five kinds, as data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    path: str
    model: type[Record]
    writer: str
    readers: frozenset[str]
    updaters: frozenset[str]
    status: str  # the returnee status in which the writer may record one
    body: Callable[[str], dict[str, Any]]
    change: dict[str, Any]  # a valid PATCH
    frozen: dict[str, Any]  # a field of the record that the update schema does not accept
    echo: tuple[str, ...] = field(default=())  # body fields the view gives back unchanged


KINDS = [
    Kind("/v1/hotline-contacts", HotlineContact, "interior", frozenset({"interior", "prosecutor"}),
         frozenset({"interior"}), "reported", hotline_body, {"summary": "Corrected: he is in Idlib."},
         {"returnee_id": UNKNOWN_ID},
         ("channel", "caller_relation", "location_country", "intent_to_return", "summary")),
    Kind("/v1/border-instructions", BorderInstruction, "interior", frozenset({"interior", "border", "prosecutor"}),
         frozenset({"interior"}), "reported", instruction_body, {"reason": "Now wanted for questioning."},
         {"instruction": "DETAIN"}, ("instruction", "reason")),
    Kind("/v1/border-crossings", BorderCrossing, "border", frozenset({"interior", "border", "prosecutor"}),
         frozenset({"border", "interior"}), "arrived", crossing_body, {"outcome": "handed_over"},
         {"direction": "exit"}, ("crossing_point", "direction", "outcome", "documents_presented")),
    Kind("/v1/vetting-assessments", VettingAssessment, "interior", frozenset({"interior", "prosecutor"}),
         frozenset({"interior"}), "under_vetting", vetting_body, {"findings": "Second interview: consistent."},
         {"returnee_id": UNKNOWN_ID}, ("genuine_repentance", "risk_level", "findings", "source_reliability",
                                      "information_accuracy")),
    Kind("/v1/prosecutorial-decisions", ProsecutorialDecision, "prosecutor", frozenset({"interior", "prosecutor"}),
         frozenset({"prosecutor"}), "under_review", decision_body, {"notes": "Reviewed with the deputy."},
         {"decision": "charges_filed"}, ("decision", "case_number", "statute")),
]
KIND_IDS = [k.path.removeprefix("/v1/") for k in KINDS]


@pytest.fixture(params=KINDS, ids=KIND_IDS)
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


@pytest.fixture
def subject(kind: Kind, returnee_in: ReturneeIn) -> dict[str, Any]:
    """A returnee in the status where `kind` may be recorded."""
    return returnee_in(kind.status)


# ---- every kind: create, read, list, change ------------------------------------------------------------------------


def test_create_and_read_with_etag(kind: Kind, subject: dict[str, Any], as_agency: AsAgency) -> None:
    writer = as_agency(kind.writer)
    body = kind.body(subject["id"])
    response = writer.post(kind.path, json=body)
    record = created(response)
    assert record["_etag"] == f'"{record["version"]}"'
    assert record["version"] == 1  # a new record starts at version 1, whatever its kind
    assert response.headers["Location"].endswith(f"{kind.path}/{record['id']}")
    assert record["returnee_id"] == subject["id"]
    assert {name: record[name] for name in kind.echo} == {name: body[name] for name in kind.echo}
    again = read(writer, f"{kind.path}/{record['id']}")
    assert again["_etag"] == record["_etag"]
    assert {k: v for k, v in again.items() if k != "_etag"} == {k: v for k, v in record.items() if k != "_etag"}
    for reader in kind.readers:
        assert read(as_agency(reader), f"{kind.path}/{record['id']}")["id"] == record["id"]


def test_list_pages_in_creation_order(kind: Kind, subject: dict[str, Any], as_agency: AsAgency) -> None:
    writer = as_agency(kind.writer)
    before = ids(writer, kind.path, "page_size=100")
    new = [created(writer.post(kind.path, json=kind.body(subject["id"])))["id"] for _ in range(3)]
    total = len(before) + 3
    pages = [listed(writer, kind.path, f"page={n}&page_size=2") for n in range(1, total // 2 + 2)]
    assert [(p["page"], p["page_size"], p["total"]) for p in pages] == [(n, 2, total) for n in range(1, len(pages) + 1)]
    assert [item["id"] for p in pages for item in p["items"]] == before + new
    beyond = listed(writer, kind.path, f"page={len(pages) + 1}&page_size=2")
    assert (beyond["items"], beyond["total"]) == ([], total)
    assert listed(writer, kind.path)["page_size"] == 20


@pytest.mark.parametrize(("query", "name"), [("page_size=0", "page_size"), ("page_size=101", "page_size"),
                                             ("page=0", "page"), ("returnee_id=x", "returnee_id"),
                                             ("colour=blue", "colour")])
def test_list_refuses_bad_queries(kind: Kind, as_agency: AsAgency, query: str, name: str) -> None:
    body = assert_error(as_agency(kind.writer).get(f"{kind.path}?{query}"), 422, "validation_failed")
    assert name in body["errors"]


def test_list_filters_by_returnee(kind: Kind, returnee_in: ReturneeIn, as_agency: AsAgency) -> None:
    writer = as_agency(kind.writer)
    first, second = returnee_in(kind.status), returnee_in(kind.status)
    mine = [created(writer.post(kind.path, json=kind.body(first["id"])))["id"] for _ in range(2)]
    created(writer.post(kind.path, json=kind.body(second["id"])))
    found = listed(writer, kind.path, f"returnee_id={first['id']}")
    mine_before = [r for r in found["items"] if r["id"] not in mine]  # records the walk itself made
    assert [r["id"] for r in found["items"] if r["id"] in mine] == mine
    assert all(r["returnee_id"] == first["id"] for r in found["items"])
    assert found["total"] == len(mine) + len(mine_before)
    assert listed(writer, kind.path, f"returnee_id={UNKNOWN_ID}")["total"] == 0


def test_change_with_if_match(kind: Kind, subject: dict[str, Any], as_agency: AsAgency) -> None:
    writer_for_change = as_agency(sorted(kind.updaters)[0])
    record = created(as_agency(kind.writer).post(kind.path, json=kind.body(subject["id"])))
    path = f"{kind.path}/{record['id']}"
    response = writer_for_change.patch(path, json=kind.change, headers={"If-Match": record["_etag"]})
    changed = ok(response)
    assert changed["version"] == record["version"] + 1 and changed["_etag"] == f'"{changed["version"]}"'
    assert {k: changed[k] for k in kind.change} == kind.change
    assert read(writer_for_change, path)["version"] == changed["version"]


def test_change_that_changes_nothing_makes_no_new_version(
    kind: Kind, subject: dict[str, Any], as_agency: AsAgency
) -> None:
    """`PATCH {}` is 422; a PATCH that sets fields to the values they have answers 200 with the record as it is:
    same version, ETag and updated_at (README, "Using the API")."""
    updater = as_agency(sorted(kind.updaters)[0])
    record = created(as_agency(kind.writer).post(kind.path, json=kind.body(subject["id"])))
    path = f"{kind.path}/{record['id']}"
    current = read(updater, path)
    body = assert_error(updater.patch(path, json={}, headers={"If-Match": record["_etag"]}), 422, "validation_failed")
    assert "_schema" in body["errors"]
    same_values = {name: current[name] for name in kind.change}
    unchanged = ok(updater.patch(path, json=same_values, headers={"If-Match": record["_etag"]}))
    assert (unchanged["version"], unchanged["_etag"], unchanged["updated_at"]) == (
        current["version"], current["_etag"], current["updated_at"])
    assert_error(updater.patch(path, json=same_values, headers={"If-Match": '"99"'}), 412, "precondition_failed")
    changed = ok(updater.patch(path, json=kind.change, headers={"If-Match": record["_etag"]}))
    assert changed["version"] == current["version"] + 1


@pytest.mark.parametrize("bad", ["nul \u0000 inside", "lone \ud800 surrogate", "\udfff"])
def test_unstorable_text_in_any_field_is_refused_and_stores_nothing(
    kind: Kind, subject: dict[str, Any], as_agency: AsAgency, app: Flask, bad: str
) -> None:
    """A NUL or an unpaired surrogate, sent as JSON escapes, in a record's text field: 422 on every database."""
    text = bad
    writer = as_agency(kind.writer)
    body = kind.body(subject["id"])
    name = next(k for k in kind.echo if isinstance(body.get(k), str))
    before = counts(app)
    raw = json_with_escapes({**body, name: text})
    response = writer.post(kind.path, data=raw, content_type="application/json")
    assert name in assert_error(response, 422, "validation_failed")["errors"]
    assert counts(app) == before
    record = created(writer.post(kind.path, json=body))
    updater = as_agency(sorted(kind.updaters)[0])
    field_name = next(iter(kind.change))
    response = updater.patch(f"{kind.path}/{record['id']}", data=json_with_escapes({field_name: text}),
                             content_type="application/json", headers={"If-Match": record["_etag"]})
    assert field_name in assert_error(response, 422, "validation_failed")["errors"]
    assert read(updater, f"{kind.path}/{record['id']}")["version"] == record["version"]


def json_with_escapes(body: dict[str, Any]) -> str:
    """JSON as an attacker sends it: NUL and lone surrogates as \\u escapes (json.dumps escapes them)."""
    import json

    return json.dumps(body)


def test_change_refusals_change_nothing(kind: Kind, subject: dict[str, Any], as_agency: AsAgency) -> None:
    updater = as_agency(sorted(kind.updaters)[0])
    record = created(as_agency(kind.writer).post(kind.path, json=kind.body(subject["id"])))
    path = f"{kind.path}/{record['id']}"
    ok(updater.patch(path, json=kind.change, headers={"If-Match": record["_etag"]}))
    current = read(updater, path)
    fresh = {"If-Match": current["_etag"]}
    other_change = {name: f"{value} (again)" for name, value in kind.change.items()}
    if kind.model is BorderCrossing:
        other_change = {"outcome": "detained"}
    assert_error(updater.patch(path, json=other_change, headers={"If-Match": record["_etag"]}), 412,
                 "precondition_failed")
    assert_error(updater.patch(path, json=other_change), 428, "precondition_required")
    body = assert_error(updater.patch(path, json=kind.frozen, headers=fresh), 422, "validation_failed")
    assert set(kind.frozen) <= set(body["errors"])
    body = assert_error(updater.patch(path, json={**kind.change, "colour": "blue"}, headers=fresh), 422,
                        "validation_failed")
    assert "colour" in body["errors"]
    assert read(updater, path) == current


def test_unknown_field_on_create_stores_nothing(
    kind: Kind, subject: dict[str, Any], as_agency: AsAgency, interior: AgencyClient, app: Flask
) -> None:
    before = counts(app)
    response = as_agency(kind.writer).post(kind.path, json={**kind.body(subject["id"]), "colour": "blue"})
    assert "colour" in assert_error(response, 422, "validation_failed")["errors"]
    assert counts(app) == before
    assert snapshot(read(interior, f"/v1/returnees/{subject['id']}")) == snapshot(subject)


def test_wrong_agency_may_not_record(
    kind: Kind, subject: dict[str, Any], as_agency: AsAgency, interior: AgencyClient, app: Flask
) -> None:
    before = counts(app)
    for agency in ALL_AGENCIES:
        if agency != kind.writer:
            client = as_agency(agency)
            assert_error(client.post(kind.path, json=kind.body(subject["id"])), 403,
                         refusal_code(client, "POST", kind.path))
    assert counts(app) == before
    assert snapshot(read(interior, f"/v1/returnees/{subject['id']}")) == snapshot(subject)


def test_wrong_agency_may_not_read_or_change(kind: Kind, subject: dict[str, Any], as_agency: AsAgency) -> None:
    writer = as_agency(kind.writer)
    record = created(writer.post(kind.path, json=kind.body(subject["id"])))
    path = f"{kind.path}/{record['id']}"
    for agency in ALL_AGENCIES:
        client = as_agency(agency)
        if agency not in kind.readers:
            assert_error(client.get(path), 403, refusal_code(client, "GET", path))
            assert_error(client.get(kind.path), 403, refusal_code(client, "GET", kind.path))
            assert_error(client.get(f"{kind.path}/{UNKNOWN_ID}"), 403, refusal_code(client, "GET", path))
        if agency not in kind.updaters:
            assert_error(client.patch(path, json=kind.change, headers={"If-Match": record["_etag"]}), 403,
                         refusal_code(client, "PATCH", path))
    assert read(writer, path) == {**record, "_etag": record["_etag"]}


def test_unknown_ids_are_404(
    kind: Kind, subject: dict[str, Any], as_agency: AsAgency, interior: AgencyClient, app: Flask
) -> None:
    writer = as_agency(kind.writer)
    assert_error(writer.get(f"{kind.path}/{UNKNOWN_ID}"), 404, "not_found")
    assert_error(writer.patch(f"{kind.path}/{UNKNOWN_ID}", json=kind.change, headers={"If-Match": '"1"'}), 404,
                 "not_found")
    before = counts(app)
    assert_error(writer.post(kind.path, json=kind.body(UNKNOWN_ID)), 404, "not_found")
    assert counts(app) == before


# ---- hotline contacts ----------------------------------------------------------------------------------------------


def test_hotline_contact_may_register_a_new_returnee(interior: AgencyClient, app: Flask) -> None:
    contact = created(interior.post("/v1/hotline-contacts",
                                    json=hotline_body(new_returnee=returnee_body(birth_place="Kulob"))))
    returnee = read(interior, f"/v1/returnees/{contact['returnee_id']}")
    assert (returnee["status"], returnee["birth_place"]) == ("reported", "Kulob")
    assert [c["id"] for c in returnee["hotline_contacts"]] == [contact["id"]]
    assert counts(app)["returnees"] == 1 and counts(app)["hotline_contacts"] == 1


@pytest.mark.parametrize("subject_fields", ["both", "neither"])
def test_hotline_contact_needs_exactly_one_subject(
    make_returnee: MakeReturnee, interior: AgencyClient, app: Flask, subject_fields: str
) -> None:
    existing = make_returnee()
    body = hotline_body(existing["id"], new_returnee=returnee_body()) if subject_fields == "both" else hotline_body()
    before = counts(app)
    response = interior.post("/v1/hotline-contacts", json=body)
    assert "returnee_id" in assert_error(response, 422, "validation_failed")["errors"]
    assert counts(app) == before


def test_hotline_contact_with_bad_new_returnee_stores_nothing(interior: AgencyClient, app: Flask) -> None:
    response = interior.post("/v1/hotline-contacts", json=hotline_body(new_returnee=returnee_body(citizenship="TJK")))
    assert "new_returnee" in assert_error(response, 422, "validation_failed")["errors"]
    assert counts(app) == {m.__tablename__: 0 for m in MODELS}


def test_hotline_contacts_filter_by_channel(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    rid = make_returnee()["id"]
    by_phone = created(interior.post("/v1/hotline-contacts", json=hotline_body(rid)))["id"]
    by_relative = created(interior.post("/v1/hotline-contacts", json=hotline_body(rid, channel="relative")))["id"]
    assert ids(interior, "/v1/hotline-contacts", "channel=hotline") == [by_phone]
    assert ids(interior, "/v1/hotline-contacts", "channel=relative") == [by_relative]
    assert_error(interior.get("/v1/hotline-contacts?channel=fax"), 422, "validation_failed")


# ---- border instructions -------------------------------------------------------------------------------------------


# valid_from, reason, issued_by and when it was issued are not the border's; nor, therefore, the version and
# updated_at, which move when interior edits the reason
BORDER_INSTRUCTION_KEYS = {"id", "returnee_id", "instruction", "valid_until"}


def test_border_sees_instruction_without_reason(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    rid = make_returnee()["id"]
    body = instruction_body(rid, "DETAIN", valid_from="2015-06-01T00:00:00Z", valid_until="2099-01-01T00:00:00Z",
                            issued_by="TJ-MVD-00001")
    record = created(interior.post("/v1/border-instructions", json=body))
    path = f"/v1/border-instructions/{record['id']}"
    seen = read(border, path)
    assert set(seen) - {"_etag", "view"} == BORDER_INSTRUCTION_KEYS
    assert (seen["instruction"], seen["valid_until"]) == ("DETAIN", "2099-01-01T00:00:00+00:00")
    assert [set(item) for item in listed(border, "/v1/border-instructions")["items"]] == [BORDER_INSTRUCTION_KEYS]
    for client in (interior, prosecutor):
        full = read(client, path)
        assert (full["reason"], full["issued_by"], full["valid_from"]) == (
            body["reason"], "TJ-MVD-00001", "2015-06-01T00:00:00+00:00")


def test_instruction_defaults_valid_from_and_issuer(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    record = created(interior.post("/v1/border-instructions", json=instruction_body(make_returnee()["id"])))
    assert record["issued_by"] == "TJ-MVD-04411"
    issued, stored = datetime.fromisoformat(record["valid_from"]), datetime.fromisoformat(record["created_at"])
    assert abs(stored - issued) < timedelta(minutes=1)


def test_instructions_filter_by_kind_and_activity(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    rid = make_returnee()["id"]
    june = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "DETAIN", valid_from="2015-06-01T00:00:00Z", valid_until="2015-07-01T00:00:00Z")))["id"]
    open_ended = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "REFER_TO_INTERIOR", valid_from="2015-06-10T00:00:00Z")))["id"]
    path = "/v1/border-instructions"
    assert ids(interior, path, "instruction=DETAIN") == [june]
    assert ids(interior, path, "active_at=2015-06-05T00:00:00Z") == [june]
    assert ids(interior, path, "active_at=2015-06-15T00:00:00Z") == [june, open_ended]
    assert ids(interior, path, "active_at=2015-07-01T00:00:00Z") == [open_ended]
    assert ids(interior, path, "active_at=2015-05-01T00:00:00Z") == []
    assert_error(interior.get(f"{path}?instruction=SHOOT"), 422, "validation_failed")


@pytest.mark.parametrize(
    "window",
    [
        {"valid_from": "2015-06-02T00:00:00Z", "valid_until": "2015-06-01T00:00:00Z"},
        {"valid_from": "2015-06-01T00:00:00Z", "valid_until": "2015-06-01T00:00:00Z"},
        {"valid_until": "2015-06-01T00:00:00Z"},  # valid_from defaults to now, after valid_until
        {"valid_from": "2015-06-01T00:00:00"},  # no time zone
    ],
)
def test_instruction_window_must_be_valid(
    make_returnee: MakeReturnee, interior: AgencyClient, app: Flask, window: dict[str, str]
) -> None:
    returnee = make_returnee()
    before = counts(app)
    response = interior.post("/v1/border-instructions", json=instruction_body(returnee["id"], "ASSIST_RETURN",
                                                                             **window))
    assert_error(response, 422, "validation_failed")
    assert counts(app) == before
    assert snapshot(read(interior, f"/v1/returnees/{returnee['id']}")) == snapshot(returnee)


def test_instruction_change_may_not_end_before_it_starts(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    record = created(interior.post("/v1/border-instructions", json=instruction_body(
        make_returnee()["id"], valid_from="2015-06-10T00:00:00Z")))
    path = f"/v1/border-instructions/{record['id']}"
    response = interior.patch(path, json={"valid_until": "2015-06-01T00:00:00Z"}, headers={"If-Match": '"1"'})
    assert_error(response, 422, "validation_failed")
    current = read(interior, path)
    assert (current["version"], current["valid_until"]) == (1, None)


def test_instruction_change_can_end_it(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    returnee = make_returnee()
    record = created(interior.post("/v1/border-instructions", json=instruction_body(
        returnee["id"], valid_from="2015-06-01T00:00:00Z")))
    path = f"/v1/returnees/{returnee['id']}"
    assert read(interior, path)["active_border_instruction"]["id"] == record["id"]
    ok(interior.patch(f"/v1/border-instructions/{record['id']}", json={"valid_until": "2015-06-02T00:00:00Z"},
                      headers={"If-Match": '"1"'}))
    assert read(interior, path)["active_border_instruction"] is None


# ---- border crossings ----------------------------------------------------------------------------------------------


def test_matched_entry_is_not_flagged(returnee_in: ReturneeIn, border: AgencyClient) -> None:
    rid = returnee_in("expected")["id"]
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(rid)))
    assert (crossing["matched"], crossing["flagged_for_interior"], crossing["officer"]) == (True, False, "TJ-PS-017")


def test_unmatched_entry_is_flagged_for_interior(border: AgencyClient, interior: AgencyClient, app: Flask) -> None:
    response = border.post("/v1/border-crossings", json=crossing_body(None))
    assert "traveller_name" in assert_error(response, 422, "validation_failed")["errors"]
    assert counts(app)["border_crossings"] == 0
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(
        None, traveller_name="Gulmurod Halimov", traveller_birth_date="1975")))
    assert (crossing["returnee_id"], crossing["matched"], crossing["flagged_for_interior"]) == (None, False, True)
    assert (crossing["traveller_name"], crossing["traveller_birth_date"]) == ("Gulmurod Halimov", "1975")
    exit_ = created(border.post("/v1/border-crossings", json=crossing_body(None, "exit", traveller_name="A B")))
    assert exit_["flagged_for_interior"] is False
    path = "/v1/border-crossings"
    assert ids(interior, path, "flagged_for_interior=true") == [crossing["id"]]
    assert ids(interior, path, "unmatched=true") == [crossing["id"], exit_["id"]]
    assert ids(interior, path, "unmatched=false") == []
    assert counts(app)["returnees"] == 0


def test_interior_links_unmatched_entry_and_returnee_arrives(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(None, traveller_name="Gulmurod H.")))
    path = f"/v1/border-crossings/{crossing['id']}"
    linked = ok(interior.patch(path, json={"returnee_id": returnee["id"]}, headers={"If-Match": crossing["_etag"]}))
    assert (linked["returnee_id"], linked["matched"], linked["flagged_for_interior"]) == (returnee["id"], True, False)
    assert linked["version"] == 2
    after = read(interior, f"/v1/returnees/{returnee['id']}")
    assert (after["status"], after["version"]) == ("arrived", returnee["version"] + 1)
    assert [c["id"] for c in after["border_crossings"]] == [crossing["id"]]
    assert ids(interior, "/v1/border-crossings", "flagged_for_interior=true") == []
    assert ids(interior, "/v1/border-crossings", f"returnee_id={returnee['id']}") == [crossing["id"]]


def test_linked_crossing_cannot_be_relinked(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    first, second = returnee_in("reported"), returnee_in("reported")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(first["id"])))
    path = f"/v1/border-crossings/{crossing['id']}"
    response = interior.patch(path, json={"returnee_id": second["id"]}, headers={"If-Match": crossing["_etag"]})
    assert_error(response, 409, "invalid_state")
    current = read(interior, path)
    assert (current["returnee_id"], current["version"]) == (first["id"], crossing["version"])
    assert snapshot(read(interior, f"/v1/returnees/{second['id']}")) == snapshot(second)


def test_linking_to_unknown_or_closed_returnee_changes_nothing(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    closed = returnee_in("closed")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(None, traveller_name="X Y")))
    path = f"/v1/border-crossings/{crossing['id']}"
    assert_error(interior.patch(path, json={"returnee_id": UNKNOWN_ID}, headers={"If-Match": '"1"'}), 404,
                 "not_found")
    assert_error(interior.patch(path, json={"returnee_id": closed["id"]}, headers={"If-Match": '"1"'}), 409,
                 "invalid_state")
    current = read(interior, path)
    assert (current["version"], current["returnee_id"], current["flagged_for_interior"]) == (1, None, True)
    assert snapshot(read(interior, f"/v1/returnees/{closed['id']}")) == snapshot(closed)


def test_prosecutor_may_not_link_or_correct_crossings(
    returnee_in: ReturneeIn, border: AgencyClient, prosecutor: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(None, traveller_name="X Y")))
    path = f"/v1/border-crossings/{crossing['id']}"
    response = prosecutor.patch(path, json={"returnee_id": returnee["id"]}, headers={"If-Match": '"1"'})
    assert_error(response, 403, "insufficient_scope")
    assert read(interior, path)["version"] == 1
    assert snapshot(read(interior, f"/v1/returnees/{returnee['id']}")) == snapshot(returnee)


def test_crossings_filter(returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient) -> None:
    rid = returnee_in("arrived")["id"]
    walked = ids(interior, "/v1/border-crossings")  # the walk's own entry at DYU, at AT
    out = created(border.post("/v1/border-crossings", json=crossing_body(
        rid, "exit", crossing_point="Panji Poyon", occurred_at="2015-07-01T08:00:00Z")))["id"]
    back = created(border.post("/v1/border-crossings", json=crossing_body(
        rid, crossing_point="Panji Poyon", occurred_at="2015-08-01T08:00:00Z")))["id"]
    path = "/v1/border-crossings"
    assert ids(interior, path, "direction=exit") == [out]
    assert ids(interior, path, "crossing_point=Panji Poyon") == [out, back]
    assert ids(interior, path, "occurred_from=2015-07-01T08:00:00Z") == [out, back]
    assert ids(interior, path, "occurred_to=2015-07-01T08:00:00Z") == walked
    assert ids(interior, path, "occurred_from=2015-06-15T00:00:00Z&occurred_to=2015-07-15T00:00:00Z") == [out]
    assert_error(interior.get(f"{path}?direction=sideways"), 422, "validation_failed")


# ---- emergency travel documents ------------------------------------------------------------------------------------


def emergency_documents(returnee: dict[str, Any]) -> list[str]:
    return [i["id"] for i in returnee["identifications"] if i["category"] == "emergency_travel_document"]


def test_emergency_document_on_entry_is_added_once(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    created(border.post("/v1/border-crossings", json=crossing_body(returnee["id"],
                                                                  emergency_document_number="ETD-2015-0042")))
    after = read(interior, f"/v1/returnees/{returnee['id']}")
    assert emergency_documents(after) == ["ETD-2015-0042"]
    added = next(i for i in after["identifications"] if i["id"] == "ETD-2015-0042")
    assert added["status"] == "valid"
    assert after["identifications"][0] == returnee["identifications"][0]  # the passport is kept
    created(border.post("/v1/border-crossings", json=crossing_body(returnee["id"], "exit",
                                                                  emergency_document_number="ETD-2015-0042")))
    assert emergency_documents(read(interior, f"/v1/returnees/{returnee['id']}")) == ["ETD-2015-0042"]
    # the border sees it too (identifications are in its view)
    assert emergency_documents(read(border, f"/v1/returnees/{returnee['id']}")) == ["ETD-2015-0042"]


def test_emergency_document_of_unmatched_entry_is_added_when_linked(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(
        None, traveller_name="Gulmurod H.", emergency_document_number="ETD-2015-0043")))
    assert emergency_documents(read(interior, f"/v1/returnees/{returnee['id']}")) == []
    ok(interior.patch(f"/v1/border-crossings/{crossing['id']}", json={"returnee_id": returnee["id"]},
                      headers={"If-Match": '"1"'}))
    assert emergency_documents(read(interior, f"/v1/returnees/{returnee['id']}")) == ["ETD-2015-0043"]


def test_emergency_document_given_with_the_link_is_added(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(None, traveller_name="Gulmurod H.")))
    ok(interior.patch(f"/v1/border-crossings/{crossing['id']}", headers={"If-Match": '"1"'},
                      json={"returnee_id": returnee["id"], "emergency_document_number": "ETD-2015-0044"}))
    assert emergency_documents(read(interior, f"/v1/returnees/{returnee['id']}")) == ["ETD-2015-0044"]


def test_emergency_document_corrected_on_linked_entry_is_added(
    returnee_in: ReturneeIn, border: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("expected")
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(returnee["id"])))
    ok(border.patch(f"/v1/border-crossings/{crossing['id']}", headers={"If-Match": crossing["_etag"]},
                    json={"emergency_document_number": "ETD-2015-0045"}))
    assert emergency_documents(read(interior, f"/v1/returnees/{returnee['id']}")) == ["ETD-2015-0045"]


# ---- vetting assessments -------------------------------------------------------------------------------------------


def test_vetting_sets_risk_level(returnee_in: ReturneeIn, interior: AgencyClient) -> None:
    returnee = returnee_in("under_vetting")
    assert returnee["risk_level"] == "unknown"
    created(interior.post("/v1/vetting-assessments", json=vetting_body(returnee["id"], risk_level="high")))
    assert read(interior, f"/v1/returnees/{returnee['id']}")["risk_level"] == "high"


def test_vetting_filters_by_risk_level(returnee_in: ReturneeIn, interior: AgencyClient) -> None:
    rid = returnee_in("under_vetting")["id"]
    low = created(interior.post("/v1/vetting-assessments", json=vetting_body(rid, risk_level="low")))["id"]
    high = created(interior.post("/v1/vetting-assessments", json=vetting_body(rid, risk_level="high")))["id"]
    assert ids(interior, "/v1/vetting-assessments", "risk_level=low") == [low]
    assert ids(interior, "/v1/vetting-assessments", "risk_level=high") == [high]
    assert_error(interior.get("/v1/vetting-assessments?risk_level=extreme"), 422, "validation_failed")


@pytest.mark.parametrize("code", ["H0", "H1", "H2", "H3"])
def test_prosecutor_sees_findings_unless_h1(
    returnee_in: ReturneeIn, interior: AgencyClient, prosecutor: AgencyClient, code: str
) -> None:
    returnee = returnee_in("under_vetting")
    record = created(interior.post("/v1/vetting-assessments", json=vetting_body(returnee["id"], handling_code=code)))
    withheld = code == "H1"
    for seen in (read(prosecutor, f"/v1/vetting-assessments/{record['id']}"),
                 listed(prosecutor, "/v1/vetting-assessments")["items"][0],
                 read(prosecutor, f"/v1/returnees/{returnee['id']}")["vetting_assessments"][0]):
        assert ("findings" in seen) is not withheld
        assert seen["findings_withheld"] is withheld
        assert (seen["risk_level"], seen["genuine_repentance"], seen["handling_code"]) == ("medium", "yes", code)
    for seen in (read(interior, f"/v1/vetting-assessments/{record['id']}"),
                 read(interior, f"/v1/returnees/{returnee['id']}")["vetting_assessments"][0]):
        assert seen["findings"] == record["findings"] and "findings_withheld" not in seen


def test_prosecutor_sees_findings_once_h1_is_lifted(
    returnee_in: ReturneeIn, interior: AgencyClient, prosecutor: AgencyClient
) -> None:
    record = created(interior.post("/v1/vetting-assessments",
                                   json=vetting_body(returnee_in("under_vetting")["id"], handling_code="H1")))
    path = f"/v1/vetting-assessments/{record['id']}"
    assert "findings" not in read(prosecutor, path)
    ok(interior.patch(path, json={"handling_code": "H0"}, headers={"If-Match": '"1"'}))
    assert read(prosecutor, path)["findings"] == record["findings"]


# ---- prosecutorial decisions ---------------------------------------------------------------------------------------


def test_decisions_filter(returnee_in: ReturneeIn, prosecutor: AgencyClient, interior: AgencyClient) -> None:
    rid = returnee_in("under_review")["id"]
    first = created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(rid)))
    second = created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(
        rid, "charges_filed", case_number="GP-2015-0099")))
    assert first["prosecutor"] == "TJ-GP-213"
    path = "/v1/prosecutorial-decisions"
    assert ids(interior, path, "decision=no_case") == [first["id"]]
    assert ids(interior, path, "case_number=GP-2015-0099") == [second["id"]]
    assert ids(prosecutor, path, "decision=amnesty_granted") == []
    assert_error(interior.get(f"{path}?decision=pardon"), 422, "validation_failed")


def test_decision_itself_cannot_be_changed(
    returnee_in: ReturneeIn, prosecutor: AgencyClient, interior: AgencyClient
) -> None:
    returnee = returnee_in("under_review")
    record = created(prosecutor.post("/v1/prosecutorial-decisions",
                                     json=decision_body(returnee["id"], "amnesty_granted")))
    path = f"/v1/prosecutorial-decisions/{record['id']}"
    for change in ({"decision": "charges_filed"}, {"decided_at": AT}, {"returnee_id": returnee["id"]}):
        assert_error(prosecutor.patch(path, json=change, headers={"If-Match": '"1"'}), 422, "validation_failed")
    current = read(prosecutor, path)
    assert (current["decision"], current["version"]) == ("amnesty_granted", 1)
    assert read(interior, f"/v1/returnees/{returnee['id']}")["status"] == "amnesty_granted"


# ---- need to know: what each agency sees of a returnee -------------------------------------------------------------


COMMON_KEYS = {"id", "version", "created_at", "updated_at", "register_number", "person_name", "name_variants",
               "birth_date", "sex", "citizenship", "identifications", "handling_code", "handling_restriction",
               "status", "active_border_instruction", "border_crossings"}
NOT_FOR_BORDER = {"birth_place", "conflict_history", "accompanying_persons", "risk_level", "hotline_contacts",
                  "vetting_assessments", "prosecutorial_decisions"}


@pytest.fixture
def full_case(interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient) -> dict[str, Any]:
    """A returnee with one record of every kind (H1 assessment, active ASSIST_RETURN), now under review."""
    contact = created(interior.post("/v1/hotline-contacts", json=hotline_body(new_returnee=returnee_body(
        birth_place="Kulob",
        conflict_history=[{"country": "SY", "from": "2013", "to": "2015-05", "affiliation": "ISIL", "role": "driver"}],
        accompanying_persons=[{"relation": "son", "full_name": "Ali Halimov", "birth_date": "2012",
                               "is_minor": True}],
    ))))
    rid = contact["returnee_id"]
    created(interior.post("/v1/border-instructions", json=instruction_body(rid, "ASSIST_RETURN")))
    created(border.post("/v1/border-crossings", json=crossing_body(rid)))
    transition(interior, rid, "under_vetting")
    created(interior.post("/v1/vetting-assessments", json=vetting_body(rid, handling_code="H1", risk_level="low")))
    transition(interior, rid, "vetted")
    transition(interior, rid, "under_review")
    created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(rid)))
    return read(interior, f"/v1/returnees/{rid}")


def test_interior_sees_everything(full_case: dict[str, Any]) -> None:
    assert set(full_case) - {"_etag", "view"} == COMMON_KEYS | NOT_FOR_BORDER
    assert (full_case["status"], full_case["risk_level"], full_case["birth_place"]) == ("under_review", "low", "Kulob")
    assert [len(full_case[k]) for k in ("hotline_contacts", "border_crossings", "vetting_assessments",
                                        "prosecutorial_decisions")] == [1, 1, 1, 1]
    assert full_case["vetting_assessments"][0]["findings"]
    assert full_case["active_border_instruction"]["reason"] == instruction_body("x")["reason"]


def test_prosecutor_sees_what_interior_sees_but_h1_findings(
    full_case: dict[str, Any], prosecutor: AgencyClient
) -> None:
    seen = read(prosecutor, f"/v1/returnees/{full_case['id']}")
    assert set(seen) == set(full_case)
    assessment = seen["vetting_assessments"][0]
    assert "findings" not in assessment and assessment["findings_withheld"] is True
    # version and updated_at of an H1 assessment would move when interior edits the withheld findings
    hidden = {"findings", "version", "updated_at"}
    interior_assessment = {k: v for k, v in full_case["vetting_assessments"][0].items() if k not in hidden}
    assert {k: v for k, v in assessment.items() if k != "findings_withheld"} == interior_assessment
    assert (seen["view"], full_case["view"]) == ("prosecutor", "interior")
    same = {k: v for k, v in seen.items() if k not in ("vetting_assessments", "view")}
    assert same == {k: v for k, v in full_case.items() if k not in ("vetting_assessments", "view")}


def test_border_sees_only_its_view(full_case: dict[str, Any], border: AgencyClient) -> None:
    for seen in (read(border, f"/v1/returnees/{full_case['id']}"), listed(border, "/v1/returnees")["items"][0]):
        assert set(seen) - {"_etag", "view"} == COMMON_KEYS - {"version", "updated_at"}
        assert not NOT_FOR_BORDER & set(seen)
        assert seen["status"] == "other"
        assert seen["active_border_instruction"] == {
            "instruction": "ASSIST_RETURN", "valid_until": full_case["active_border_instruction"]["valid_until"]}
        assert seen["border_crossings"] == full_case["border_crossings"]
        same = COMMON_KEYS - {"status", "active_border_instruction", "version", "updated_at"}
        assert {k: seen[k] for k in same} == {k: full_case[k] for k in same}


@pytest.mark.parametrize(("status", "coarse"), [("reported", "other"), ("expected", "expected"),
                                                ("arrived", "arrived"), ("under_vetting", "other"),
                                                ("closed", "other")])
def test_border_sees_status_coarsely(
    returnee_in: ReturneeIn, border: AgencyClient, status: str, coarse: str
) -> None:
    assert read(border, f"/v1/returnees/{returnee_in(status)['id']}")["status"] == coarse


def test_border_may_not_read_what_is_not_for_it(full_case: dict[str, Any], border: AgencyClient) -> None:
    for path in ("/v1/hotline-contacts", "/v1/vetting-assessments", "/v1/prosecutorial-decisions"):
        # the border's scopes (returnees:screen, crossings:write) do not reach these at all
        assert_error(border.get(path), 403, "insufficient_scope")
        assert_error(border.get(f"{path}?returnee_id={full_case['id']}"), 403, "insufficient_scope")
        assert_error(border.get(f"{path}/{full_case[path.removeprefix('/v1/').replace('-', '_')][0]['id']}"), 403,
                     "insufficient_scope")


@pytest.mark.parametrize("agency", ["auditor", "security"])
def test_non_register_agencies_get_403_on_every_register_route(
    full_case: dict[str, Any], as_agency: AsAgency, interior: AgencyClient, app: Flask, agency: str
) -> None:
    client = as_agency(agency)
    rid = full_case["id"]
    before = counts(app)
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/returnees", None),
        ("POST", "/v1/returnees", returnee_body()),
        ("GET", f"/v1/returnees/{rid}", None),
        ("PATCH", f"/v1/returnees/{rid}", {"risk_level": "high"}),
        ("POST", f"/v1/returnees/{rid}/transitions", {"to": "closed"}),
        ("POST", "/v1/screening", {"document_number": "400123456"}),
        ("POST", "/v1/screening", {"name": "Gulmurod Khalimov"}),
    ]
    bodies = {"hotline_contacts": hotline_body(rid), "border_instructions": instruction_body(rid),
              "border_crossings": crossing_body(rid), "vetting_assessments": vetting_body(rid),
              "prosecutorial_decisions": decision_body(rid)}
    for kind in KINDS:
        key = kind.model.__tablename__
        record_id = full_case[key][0]["id"] if key != "border_instructions" else (
            full_case["active_border_instruction"]["id"])
        routes += [("GET", kind.path, None), ("POST", kind.path, bodies[key]),
                   ("GET", f"{kind.path}/{record_id}", None), ("PATCH", f"{kind.path}/{record_id}", kind.change)]
    for method, path, body in routes:
        headers = {"If-Match": '"1"'} if method == "PATCH" else {}
        response = client.open(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.get_json())
        assert_error(response, 403, "insufficient_scope")  # their tokens carry no register scope
    assert counts(app) == before
    assert snapshot(read(interior, f"/v1/returnees/{rid}")) == snapshot(full_case)


def test_unknown_returnee_is_404_for_every_reader(
    interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    for client in (interior, border, prosecutor):
        assert_error(client.get(f"/v1/returnees/{UNKNOWN_ID}"), 404, "not_found")
