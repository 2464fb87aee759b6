"""Every /v1 call gets its entry, fail closed, in the same transaction as the data it records."""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import rfc8785
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from exchange.audit import recorder
from exchange.audit.entries import ENTRY_MEMBERS, encode_entry, fill_leaf, queue_leaf
from exchange.audit.models import AuditHead, AuditQueued
from exchange.audit.recorder import record_event
from exchange.audit.services import AuditLog
from exchange.db import db
from exchange.identity import Caller
from exchange.protocol import merkle
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.register.models import Returnee
from tests.audit.conftest import engine_of, event, stored_entries, stored_leaves, stored_nodes
from tests.audit.test_concurrency import audit_key
from tests.conftest import AgencyClient, returnee_body

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def returnee_count(app: Flask) -> int:
    with Session(engine_of(app)) as session:
        return session.scalar(select(func.count()).select_from(Returnee)) or 0


def header_hash(response: Any) -> bytes:
    value = response.headers["Audit-Leaf-Hash"]
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_a_write_is_recorded_with_every_member_and_its_headers(app: Flask, interior: AgencyClient) -> None:
    response = interior.post("/v1/returnees", json=returnee_body())
    assert response.status_code == 201
    [leaf] = stored_leaves(app)
    entry = json.loads(leaf)
    assert set(entry) == ENTRY_MEMBERS
    assert leaf == rfc8785.dumps(entry), "the leaf is the RFC 8785 encoding"
    assert response.headers["Audit-Index"] == "0" and header_hash(response) == merkle.leaf_hash(leaf)
    assert TIME.match(entry.pop("time"))
    assert entry == {
        "v": 1, "index": 0, "request_id": response.headers["X-Request-ID"], "action": "collect",
        "outcome": "success", "status": 201, "reason": None, "agency": "interior", "client_id": "test-interior",
        "officer": "TJ-MVD-04411", "purpose": interior.caller.purpose if interior.caller else None,
        "case_ref": None, "method": "POST", "path": "/v1/returnees", "record_ids": [response.get_json()["id"]],
        "recipient": None, "source_ip": "127.0.0.1", "token_jti": None, "dpop_jti": None, "envelope": None,
        "prev_checkpoint_size": 0,
    }
    assert "Халимов" not in leaf.decode() and "400123456" not in leaf.decode(), "ids and hashes, never content"


def test_reads_consult_for_the_owner_and_disclose_to_other_agencies(
    app: Flask, make_returnee: Callable[..., dict[str, Any]], interior: AgencyClient, border: AgencyClient,
    prosecutor: AgencyClient,
) -> None:
    first, second = make_returnee(), make_returnee()
    interior.get(f"/v1/returnees/{first['id']}")
    border.get(f"/v1/returnees/{first['id']}")
    prosecutor.get("/v1/returnees?page_size=10")
    border.post("/v1/screening", json={"document_number": "400123456"})
    interior.patch(f"/v1/returnees/{first['id']}", json={"risk_level": "low"}, headers={"If-Match": first["_etag"]})
    interior.post(f"/v1/returnees/{second['id']}/transitions", json={"to": "closed"})
    entries = stored_entries(app)[2:]
    summary = [(e["action"], e["agency"], e["recipient"], e["status"]) for e in entries]
    assert summary == [
        ("consult", "interior", None, 200),
        ("disclose", "border", "border", 200),
        ("disclose", "prosecutor", "prosecutor", 200),
        ("consult", "border", "border", 200),
        ("alter", "interior", None, 200),
        ("alter", "interior", None, 200),
    ]
    assert entries[0]["record_ids"] == entries[1]["record_ids"] == [first["id"]]
    assert set(entries[2]["record_ids"]) == {first["id"], second["id"]}
    assert set(entries[3]["record_ids"]) == {first["id"], second["id"]}, "screening hits by document"


def test_records_of_a_returnee_touch_the_returnee_too(
    app: Flask, make_returnee: Callable[..., dict[str, Any]], interior: AgencyClient
) -> None:
    returnee = make_returnee()
    response = interior.post("/v1/border-instructions", json={
        "returnee_id": returnee["id"], "instruction": "ASSIST_RETURN", "reason": "hotline contact"})
    assert response.status_code == 201
    assert stored_entries(app)[-1]["record_ids"] == [response.get_json()["id"], returnee["id"]]


@pytest.mark.parametrize(
    ("agency", "method", "path", "body", "status", "action", "reason"),
    [
        (None, "GET", "/v1/returnees", None, 401, "deny", "unauthenticated"),
        ("prosecutor", "POST", "/v1/returnees", returnee_body(), 403, "deny", "insufficient_scope"),
        ("interior", "GET", "/v1/returnees/6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1", None, 404, "consult", "not_found"),
        ("interior", "GET", "/v1/nothing-here", None, 404, "consult", "not_found"),
        ("interior", "POST", "/v1/returnees", {"person_name": {}}, 422, "collect", "validation_failed"),
        (None, "DELETE", "/v1/returnees", None, 405, "erase", "method_not_allowed"),  # before authentication
        ("border", "GET", "/v1/audit/checkpoint", None, 403, "deny", "insufficient_scope"),
    ],
)
def test_refused_calls_are_recorded_as_failures(
    app: Flask, as_agency: Callable[..., AgencyClient], agency: str | None, method: str, path: str,
    body: Any, status: int, action: str, reason: str,
) -> None:
    client = as_agency(agency)
    response = client.open(method, path, json=body) if body is not None else client.open(method, path)
    assert response.status_code == status
    assert response.get_json()["code"] == reason
    [entry] = stored_entries(app)
    assert (entry["action"], entry["outcome"], entry["status"], entry["reason"]) == (action, "failure", status, reason)
    assert entry["agency"] == agency and entry["recipient"] is None
    assert response.headers["Audit-Index"] == "0"
    if "6f1c1f38" in path:
        assert entry["record_ids"] == ["6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"], "the id the call aimed at"


def test_a_failed_write_is_rolled_back_and_its_entry_kept(
    app: Flask, make_returnee: Callable[..., dict[str, Any]], interior: AgencyClient
) -> None:
    returnee = make_returnee()
    response = interior.patch(f"/v1/returnees/{returnee['id']}", json={"risk_level": "high"},
                              headers={"If-Match": '"7"'})
    assert response.status_code == 412
    assert interior.get(f"/v1/returnees/{returnee['id']}").get_json()["risk_level"] == returnee["risk_level"]
    entries = stored_entries(app)
    assert [(e["action"], e["outcome"], e["reason"]) for e in entries] == [
        ("collect", "success", None), ("alter", "failure", "precondition_failed"), ("consult", "success", None)]


def test_fail_closed_when_the_entry_cannot_be_written(
    app: Flask, interior: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: AuditLog, events: Any) -> Any:
        raise AuditUnavailable()

    monkeypatch.setattr(AuditLog, "enqueue", broken)  # PostgreSQL: queued with the call
    monkeypatch.setattr(AuditLog, "append", broken)  # SQLite: appended in the call's transaction
    response = interior.post("/v1/returnees", json=returnee_body())
    assert (response.status_code, response.get_json()["code"]) == (503, "audit_unavailable")
    assert "Audit-Index" not in response.headers
    monkeypatch.undo()
    assert returnee_count(app) == 0 and stored_entries(app) == []


def test_when_only_the_append_fails_the_failure_is_recorded(
    app: Flask, interior: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fails_once(real: Any) -> Any:
        def patched(self: AuditLog, events: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                self.session.execute(select(1))
                raise AuditUnavailable()
            return real(self, events)
        return patched

    monkeypatch.setattr(AuditLog, "enqueue", fails_once(AuditLog.enqueue))
    monkeypatch.setattr(AuditLog, "append", fails_once(AuditLog.append))
    response = interior.post("/v1/returnees", json=returnee_body())
    assert (response.status_code, response.get_json()["code"]) == (503, "audit_unavailable")
    assert returnee_count(app) == 0
    [entry] = stored_entries(app)
    assert (entry["action"], entry["outcome"], entry["status"], entry["reason"]) == (
        "collect", "failure", 503, "audit_unavailable")
    assert entry["record_ids"] == [], "the id of a record that was never stored is not recorded"


def test_a_failed_commit_stores_neither_the_data_nor_its_success_entry(
    app: Flask, interior: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Session.commit
    calls: list[int] = []

    def fails_once(self: Session) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("disk full"))
        real(self)

    monkeypatch.setattr(Session, "commit", fails_once)
    response = interior.post("/v1/returnees", json=returnee_body())
    assert (response.status_code, response.get_json()["code"]) == (503, "commit_failed")
    monkeypatch.undo()
    assert returnee_count(app) == 0
    [entry] = stored_entries(app)
    assert (entry["index"], entry["outcome"], entry["reason"]) == (0, "failure", "commit_failed")


def test_record_event_for_calls_outside_the_api(app: Flask) -> None:
    caller = Caller(agency="security", client_id="sec-console", officer="TJ-SEC-1", purpose="key-management")
    with app.app_context():
        first = record_event(db.session, action="key.rotate", outcome="success", status=200, caller=caller,
                             request_id="r1", method="CLI", path="exchange keys rotate", record_ids=["token"])
        second = record_event(db.session, action="token.deny", outcome="failure", status=401,
                              reason="invalid_client", request_id="r2", method="POST", path="/oauth/token",
                              source_ip="10.0.0.9", extra={"client_id": "border-post-7"})
        db.session.commit()
        for bad in [{"action": "shred"}, {"extra": {"name": "Халимов"}}, {"outcome": "failure"}]:
            arguments: dict[str, Any] = {"action": "consult", "outcome": "success", "status": 200,
                                         "request_id": "r3", "method": "GET", "path": "/x", **bad}
            with pytest.raises(AuditUnavailable):
                record_event(db.session, **arguments)
    assert (first.index, second.index) == (0, 1)
    entries = stored_entries(app)
    assert [(e["action"], e["agency"], e["client_id"], e["record_ids"]) for e in entries] == [
        ("key.rotate", "security", "sec-console", ["token"]),
        ("token.deny", None, "border-post-7", []),
    ]
    assert entries[1]["reason"] == "invalid_client" and entries[1]["source_ip"] == "10.0.0.9"


def test_a_batch_is_one_lock_with_consecutive_indices_and_the_same_tree(app: Flask) -> None:
    with Session(engine_of(app)) as session:
        log = AuditLog(session=session)
        assert [a.index for a in log.append([event(0)])] == [0]
        appended = log.append([event(n) for n in range(1, 6)])
        session.commit()
    assert [a.index for a in appended] == [1, 2, 3, 4, 5]
    leaves = stored_leaves(app)
    assert [merkle.leaf_hash(leaf) for leaf in leaves[1:]] == [a.leaf_hash for a in appended]
    nodes = stored_nodes(app)
    frontier = merkle.Frontier()
    expected: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        expected.update(frontier.append(merkle.leaf_hash(leaf)))
    assert nodes == expected


def test_concurrent_calls_get_gap_free_indices_and_one_tree(
    app: Flask, as_agency: Callable[..., AgencyClient], make_returnee: Callable[..., dict[str, Any]]
) -> None:
    returnee = make_returnee()

    def work(n: int) -> Any:
        client = as_agency(("interior", "border", "prosecutor")[n % 3])
        return client.get(f"/v1/returnees/{returnee['id']}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(work, range(30)))
    assert all(r.status_code == 200 for r in responses)
    indices = sorted(int(r.headers["Audit-Index"]) for r in responses)
    assert indices == list(range(1, 31))
    leaves = stored_leaves(app)
    assert [json.loads(leaf)["index"] for leaf in leaves] == list(range(31))
    with Session(engine_of(app)) as session:
        log = AuditLog(session=session)
        assert log.size() == 31
        frontier = merkle.Frontier.decode(31, session.scalars(select(AuditHead.frontier)).one())
    assert frontier.root() == merkle.root_of(merkle.leaf_hash(leaf) for leaf in leaves)


# ---- deferred sequencing: entries queued with their call's data, sequenced after its commit ------------------------


def queue_count(app: Flask) -> int:
    with Session(engine_of(app)) as session:
        return session.scalar(select(func.count()).select_from(AuditQueued)) or 0


@pytest.mark.parametrize("deferred", [True, False], ids=["queued-call", "appending-call"])
def test_an_entry_committed_but_not_sequenced_is_sequenced_by_the_next_call(
    app: Flask, interior: AgencyClient, monkeypatch: pytest.MonkeyPatch, deferred: bool
) -> None:
    monkeypatch.setattr(recorder, "deferred", lambda session: deferred)
    with Session(engine_of(app)) as session:  # a worker that crashed between its commit and sequencing its entry
        [orphan] = AuditLog(session=session).enqueue([event(0)])
        session.commit()
    assert stored_entries(app) == [] and queue_count(app) == 1, "stored, but not in the log yet"
    with Session(engine_of(app)) as session:
        assert AuditLog(session=session).size() == 0
    response = interior.post("/v1/returnees", json=returnee_body())
    assert response.status_code == 201 and response.headers["Audit-Index"] == "1"
    entries = stored_entries(app)
    assert [(e["index"], e["request_id"], e["action"]) for e in entries] == [
        (0, event(0).request_id, "consult"), (1, response.headers["X-Request-ID"], "collect")]
    assert queue_count(app) == 0
    with Session(engine_of(app)) as session:
        found = AuditLog(session=session).find(orphan)
    assert found is not None and found.index == 0 and found.leaf_hash == merkle.leaf_hash(stored_leaves(app)[0])


def test_a_checkpoint_sequences_what_is_queued(app: Flask) -> None:
    with Session(engine_of(app)) as session:
        log = AuditLog(session=session)
        log.enqueue([event(n) for n in range(3)])
        session.commit()
        assert log.size() == 0
        checkpoint = log.checkpoint(signer=audit_key(), origin="exchange.test/audit")
        session.commit()
        size, root = checkpoint.size, checkpoint.root
    assert size == 3 and queue_count(app) == 0
    assert [e["request_id"] for e in stored_entries(app)] == [event(n).request_id for n in range(3)]
    assert root == merkle.root_of(merkle.leaf_hash(leaf) for leaf in stored_leaves(app))


def test_a_call_whose_entry_another_worker_sequenced_finds_it(app: Flask) -> None:
    with Session(engine_of(app)) as first, Session(engine_of(app)) as second:
        [mine] = AuditLog(session=first).enqueue([event(1, time=event(9).time)])
        first.commit()
        [theirs] = AuditLog(session=second).enqueue([event(2)])
        second.commit()
        sequenced_theirs = AuditLog(session=second).settle(theirs)  # takes both, in queue order
        sequenced_mine = AuditLog(session=first).settle(mine)  # finds its own in the log
    assert (sequenced_mine.index, sequenced_theirs.index) == (0, 1)
    entries = stored_entries(app)
    assert [e["time"] for e in entries] == ["2026-01-01T00:00:09.000000Z", "2026-01-01T00:00:02.000000Z"]
    assert [merkle.leaf_hash(leaf) for leaf in stored_leaves(app)] == [sequenced_mine.leaf_hash,
                                                                       sequenced_theirs.leaf_hash]


def test_a_queued_leaf_is_filled_in_exactly_as_the_encoder_writes_it() -> None:
    tricky = event(5, path='/v1/"index":-1,\\/\u2028\x1f\x7f/Халимов/😀', reason="x", outcome="failure",
                   record_ids=('"prev_checkpoint_size":-1,', "b"))
    queued = queue_leaf(tricky)
    assert fill_leaf(queued, index=12, prev_checkpoint_size=7) == encode_entry(
        tricky.members(index=12, prev_checkpoint_size=7))


def test_when_sequencing_fails_after_the_commit_the_call_is_stored_and_sequenced_later(
    app: Flask, interior: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "deferred", lambda session: True)  # as on PostgreSQL, also on SQLite
    real = AuditLog.settle
    calls: list[int] = []

    def fails_once(self: AuditLog, queued: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the database went away between the call's commit and its entry's sequencing
            raise AuditUnavailable()
        return real(self, queued, **kwargs)

    monkeypatch.setattr(AuditLog, "settle", fails_once)
    response = interior.post("/v1/returnees", json=returnee_body())
    # not 503, which promises nothing was stored (the client library retries those): this write must not be repeated
    assert (response.status_code, response.get_json()["code"]) == (500, "audit_pending")
    assert "stored" in response.get_json()["message"], "the response says the call was carried out"
    assert returnee_count(app) == 1, "committed with its entry before the sequencing failed"
    entries = stored_entries(app)
    # The committed entry was sequenced by the next integration (here: the one recording the failed response).
    assert [(e["action"], e["outcome"], e["status"], e["reason"]) for e in entries] == [
        ("collect", "success", 201, None), ("collect", "failure", 500, "audit_pending")]
    assert entries[0]["request_id"] == entries[1]["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Audit-Index"] == "1" and queue_count(app) == 0


def test_the_entry_encoder_is_rfc8785_for_every_string_an_entry_may_hold() -> None:
    """`encode_entry` uses Python's C JSON encoder; it must agree with RFC 8785 byte for byte (escapes, UTF-8,
    member order, integers), and refuse what it cannot encode the same way."""
    rng = random.Random(8785)
    alphabet = ['"', "\\", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "é", "Х", "😀",
                "\ufeff", "/", "<", "&", "'", "a", "\u0080", "\u00ad", "\uffff"]

    def text(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(n)))

    for _ in range(2000):
        members: dict[str, Any] = dict.fromkeys(ENTRY_MEMBERS)
        members |= {"v": 1, "status": rng.randrange(100, 600), "index": rng.randrange(-1, 2**53),
                    "prev_checkpoint_size": rng.randrange(-1, 2**40), "path": text(12), "reason": text(4),
                    "agency": text(3), "record_ids": [text(6) for _ in range(rng.randrange(3))],
                    "envelope": {"msg_id": text(5), "sig": text(3), "protected_hash": "h", "plaintext_hash": "p"}
                    if rng.random() < 0.5 else None}
        assert encode_entry(members) == rfc8785.dumps(members)
    for bad in [{"status": 2**53}, {"status": 1.5}, {"status": True}, {"path": "\ud800"}, {"record_ids": [1]},
                {"envelope": {"msg_id": 1}}]:
        with pytest.raises(ValueError):
            encode_entry(dict.fromkeys(ENTRY_MEMBERS) | {"v": 1} | bad)
