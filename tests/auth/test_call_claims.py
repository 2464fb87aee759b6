"""An API call's DPoP proof is claimed in the call's own transaction, committed with its audit entry (one commit per
call); a refused call makes the claim again with its failure's entry, so its proof stays used all the same."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.auth.models import SeenJti
from exchange.partner.credentials import dpop_proof, new_jti
from exchange.register.services import RegisterService
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import returnee_body

MakePartner = Callable[..., Partner]


def error_of(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["code"]


def claimed(app: Flask, jti: str) -> bool:
    with Session(app.extensions["exchange.db"]) as session:
        return session.get(SeenJti, ("dpop", jti)) is not None


def last_entry(app: Flask) -> dict[str, Any]:
    with Session(app.extensions["exchange.db"]) as session:
        leaf = session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx.desc()).limit(1)).one()
    return dict(json.loads(leaf))


def proof_for(partner: Partner, method: str, path: str, jti: str) -> str:
    assert partner.token is not None
    return dpop_proof(key=partner.dpop_key, method=method, url=f"{ISSUER}{path}", access_token=partner.token,
                      purpose=partner.purpose, jti=jti)


@contextmanager
def counting_commits(app: Flask) -> Iterator[list[int]]:
    engine = app.extensions["exchange.db"]
    commits = [0]

    def count(_connection: Any) -> None:
        commits[0] += 1

    event.listen(engine, "commit", count)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", count)


def test_a_call_commits_its_proof_with_its_entry_once(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    interior.get_token()
    returnee_id = interior.call("POST", "/v1/returnees", json=returnee_body()).get_json()["id"]
    path = f"/v1/returnees/{returnee_id}"
    jti = new_jti()
    with counting_commits(oauth_app) as commits:
        response = interior.call("GET", path, proof=proof_for(interior, "GET", path, jti))
    assert response.status_code == 200
    # the claim, the call and its entry in one transaction (the claim had a commit of its own before)
    assert commits == [1]
    assert claimed(oauth_app, jti)
    assert last_entry(oauth_app)["dpop_jti"] == jti
    assert error_of(interior.call("GET", path, proof=proof_for(interior, "GET", path, jti))) == (401, "dpop_replay")


def test_a_refused_call_keeps_its_proof_used(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    interior.get_token()
    path = f"/v1/returnees/{uuid.uuid4()}"
    jti = new_jti()
    proof = proof_for(interior, "GET", path, jti)
    assert error_of(interior.call("GET", path, proof=proof)) == (404, "not_found")
    # the call's transaction was rolled back; the claim was made again with its failure's entry
    assert claimed(oauth_app, jti)
    failure = last_entry(oauth_app)
    assert (failure["outcome"], failure["reason"], failure["dpop_jti"]) == ("failure", "not_found", jti)
    assert error_of(interior.call("GET", path, proof=proof)) == (401, "dpop_replay")


def test_a_proof_claimed_while_the_call_ran_refuses_it_as_a_replay(
    partner: MakePartner, oauth_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    interior = partner("interior")
    interior.get_token()
    returnee_id = interior.call("POST", "/v1/returnees", json=returnee_body()).get_json()["id"]
    path = f"/v1/returnees/{returnee_id}"
    jti = new_jti()
    read = RegisterService.get

    def raced(self: RegisterService, *args: Any, **kwargs: Any) -> Any:
        # the same proof, sent twice at once, was claimed by the other call after this one checked it
        with Session(oauth_app.extensions["exchange.db"]) as other:
            other.add(SeenJti(namespace="dpop", jti=jti, expires_at=datetime.now(UTC) + timedelta(seconds=70)))
            other.commit()
        return read(self, *args, **kwargs)

    monkeypatch.setattr(RegisterService, "get", raced)
    response = interior.call("GET", path, proof=proof_for(interior, "GET", path, jti))
    assert error_of(response) == (401, "dpop_replay")
    assert "Audit-Index" in response.headers  # the refusal's own entry, not the read's
    refusal = last_entry(oauth_app)
    assert (refusal["action"], refusal["reason"], refusal["record_ids"]) == ("deny", "dpop_replay", [returnee_id])


def test_a_call_whose_proof_was_used_is_refused_before_its_view_runs(
    partner: MakePartner, oauth_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    interior = partner("interior")
    interior.get_token()
    path = f"/v1/returnees/{uuid.uuid4()}"
    jti = new_jti()
    proof = proof_for(interior, "GET", path, jti)
    assert error_of(interior.call("GET", path, proof=proof)) == (404, "not_found")

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("the view ran for a replayed proof")

    monkeypatch.setattr(RegisterService, "get", never)
    assert error_of(interior.call("GET", path, proof=proof)) == (401, "dpop_replay")


class TestRateLimited:
    @pytest.fixture
    def oauth_app(self, make_app: Callable[..., Flask]) -> Flask:
        return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, RATE_LIMIT_PER_CLIENT="1/minute")

    def test_a_rate_limited_call_keeps_its_proof_used(self, partner: MakePartner, oauth_app: Flask) -> None:
        interior = partner("interior")
        interior.get_token()
        path = f"/v1/returnees/{uuid.uuid4()}"
        assert error_of(interior.call("GET", path)) == (404, "not_found")
        jti = new_jti()
        proof = proof_for(interior, "GET", path, jti)
        assert error_of(interior.call("GET", path, proof=proof)) == (429, "rate_limited")
        # no entry of its own (its window's refusal is audited once), but its proof is used all the same
        assert claimed(oauth_app, jti)
        assert error_of(interior.call("GET", path, proof=proof)) == (401, "dpop_replay")
