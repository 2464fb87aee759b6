"""`/v1/keys`: the lifecycle of the exchange's keys, rotation timing, dual control, rewrap and rotation by age."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.audit.recorder import origin, signer, verifiers
from exchange.audit.services import AuditLog
from exchange.identity import Caller
from exchange.keys.ring import KeyRing, key_ring
from exchange.keys.service import MIN_OVERLAP
from exchange.keys.store import FileKeyStore, secret_bytes
from exchange.protocol.checkpoint import verify_checkpoint
from exchange.protocol.encoding import b64url
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from tests.conftest import AgencyClient

OFFICER_A, OFFICER_B = "TJ-SEC-0001", "TJ-SEC-0002"


class Clock:
    """The ring's clock, moved forward by the tests (activation delays, overlaps, approval windows)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def app(file_app: Flask) -> Flask:
    return file_app


@pytest.fixture
def ring(app: Flask) -> KeyRing:
    value: KeyRing = key_ring(app)
    return value


@pytest.fixture
def clock(ring: KeyRing) -> Clock:
    clock = Clock()
    ring.clock = clock
    return clock


@pytest.fixture
def officer(app: Flask) -> Callable[..., AgencyClient]:
    """`officer(name, client)`: a security client `client` (an authenticated principal) naming officer `name`."""

    def make(name: str | None, client: str = "test-security-a", dpop_jkt: str | None = None) -> AgencyClient:
        caller = Caller(agency="security", client_id=client, officer=name, scopes=AGENCY_SCOPES["security"],
                        purpose=min(PURPOSES["security"]), dpop_jkt=dpop_jkt)
        return AgencyClient(app.test_client(), caller)

    return make


@pytest.fixture
def a(officer: Callable[..., AgencyClient]) -> AgencyClient:
    return officer(OFFICER_A, "test-security-a")


@pytest.fixture
def b(officer: Callable[..., AgencyClient]) -> AgencyClient:
    return officer(OFFICER_B, "test-security-b")


def keys_by_purpose(client: AgencyClient, purpose: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/v1/keys?purpose={purpose}")
    assert response.status_code == 200, response.get_json()
    return {k["state"]: k for k in response.get_json()["items"]}


def actions(app: Flask) -> list[str]:
    with Session(app.extensions["exchange.db"]) as session:
        return [json.loads(leaf)["action"] for leaf in session.scalars(select(AuditEntry.leaf)
                                                                       .order_by(AuditEntry.idx))]


def jwks(app: Flask) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = app.test_client().get("/.well-known/jwks.json").get_json()["keys"]
    return keys


def test_init_leaves_one_active_key_per_purpose(a: AgencyClient) -> None:
    response = a.get("/v1/keys")
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert sorted(k["purpose"] for k in items) == ["audit", "envelope-enc", "envelope-sign", "storage", "token"]
    assert {k["state"] for k in items} == {"active"} and all(k["private_part"] for k in items)
    assert next(k for k in items if k["purpose"] == "storage")["x"] is None


def test_rotation_publishes_the_next_key_before_it_signs_and_keeps_the_old_one_verifying(
    app: Flask, a: AgencyClient, ring: KeyRing, clock: Clock
) -> None:
    old = keys_by_purpose(a, "token")["active"]
    response = a.post("/v1/keys/rotation", json={"purpose": "token"})
    assert response.status_code == 200, response.get_json()
    new = keys_by_purpose(a, "token")["pending"]
    # published (JWKS, verification) before use; the old key still signs
    published = {k["kid"]: k for k in jwks(app)}
    assert published[new["kid"]]["status"] == "pending" and published[old["kid"]]["status"] == "active"
    assert ring.active("token").kid == old["kid"]
    assert new["kid"] in {k.kid for k in ring.verification_keys("token")}

    clock.advance(2 * ring.cache_seconds + 1.5)  # the activation time every worker agreed on
    ring.invalidate()
    assert ring.active("token").kid == new["kid"]
    states = keys_by_purpose(a, "token")
    assert states["retiring"]["kid"] == old["kid"]
    assert old["kid"] in {k.kid for k in ring.verification_keys("token")}  # tokens it signed keep working
    assert [k["kid"] for k in jwks(app) if k["purpose"] == "token"] == [new["kid"], old["kid"]]  # active first

    clock.advance(MIN_OVERLAP.total_seconds())
    ring.invalidate()
    assert keys_by_purpose(a, "token")["retired"]["kid"] == old["kid"]
    assert old["kid"] not in {k.kid for k in ring.verification_keys("token")}
    assert "key.rotate" in actions(app)


def test_generate_then_activate_and_the_refusals_on_the_way(a: AgencyClient, ring: KeyRing, clock: Clock) -> None:
    response = a.post("/v1/keys", json={"purpose": "envelope-sign"})
    assert response.status_code == 201
    kid = response.get_json()["kid"]
    assert response.get_json()["state"] == "pending"
    other = a.post("/v1/keys", json={"purpose": "envelope-sign"}).get_json()["kid"]
    assert a.post(f"/v1/keys/{kid}/activation", json={}).status_code == 200
    second = a.post(f"/v1/keys/{other}/activation", json={})
    assert second.status_code == 409 and second.get_json()["code"] == "invalid_key_state"  # one scheduled at a time
    clock.advance(10)
    ring.invalidate()
    assert ring.active("envelope-sign").kid == kid
    again = a.post(f"/v1/keys/{kid}/activation", json={})
    assert again.status_code == 409 and again.get_json()["code"] == "invalid_key_state"
    retire_active = a.post(f"/v1/keys/{kid}/retirement", json={})
    assert retire_active.status_code == 409 and retire_active.get_json()["code"] == "key_in_use"
    retired = a.post(f"/v1/keys/{other}/retirement", json={})
    assert retired.status_code == 200 and retired.get_json()["state"] == "retired"
    assert a.get("/v1/keys/nope").get_json()["code"] == "key_not_found"
    bad = a.post("/v1/keys", json={"purpose": "master"})
    assert bad.status_code == 422 and bad.get_json()["code"] == "validation_failed"


def test_key_operations_need_an_officer(officer: Callable[..., AgencyClient]) -> None:
    response = officer(None).post("/v1/keys/rotation", json={"purpose": "audit"})
    assert response.status_code == 422 and response.get_json()["code"] == "officer_required"


def test_revocation_needs_a_second_officer_within_15_minutes(
    app: Flask, a: AgencyClient, b: AgencyClient, ring: KeyRing, clock: Clock
) -> None:
    victim = keys_by_purpose(a, "envelope-sign")["active"]["kid"]
    filed = a.post(f"/v1/keys/{victim}/revocation", json={"reason": "laptop of an operator stolen"})
    assert filed.status_code == 202
    approval = filed.get_json()["approval"]
    assert approval["status"] == "pending" and approval["requested_by"] == OFFICER_A
    assert approval["requested_by_client"] == "test-security-a" and approval["decided_by_client"] is None
    assert keys_by_purpose(a, "envelope-sign")["active"]["kid"] == victim  # nothing happened yet

    same = a.post(f"/v1/keys/approvals/{approval['id']}", json={})
    assert same.status_code == 403 and same.get_json()["code"] == "dual_control_same_principal"

    clock.advance(15 * 60 + 1)
    late = b.post(f"/v1/keys/approvals/{approval['id']}", json={})
    assert late.status_code == 409 and late.get_json()["code"] == "approval_expired"
    assert keys_by_purpose(a, "envelope-sign")["active"]["kid"] == victim

    again = a.post(f"/v1/keys/{victim}/revocation", json={"reason": "laptop of an operator stolen"})
    approved = b.post(f"/v1/keys/approvals/{again.get_json()['approval']['id']}", json={})
    assert approved.status_code == 200, approved.get_json()
    body = approved.get_json()
    assert body["approval"]["status"] == "executed" and body["approval"]["decided_by"] == OFFICER_B
    assert body["approval"]["decided_by_client"] == "test-security-b"
    states = {k["kid"]: k["state"] for k in body["keys"]}
    assert states[victim] == "revoked"
    [replacement] = [kid for kid, state in states.items() if state == "active"]  # the emergency replacement
    ring.invalidate()
    assert ring.active("envelope-sign").kid == replacement
    assert victim not in {k["kid"] for k in jwks(app)}
    closed = b.post(f"/v1/keys/approvals/{again.get_json()['approval']['id']}", json={})
    assert closed.status_code == 409 and closed.get_json()["code"] == "approval_closed"
    listed = a.get("/v1/keys/approvals").get_json()["items"]
    assert sorted(i["status"] for i in listed) == ["executed", "expired"]
    assert {"key.revoke_request", "key.approve", "deny"} <= set(actions(app))


def test_a_destroyed_keys_private_part_is_gone_while_its_old_tokens_and_checkpoints_still_verify(
    app: Flask, a: AgencyClient, b: AgencyClient, ring: KeyRing, clock: Clock
) -> None:
    store = ring.store
    assert isinstance(store, FileKeyStore)
    old_audit = ring.active("audit")
    with app.app_context():
        from exchange.db import db

        note = AuditLog(session=db.session).checkpoint(signer=signer(app), origin=origin(app)).note
        db.session.commit()
    old_token = ring.active("token")
    for purpose in ("audit", "token"):
        refused = a.post(f"/v1/keys/{ring.active(purpose).kid}/destruction", json={})
        assert refused.status_code == 409 and refused.get_json()["code"] == "key_in_use"  # active: rotate first
        assert a.post("/v1/keys/rotation", json={"purpose": purpose}).status_code == 200
    clock.advance(10)
    ring.invalidate()
    for key in (old_audit, old_token):
        filed = a.post(f"/v1/keys/{key.kid}/destruction", json={"reason": "routine"}).get_json()["approval"]
        done = b.post(f"/v1/keys/approvals/{filed['id']}", json={})
        assert done.status_code == 200 and done.get_json()["keys"][0]["state"] == "destroyed"
        assert not (store.directory / f"{key.kid}.key").exists() and not store.has(key.kid)
    ring.invalidate()
    # the public parts stay: the old checkpoint verifies, and so does a token signed before the rotation
    with app.app_context():
        assert verify_checkpoint(note, verifiers(app), origin=origin(app)).checkpoint is not None
    assert old_token.kid in {k.kid for k in ring.verification_keys("token")}
    shown = a.get(f"/v1/keys/{old_audit.kid}").get_json()
    assert shown["state"] == "destroyed" and shown["private_part"] is False and shown["x"] == old_audit.x


def test_rewrap_moves_keys_and_evidence_and_then_the_old_storage_key_can_go(
    app: Flask, a: AgencyClient, b: AgencyClient, ring: KeyRing, clock: Clock
) -> None:
    store = ring.store
    old = ring.active_secret()
    assert a.post("/v1/keys/rotation", json={"purpose": "storage"}).status_code == 200
    clock.advance(10)
    ring.invalidate()
    new = ring.active_secret()
    assert new.kid != old.kid
    early = a.post(f"/v1/keys/{old.kid}/destruction", json={})
    assert early.status_code == 409 and early.get_json()["code"] == "key_in_use"  # still seals the other keys
    response = a.post("/v1/keys/rewrap", json={})
    assert response.status_code == 200 and response.get_json()["key_files"] == 4
    assert all(store.wrapped_by(kid) == new.kid for kid in (ring.active(p).kid for p in ("token", "audit")))
    filed = a.post(f"/v1/keys/{old.kid}/destruction", json={}).get_json()["approval"]
    assert b.post(f"/v1/keys/approvals/{filed['id']}", json={}).status_code == 200
    assert isinstance(store, FileKeyStore)
    fresh = FileKeyStore(store.directory, master=store._master)
    assert fresh.load(ring.active("token").kid).kid == ring.active("token").kid  # still opens without the old key


def test_rotation_by_age_rotates_only_keys_past_their_maximum_age(
    app: Flask, a: AgencyClient, ring: KeyRing, clock: Clock
) -> None:
    nothing = a.post("/v1/keys/rotation", json={"due": True})
    assert nothing.status_code == 200 and nothing.get_json()["keys"] == []
    clock.advance(31 * 86400)  # token keys live 30 days by default; the others longer
    due = a.post("/v1/keys/rotation", json={"due": True}).get_json()["keys"]
    assert sorted((k["purpose"], k["state"]) for k in due) == [("token", "active"), ("token", "pending")]
    again = a.post("/v1/keys/rotation", json={"due": True})  # its successor is already scheduled
    assert again.get_json()["keys"] == []
    custom = a.post("/v1/keys/rotation", json={"due": True, "max_age_days": {"audit": 30}}).get_json()["keys"]
    assert {k["purpose"] for k in custom} == {"audit"}
    bad = a.post("/v1/keys/rotation", json={"purpose": "token", "due": True})
    assert bad.status_code == 422


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_no_private_key_material_in_any_response_or_log_line(
    app: Flask, a: AgencyClient, b: AgencyClient, ring: KeyRing, clock: Clock,
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    bodies = [a.get("/v1/keys").get_data(as_text=True), app.test_client().get("/.well-known/jwks.json")
              .get_data(as_text=True)]
    for purpose in ("token", "envelope-sign", "envelope-enc", "audit", "storage"):
        bodies.append(a.post("/v1/keys/rotation", json={"purpose": purpose}).get_data(as_text=True))
    clock.advance(10)
    ring.invalidate()
    bodies.append(a.post("/v1/keys/rewrap", json={}).get_data(as_text=True))
    victim = ring.verification_keys("envelope-sign")[-1].kid
    filed = a.post(f"/v1/keys/{victim}/revocation", json={"reason": "test"})
    bodies += [filed.get_data(as_text=True),
               b.post(f"/v1/keys/approvals/{filed.get_json()['approval']['id']}", json={}).get_data(as_text=True),
               a.get("/v1/keys").get_data(as_text=True)]
    secrets = []
    for row in ring.snapshot(refresh=True).keys:
        if ring.store.has(row.kid):
            raw = secret_bytes(ring.store.load(row.kid))
            secrets += [b64url(raw), raw.hex(), raw.hex().upper()]
    assert len(secrets) >= 30
    text = "\n".join(bodies) + "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str)
                                         for r in captured_logs.records)
    assert captured_logs.records  # the logs were captured
    leaked = [s for s in secrets if s in text]
    assert leaked == []


def test_after_a_lost_master_passphrase_officers_rotate_every_key_storage_first(
    app: Flask, a: AgencyClient, ring: KeyRing, clock: Clock, tmp_path: Any
) -> None:
    """The runbook's recovery: a new, empty store under a new master secret; the registry still names the old keys,
    whose private parts are lost. Rotating storage first, then the rest, gives a working set again, and checkpoints
    signed by the lost audit key still verify."""
    from exchange.keys.errors import KeyStoreError
    from exchange.keys.master import MasterSecret, new_master_key, unlock

    with app.app_context():
        from exchange.db import db

        old_note = AuditLog(session=db.session).checkpoint(signer=signer(app), origin=origin(app)).note
        db.session.commit()
    directory = tmp_path / "new-keys"
    ring.store = FileKeyStore(directory, master=unlock(directory, MasterSecret(key=new_master_key()), create=True))
    with pytest.raises(KeyStoreError):
        ring.active("token")  # the old private parts are gone
    assert app.test_client().get("/readyz").status_code == 503
    early = a.post("/v1/keys/rotation", json={"purpose": "token"})  # nothing can be sealed under the lost storage key
    assert early.status_code == 503 and early.get_json()["code"] == "key_store_unavailable"
    assert a.post("/v1/keys/rotation", json={"purpose": "storage"}).status_code == 200
    clock.advance(10)
    for purpose in ("token", "envelope-sign", "envelope-enc", "audit"):
        assert a.post("/v1/keys/rotation", json={"purpose": purpose}).status_code == 200
    clock.advance(10)
    ring.invalidate()
    assert app.test_client().get("/readyz").get_json()["checks"]["key_store"] == "ok"
    with app.app_context():
        assert verify_checkpoint(old_note, verifiers(app), origin=origin(app)) is not None  # still verifies
