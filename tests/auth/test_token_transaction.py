"""One transaction per token request: the DPoP and assertion jti claims commit with the request's audit entry."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.audit.services import AuditLog
from exchange.auth.models import SeenJti
from exchange.auth.replay import DatabaseReplayCache
from exchange.partner.credentials import client_assertion, dpop_proof
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.protocol.auth_errors import Replayed
from tests.auth.conftest import ISSUER, Partner

MakePartner = Callable[..., Partner]


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["code"]


def seen(app: Flask) -> int:
    with Session(app.extensions["exchange.db"]) as session:
        return session.scalar(select(func.count()).select_from(SeenJti)) or 0


def audit_entries(app: Flask) -> list[dict[str, Any]]:
    with Session(app.extensions["exchange.db"]) as session:
        return [json.loads(e.leaf) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.idx))]


def test_a_refused_token_request_is_audited_and_its_credentials_stay_used(
    partner: MakePartner, oauth_app: Flask
) -> None:
    reader = partner("interior", scopes={"returnees:read"})
    assertion = client_assertion(client_id=reader.client_id, issuer=ISSUER, key=reader.auth_key)
    proof = dpop_proof(key=reader.dpop_key, method="POST", url=f"{ISSUER}/oauth/token")
    assert error_of(reader.token_request(scope={"audit:read"}, assertion=assertion, proof=proof)) == (
        400, "invalid_scope")
    refused = audit_entries(oauth_app)[-1]
    assert (refused["action"], refused["outcome"], refused["reason"]) == ("token.deny", "failure", "invalid_scope")
    # the refusal committed its claims with its entry: neither credential can be used again
    assert error_of(reader.token_request(assertion=assertion)) == (401, "invalid_client")
    assert error_of(reader.token_request(proof=proof)) == (400, "invalid_dpop_proof")
    assert reader.token_request().status_code == 200


def test_a_token_is_not_issued_when_its_entry_cannot_be_written(
    partner: MakePartner, oauth_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    interior = partner("interior")
    before_seen, before_entries = seen(oauth_app), len(audit_entries(oauth_app))

    def broken(self: AuditLog, events: Any) -> Any:
        raise AuditUnavailable()

    monkeypatch.setattr(AuditLog, "append", broken)
    response = interior.token_request()
    assert error_of(response) == (503, "audit_unavailable")
    assert "access_token" not in response.get_json()
    # nothing of the request was stored: neither its entry nor its claims (it issued nothing)
    assert (seen(oauth_app), len(audit_entries(oauth_app))) == (before_seen, before_entries)
    monkeypatch.undo()
    assert interior.token_request().status_code == 200
    assert audit_entries(oauth_app)[-1]["action"] == "token.issue"


def test_a_claim_in_a_transaction_is_seen_once_committed_and_not_after_a_rollback(app: Flask) -> None:
    engine = app.extensions["exchange.db"]
    cache = DatabaseReplayCache(engine, purge_probability=0.0)
    later = int(time.time()) + 60
    kept, dropped = uuid.uuid4().hex, uuid.uuid4().hex
    with engine.begin() as connection:
        cache.claim_in(connection, "dpop", kept, later)
        with pytest.raises(Replayed):
            cache.claim_in(connection, "dpop", kept, later)
        cache.claim_in(connection, "assertion", kept, later)  # the transaction goes on after a refused claim
    with pytest.raises(Replayed):
        cache.claim("dpop", kept, later)
    with engine.connect() as connection:
        cache.claim_in(connection, "dpop", dropped, later)
        connection.rollback()
    cache.claim("dpop", dropped, later)  # rolled back: never seen
