"""Dual control through the released authenticator: the two halves of revoking or destroying an exchange key are two
different security clients with different keys, whatever officer ids the DPoP proofs name (keys.md, domain.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.clients.services import ClientService
from exchange.keys.models import KeyApproval
from exchange.partner.credentials import PartnerKey, dpop_proof
from exchange.protocol.policy import AGENCY_SCOPES
from tests.auth.conftest import ISSUER, Partner
from tests.auth.test_token import assert_api_error

MakeSecurity = Callable[..., Partner]


@pytest.fixture
def security(oauth_app: Flask) -> MakeSecurity:
    """Factory: `security("desk-1")` registers a security client with its own auth key (or `key`: one shared)."""

    def make(client_id: str, *, key: PartnerKey | None = None, extra: PartnerKey | None = None) -> Partner:
        key = key or PartnerKey.generate()
        keys = [{"purpose": "auth", "jwk": key.public_jwk}]
        if extra is not None:
            keys.append({"purpose": "sign", "jwk": extra.public_jwk})
        with Session(oauth_app.extensions["exchange.db"]) as session:
            ClientService(session=session).register(
                {"client_id": client_id, "agency": "security", "name": client_id,
                 "scopes": sorted(AGENCY_SCOPES["security"]), "keys": keys}, officer="TJ-SEC-REG")
            session.commit()
        return Partner(http=oauth_app.test_client(), client_id=client_id, agency="security",
                       scopes=AGENCY_SCOPES["security"], auth_key=key)

    return make


def call(partner: Partner, method: str, path: str, *, officer: str | None, **kwargs: Any) -> Any:
    """A call whose DPoP proof names `officer` (any id the client likes: it proves nothing)."""
    token = partner.token or partner.get_token()
    proof = dpop_proof(key=partner.dpop_key, method=method, url=f"{ISSUER}{path.split('?')[0]}", access_token=token,
                       purpose=partner.purpose, officer=officer)
    return partner.http.open(path, method=method, headers={"Authorization": f"DPoP {token}", "DPoP": proof},
                             **kwargs)


def key_state(partner: Partner, kid: str) -> str:
    state: str = call(partner, "GET", f"/v1/keys/{kid}", officer="TJ-SEC-0001").get_json()["state"]
    return state


def file_request(partner: Partner, operation: str) -> tuple[str, str]:
    """File `operation` (revoke: the active envelope-sign key; destroy: a retired spare audit key); return the kid
    and the approval id."""
    if operation == "revoke":
        listed = call(partner, "GET", "/v1/keys?purpose=envelope-sign&state=active", officer="TJ-SEC-0001")
        kid = listed.get_json()["items"][0]["kid"]
        filed = call(partner, "POST", f"/v1/keys/{kid}/revocation", officer="TJ-SEC-0001",
                     json={"reason": "operator laptop stolen"})
    else:
        kid = call(partner, "POST", "/v1/keys", officer="TJ-SEC-0001", json={"purpose": "audit"}).get_json()["kid"]
        assert call(partner, "POST", f"/v1/keys/{kid}/retirement", officer="TJ-SEC-0001", json={}).status_code == 200
        filed = call(partner, "POST", f"/v1/keys/{kid}/destruction", officer="TJ-SEC-0001", json={})
    assert filed.status_code == 202, filed.get_json()
    approval = filed.get_json()["approval"]
    assert approval["requested_by_client"] == partner.client_id and approval["status"] == "pending"
    return kid, approval["id"]


def approval_row(app: Flask, approval_id: str) -> tuple[str, str | None]:
    with Session(app.extensions["exchange.db"]) as session:
        row = session.scalar(select(KeyApproval).where(KeyApproval.requested_by_client.is_not(None)))
        assert row is not None and str(row.id) == approval_id
        return row.status, row.decided_by_client


def refusals(app: Flask) -> list[tuple[str, str, str]]:
    with Session(app.extensions["exchange.db"]) as session:
        leaves = [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx))]
    return [(e["client_id"], e["officer"], e["reason"]) for e in leaves
            if "/v1/keys/approvals/" in str(e.get("path")) and e["outcome"] == "failure"]


@pytest.mark.parametrize("operation", ["revoke", "destroy"])
def test_one_client_cannot_complete_dual_control_whatever_officer_it_names(
    oauth_app: Flask, security: MakeSecurity, operation: str
) -> None:
    desk = security("security-desk-1")
    kid, approval_id = file_request(desk, operation)
    before = key_state(desk, kid)
    path = f"/v1/keys/approvals/{approval_id}"
    for officer in ("TJ-SEC-0002", "TJ-SEC-0001", "TJ-SEC-9999"):
        assert_api_error(call(desk, "POST", path, officer=officer, json={}), 403, "dual_control_same_principal")
    # a fresh token bound to a fresh DPoP key: still the same client
    desk.dpop_key, desk.token = PartnerKey.generate(), None
    assert_api_error(call(desk, "POST", path, officer="TJ-SEC-0003", json={}), 403, "dual_control_same_principal")
    assert_api_error(call(desk, "POST", path, officer=None, json={}), 422, "officer_required")
    # nothing changed
    assert key_state(desk, kid) == before
    assert approval_row(oauth_app, approval_id) == ("pending", None)
    assert refusals(oauth_app) == [("security-desk-1", officer, "dual_control_same_principal") for officer in
                                   ("TJ-SEC-0002", "TJ-SEC-0001", "TJ-SEC-9999", "TJ-SEC-0003")] + [
        ("security-desk-1", None, "officer_required")]

    other = security("security-desk-2")
    done = call(other, "POST", path, officer="TJ-SEC-0002", json={})
    assert done.status_code == 200, done.get_json()
    body = done.get_json()["approval"]
    assert (body["status"], body["requested_by_client"], body["decided_by_client"]) == (
        "executed", "security-desk-1", "security-desk-2")
    assert key_state(other, kid) == ("revoked" if operation == "revoke" else "destroyed")
    assert approval_row(oauth_app, approval_id) == ("executed", "security-desk-2")


def test_a_second_client_id_with_the_filers_key_is_the_same_principal(
    oauth_app: Flask, security: MakeSecurity
) -> None:
    desk = security("security-desk-1", extra=PartnerKey.generate())
    kid, approval_id = file_request(desk, "revoke")
    path = f"/v1/keys/approvals/{approval_id}"
    # registered with the filer's auth key under another client id
    clone = security("security-clone", key=desk.auth_key)
    assert_api_error(call(clone, "POST", path, officer="TJ-SEC-0002", json={}), 403, "dual_control_same_principal")
    # its own auth key, but the filer's DPoP key
    twin = security("security-twin")
    twin.dpop_key = desk.dpop_key
    assert_api_error(call(twin, "POST", path, officer="TJ-SEC-0002", json={}), 403, "dual_control_same_principal")
    # its own auth key, but one of the filer's other registered keys
    shared = security("security-shared", extra=PartnerKey.generate())
    with Session(oauth_app.extensions["exchange.db"]) as session:
        filer_sign = next(k for k in ClientService(session=session).get("security-desk-1").keys if k.purpose == "sign")
        jwk = {"kty": "OKP", "crv": filer_sign.crv, "x": filer_sign.x}
        ClientService(session=session).add_key("security-shared", "sign", jwk)
        session.commit()
    assert_api_error(call(shared, "POST", path, officer="TJ-SEC-0002", json={}), 403, "dual_control_same_principal")
    assert key_state(desk, kid) == "active" and approval_row(oauth_app, approval_id) == ("pending", None)

    done = call(security("security-desk-2"), "POST", path, officer="TJ-SEC-0002", json={})
    assert done.status_code == 200 and done.get_json()["approval"]["decided_by_client"] == "security-desk-2"


def test_two_clients_naming_the_same_officer_are_refused_too(oauth_app: Flask, security: MakeSecurity) -> None:
    """The officer id never grants anything, but one person named on both halves is not two people either."""
    desk = security("security-desk-1")
    kid, approval_id = file_request(desk, "revoke")
    other = security("security-desk-2")
    refused = call(other, "POST", f"/v1/keys/approvals/{approval_id}", officer="TJ-SEC-0001", json={})
    assert_api_error(refused, 403, "dual_control_same_officer")
    assert key_state(desk, kid) == "active" and approval_row(oauth_app, approval_id) == ("pending", None)
