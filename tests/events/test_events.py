"""Events (events.md): written with the change or not at all, shaped by each receiver's need-to-know view, read with
long polling, expired past retention."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.events.models import Event
from exchange.events.services import EventLog, encode_cursor
from exchange.identity import Caller
from exchange.register.services import RegisterService
from tests.conftest import AgencyClient
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HIDDEN_FROM_BORDER = {"risk_level", "conflict_history", "birth_place", "accompanying_persons", "hotline_contacts",
                      "vetting_assessments", "prosecutorial_decisions", "reason", "issued_by", "valid_from"}


def events_of(client: AgencyClient, **query: Any) -> dict[str, Any]:
    response = client.get("/v1/events", query_string=query)
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def keys_deep(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(keys_deep(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_deep(v) for v in value)) if value else set()
    return set()


def instruct(interior: AgencyClient, returnee_id: str, instruction: str = "ASSIST_RETURN") -> dict[str, Any]:
    response = interior.post("/v1/border-instructions", json={
        "returnee_id": returnee_id, "instruction": instruction, "reason": "secret reason of interior"})
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def enter(border: AgencyClient, returnee_id: str | None, **extra: Any) -> Any:
    return border.post("/v1/border-crossings", json={
        "returnee_id": returnee_id, "crossing_point": "DYU airport", "direction": "entry",
        "occurred_at": NOW.isoformat(), "outcome": "admitted", **extra})


def vet(interior: AgencyClient, returnee_id: str, *, handling_code: str) -> None:
    response = interior.post("/v1/vetting-assessments", json={
        "returnee_id": returnee_id, "interviewed_at": NOW.isoformat(), "genuine_repentance": "yes",
        "risk_level": "low", "findings": "source-protected findings", "source_reliability": "B",
        "information_accuracy": "2", "handling_code": handling_code})
    assert response.status_code == 201, response.get_json()


def test_an_arrival_is_told_to_each_agency_in_its_own_view(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    returnee = make_returnee(risk_level="high", birth_place="Kulob")
    instruct(interior, returnee["id"])
    assert enter(border, returnee["id"]).status_code == 201

    by_interior = events_of(interior)["events"]
    assert [e["type"] for e in by_interior] == ["returnee.status_changed", "returnee.arrived"]
    arrived = by_interior[-1]
    assert arrived["returnee_id"] == returnee["id"]
    assert arrived["record"]["status"] == "arrived" and arrived["record"]["risk_level"] == "high"
    assert arrived["cause"]["agency"] == "border" and arrived["cause"]["request_id"]

    by_prosecutor = events_of(prosecutor)["events"]
    assert [e["type"] for e in by_prosecutor] == ["instruction.issued", "returnee.status_changed", "returnee.arrived"]
    assert by_prosecutor[0]["record"]["reason"] == "secret reason of interior"

    by_border = events_of(border)["events"]
    assert [e["type"] for e in by_border] == ["instruction.issued", "returnee.status_changed",
                                              "returnee.status_changed"]
    instruction = by_border[0]["record"]
    assert set(instruction) == {"instruction", "valid_until"}
    assert [e["record"]["status"] for e in by_border[1:]] == ["expected", "arrived"]
    for event in by_border:
        assert keys_deep(event["record"]) & HIDDEN_FROM_BORDER == set()
        assert "secret reason" not in str(event)


def test_the_border_is_not_told_of_moves_it_cannot_see(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    returnee = make_returnee()
    rid = returnee["id"]
    assert enter(border, rid).status_code == 201  # reported -> arrived
    assert interior.post(f"/v1/returnees/{rid}/transitions", json={"to": "under_vetting"}).status_code == 200
    before = events_of(border)
    assert [e["record"]["status"] for e in before["events"]] == ["arrived", "other"]
    vet(interior, rid, handling_code="H0")
    assert interior.post(f"/v1/returnees/{rid}/transitions", json={"to": "vetted"}).status_code == 200
    # under_vetting -> vetted is "other" to "other" for the border: interior is told, the border is not
    assert events_of(border, after=before["next"])["events"] == []
    assert events_of(interior)["events"][-1]["record"]["status"] == "vetted"
    assert events_of(prosecutor)["events"][-1]["type"] == "vetting.completed"


def test_an_unmatched_entry_is_told_to_interior_only(
    interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    assert enter(border, None, traveller_name="Unknown Traveller").status_code == 201
    assert [e["type"] for e in events_of(interior)["events"]] == ["crossing.unmatched"]
    assert events_of(border)["events"] == [] and events_of(prosecutor)["events"] == []


def test_a_vetting_of_an_h1_record_reaches_the_prosecutor_without_findings(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    returnee = make_returnee()
    assert enter(border, returnee["id"]).status_code == 201
    rid = returnee["id"]
    assert interior.post(f"/v1/returnees/{rid}/transitions", json={"to": "under_vetting"}).status_code == 200
    vet(interior, rid, handling_code="H1")
    assert interior.post(f"/v1/returnees/{rid}/transitions", json={"to": "vetted"}).status_code == 200
    completed = [e for e in events_of(prosecutor)["events"] if e["type"] == "vetting.completed"]
    assert len(completed) == 1
    assert "findings" not in completed[0]["record"] and completed[0]["record"]["findings_withheld"] is True
    assert "source-protected" not in str(events_of(prosecutor))
    assert "vetting.completed" not in {e["type"] for e in events_of(interior)["events"] + events_of(border)["events"]}


def test_a_refused_change_writes_no_event(app: Flask, make_returnee: MakeReturnee) -> None:
    returnee = make_returnee()
    interior = Caller(agency="interior", officer="TJ-MVD-1", scopes=frozenset({"returnees:write"}))
    with Session(app.extensions["exchange.db"]) as session:
        service = RegisterService(session=session, request_id="r-1")
        service.issue_border_instruction(
            interior, {"returnee_id": uuid.UUID(returnee["id"]), "instruction": "ASSIST_RETURN", "reason": "r"})
        assert session.scalar(select(func.count()).select_from(Event)) == 5  # in the change's transaction
        session.rollback()
    with Session(app.extensions["exchange.db"]) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_a_failed_request_writes_no_event(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    returnee = make_returnee()
    response = interior.post("/v1/border-instructions", json={
        "returnee_id": returnee["id"], "instruction": "ASSIST_RETURN", "reason": "r",
        "valid_from": NOW.isoformat(), "valid_until": (NOW - timedelta(days=1)).isoformat()})
    assert_error(response, 422, "validation_failed")
    assert events_of(interior)["events"] == []


def test_cursors_page_through_the_agencys_events(make_returnee: MakeReturnee, interior: AgencyClient,
                                                 border: AgencyClient) -> None:
    for _ in range(3):
        enter(border, None, traveller_name="Someone")
    first = events_of(interior, limit=2)
    assert len(first["events"]) == 2
    rest = events_of(interior, after=first["next"])
    assert len(rest["events"]) == 1
    assert events_of(interior, after=rest["next"]) == {"events": [], "next": rest["next"]}
    assert_error(interior.get("/v1/events", query_string={"after": "nonsense"}), 422, "validation_failed")
    assert_error(interior.get("/v1/events", query_string={"wait": 31}), 422, "validation_failed")


def test_events_need_the_events_scope(as_agency: Callable[..., AgencyClient]) -> None:
    caller = as_agency("interior", scopes=frozenset({"returnees:read"}))
    assert_error(caller.get("/v1/events"), 403, "insufficient_scope")
    assert_error(as_agency("auditor").get("/v1/events"), 403, "insufficient_scope")


def test_a_long_poll_is_woken_by_a_commit(interior: AgencyClient, border: AgencyClient) -> None:
    start = events_of(interior)["next"]
    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(events_of(interior, after=start, wait=30)))
    waiter.start()
    assert enter(border, None, traveller_name="Late Traveller").status_code == 201
    waiter.join()
    assert [e["type"] for e in answers[0]["events"]] == ["crossing.unmatched"]
    assert answers[0]["next"] != start


def test_a_cursor_past_retention_is_gone(app: Flask, interior: AgencyClient, border: AgencyClient) -> None:
    enter(border, None, traveller_name="Old Traveller")
    old = events_of(interior)
    enter(border, None, traveller_name="New Traveller")
    with Session(app.extensions["exchange.db"]) as session:
        first = session.scalars(select(Event).order_by(Event.seq)).first()
        assert first is not None
        first.occurred_at = datetime.now(UTC) - timedelta(days=31)
        session.commit()
        assert EventLog(session=session, retention_days=30).prune() == 1
        session.commit()
    assert_error(interior.get("/v1/events", query_string={"after": encode_cursor(0)}), 410, "cursor_expired")
    # a cursor at or after the deleted event lost nothing; without one, reading starts at the oldest retained
    assert [e["record"]["traveller_name"] for e in events_of(interior, after=old["next"])["events"]] == \
        ["New Traveller"]
    assert [e["record"]["traveller_name"] for e in events_of(interior)["events"]] == ["New Traveller"]


@pytest.mark.parametrize("agency", ["interior", "prosecutor"])
def test_reading_events_is_audited_as_a_disclosure(app: Flask, as_agency: Callable[..., AgencyClient],
                                                   border: AgencyClient, make_returnee: MakeReturnee,
                                                   agency: str) -> None:
    from tests.audit.conftest import stored_entries

    returnee = make_returnee()
    enter(border, returnee["id"])
    data = events_of(as_agency(agency))
    entry = stored_entries(app)[-1]
    assert entry["action"] == "disclose" and entry["path"] == "/v1/events"
    assert returnee["id"] in entry["record_ids"] and data["events"]


def test_a_decision_is_told_to_interior_and_its_move_to_the_prosecutor_not_the_border(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    rid = make_returnee()["id"]
    assert enter(border, rid).status_code == 201
    for status in ("under_vetting", "vetted", "under_review"):
        if status == "vetted":
            vet(interior, rid, handling_code="H0")
        assert interior.post(f"/v1/returnees/{rid}/transitions", json={"to": status}).status_code == 200
    marks = {name: events_of(client)["next"] for name, client in
             (("interior", interior), ("border", border), ("prosecutor", prosecutor))}
    response = prosecutor.post("/v1/prosecutorial-decisions", json={
        "returnee_id": rid, "decision": "amnesty_granted", "case_number": "GP-2026-1",
        "decided_at": NOW.isoformat(), "notes": "prosecutor's own notes"})
    assert response.status_code == 201, response.get_json()

    [told] = events_of(interior, after=marks["interior"])["events"]
    assert told["type"] == "decision.recorded" and told["record"]["decision"] == "amnesty_granted"
    assert told["cause"]["agency"] == "prosecutor"
    [moved] = events_of(prosecutor, after=marks["prosecutor"])["events"]
    assert moved["type"] == "returnee.status_changed" and moved["record"]["status"] == "amnesty_granted"
    assert events_of(border, after=marks["border"])["events"] == []  # under_review -> amnesty_granted: other, other


def test_a_single_screening_hit_on_an_instruction_reaches_interior_alone(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    subject = make_returnee()
    instruct(interior, subject["id"], "DETAIN")
    marks = {"border": events_of(border)["next"], "prosecutor": events_of(prosecutor)["next"],
             "interior": events_of(interior)["next"]}
    response = border.post("/v1/screening", json={"document_number": "400 123 456"})
    assert response.status_code == 200 and response.get_json()["candidates"]
    [hit] = events_of(interior, after=marks["interior"])["events"]
    assert hit["type"] == "screening.hit" and hit["returnee_id"] == subject["id"]
    assert hit["record"]["active_border_instruction"]["reason"] == "secret reason of interior"
    assert hit["screening"]["matched_on"] == "document" and hit["screening"]["officer"] == "TJ-PS-017"
    assert events_of(border, after=marks["border"])["events"] == []
    assert events_of(prosecutor, after=marks["prosecutor"])["events"] == []
