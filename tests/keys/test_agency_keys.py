"""Agencies rotate their own `auth`, `sign` and `enc` keys with a proof by their current active key."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.db import utcnow
from exchange.partner.credentials import PartnerKey, rotation_proof
from exchange.partner.envelopes import PartnerKeys
from tests.conftest import AgencyClient

URL = "http://127.0.0.1:5000/v1/clients/me/keys"  # the test app's issuer + path


@pytest.fixture
def keys(app: Flask) -> PartnerKeys:
    """test-border's keys, registered."""
    keys = PartnerKeys.generate()
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register({"client_id": "test-border", "agency": "border", "name": "Border",
                                                 "scopes": ["returnees:screen"], "keys": keys.registration()},
                                                officer="TJ-SEC-1")
        session.commit()
    return keys


def stored(app: Flask) -> dict[str, list[tuple[str, str]]]:
    with Session(app.extensions["exchange.db"]) as session:
        client = ClientService(session=session).get("test-border")
        out: dict[str, list[tuple[str, str]]] = {}
        for key in client.keys:
            out.setdefault(key.purpose, []).append((key.kid, key.state_at(utcnow())))
        return out


def body(purpose: str, new: Any, current: PartnerKey, **proof: Any) -> dict[str, Any]:
    jwk = {"kty": "OKP", "crv": new.public_jwk["crv"], "x": new.public_jwk["x"]}
    options = {"client_id": "test-border", "url": URL, "current": current, "new_kid": new.kid, **proof}
    return {"purpose": purpose, "jwk": jwk, "proof": rotation_proof(**options)}


def test_an_agency_replaces_its_sign_key_and_the_old_one_retires_after_the_overlap(
    app: Flask, border: AgencyClient, keys: PartnerKeys
) -> None:
    new = PartnerKey.generate()
    response = border.post("/v1/clients/me/keys", json=body("sign", new, keys.sign))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kid"] == new.kid and response.get_json()["status"] == "active"
    states = dict(stored(app)["sign"])
    assert states == {new.kid: "active", keys.sign.kid: "retiring"}
    with Session(app.extensions["exchange.db"]) as session:
        old = next(k for k in ClientService(session=session).get("test-border").keys if k.kid == keys.sign.kid)
        assert old.retire_at is not None and old.verifies_at(utcnow())
        assert not old.verifies_at(old.retire_at + timedelta(seconds=1))
        assert old.retire_at - utcnow() >= timedelta(seconds=600)


def test_enc_keys_are_proven_by_the_sign_key_and_auth_keys_by_the_auth_key(
    app: Flask, border: AgencyClient, keys: PartnerKeys
) -> None:
    from exchange.partner.envelopes import PartnerEncryptionKey

    enc = PartnerEncryptionKey.generate()
    assert border.post("/v1/clients/me/keys", json=body("enc", enc, keys.sign)).status_code == 201
    auth = PartnerKey.generate()
    wrong = border.post("/v1/clients/me/keys", json=body("auth", auth, keys.sign))  # sign key cannot prove auth
    assert wrong.status_code == 403 and wrong.get_json()["code"] == "invalid_rotation_proof"
    assert border.post("/v1/clients/me/keys", json=body("auth", auth, keys.auth)).status_code == 201
    assert dict(stored(app)["auth"])[auth.kid] == "active"


@pytest.mark.parametrize("defect", ["stranger", "other_new_kid", "stale", "audience", "issuer"])
def test_a_rotation_without_a_valid_proof_is_refused_and_changes_nothing(
    app: Flask, border: AgencyClient, keys: PartnerKeys, defect: str
) -> None:
    new = PartnerKey.generate()
    options: dict[str, Any] = {
        "stranger": {"current": PartnerKey.generate()},
        "other_new_kid": {"new_kid": PartnerKey.generate().kid},
        "stale": {"now": int(time.time()) - 120},
        "audience": {"url": "http://127.0.0.1:5000/v1/clients/test-border/keys"},
        "issuer": {"client_id": "border-other"},
    }[defect]
    base = {"client_id": "test-border", "url": URL, "current": keys.sign, "new_kid": new.kid}
    request = {"purpose": "sign", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": new.public_jwk["x"]},
               "proof": rotation_proof(**{**base, **options})}
    before = stored(app)
    response = border.post("/v1/clients/me/keys", json=request)
    assert response.status_code == 403 and response.get_json()["code"] == "invalid_rotation_proof"
    assert stored(app) == before


def test_a_proof_cannot_be_replayed(app: Flask, border: AgencyClient, keys: PartnerKeys) -> None:
    from exchange.partner.envelopes import PartnerEncryptionKey

    request = body("enc", PartnerEncryptionKey.generate(), keys.sign)  # the sign key stays active: only the jti
    assert border.post("/v1/clients/me/keys", json=request).status_code == 201
    before = stored(app)
    again = border.post("/v1/clients/me/keys", json=request)
    assert again.status_code == 403 and again.get_json()["code"] == "invalid_rotation_proof"
    assert "used before" in again.get_json()["message"] and stored(app) == before


def test_a_retired_key_is_refused_as_a_proof(
    app: Flask, border: AgencyClient, keys: PartnerKeys, as_agency: Callable[..., AgencyClient]
) -> None:
    first = PartnerKey.generate()
    assert border.post("/v1/clients/me/keys", json=body("sign", first, keys.sign)).status_code == 201
    second = PartnerKey.generate()
    stale = border.post("/v1/clients/me/keys", json=body("sign", second, keys.sign))  # retiring, not active
    assert stale.status_code == 403 and stale.get_json()["code"] == "invalid_rotation_proof"


def test_an_officer_replacing_an_agency_key_leaves_exactly_one_active(
    app: Flask, as_agency: Callable[..., AgencyClient], keys: PartnerKeys
) -> None:
    security = as_agency("security", officer="TJ-SEC-0001")
    new = PartnerKey.generate()
    response = security.post("/v1/clients/test-border/keys",
                             json={"purpose": "auth", "jwk": {"kty": "OKP", "crv": "Ed25519",
                                                              "x": new.public_jwk["x"]}})
    assert response.status_code == 201, response.get_json()
    assert dict(stored(app)["auth"]) == {new.kid: "active", keys.auth.kid: "retiring"}
    with Session(app.extensions["exchange.db"]) as session:
        client = ClientService(session=session).get("test-border")
        assert {k.kid for k in client.active_keys("auth")} == {new.kid, keys.auth.kid}  # both verify in the overlap
