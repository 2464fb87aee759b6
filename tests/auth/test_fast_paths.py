"""The per-call checks, made cheaper, still refuse what they refused: one parse per JWS with libsodium signature checks,
one statement for revocation + client status + the client's `enc` key (read on every call: no cache to go stale)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.auth.models import RevokedToken
from exchange.auth.protect import read_client_state
from exchange.clients.services import ClientService
from exchange.partner.envelopes import PartnerKeys
from exchange.protocol import jose
from tests.auth.conftest import ISSUER, Partner

KEY = jose.OKPKey.generate_key("Ed25519")
OTHER = jose.OKPKey.generate_key("Ed25519")


def b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed_by_hand(header: dict[str, Any], payload: Any) -> str:
    """A JWS joserfc would not make, validly signed by KEY."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = KEY.get_op_key("sign").sign(signing_input.encode())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_parse_then_verify_is_decode() -> None:
    assert jose.verify(jose.parse(signed_by_hand({"alg": "EdDSA"}, {"a": 1})), KEY) == {"a": 1}
    token = jose.encode({"typ": "at+jwt", "kid": "k"}, {"sub": "a", "n": 1}, KEY)
    parsed = jose.parse(token)
    assert parsed.protected == {"typ": "at+jwt", "kid": "k", "alg": "EdDSA"}
    assert jose.verify(parsed, KEY) == dict(jose.decode(token, KEY).claims) == {"sub": "a", "n": 1}


@pytest.mark.parametrize("defect", ["other key", "tampered payload", "tampered header", "alg none", "alg HS256",
                                    "unknown crit", "not a jws", "payload not an object", "short signature"])
def test_verify_refuses(defect: str) -> None:
    token = jose.encode({"typ": "at+jwt"}, {"sub": "a"}, KEY)
    header, payload, signature = token.split(".")
    key = KEY
    if defect == "other key":
        key = OTHER
    elif defect == "tampered payload":
        token = f"{header}.{b64({'sub': 'b'})}.{signature}"
    elif defect == "tampered header":
        token = f"{b64({'typ': 'at+jwt', 'alg': 'EdDSA', 'kid': 'x'})}.{payload}.{signature}"
    elif defect == "alg none":
        token = f"{b64({'alg': 'none'})}.{payload}."
    elif defect == "alg HS256":
        token = f"{b64({'alg': 'HS256'})}.{payload}.{signature}"
    elif defect == "unknown crit":
        token = signed_by_hand({"alg": "EdDSA", "crit": ["exp-ext"], "exp-ext": 1}, {"sub": "a"})
    elif defect == "not a jws":
        token = "abc"
    elif defect == "payload not an object":
        token = signed_by_hand({"alg": "EdDSA"}, [1, 2])
    elif defect == "short signature":
        token = f"{header}.{payload}.{signature[:20]}"
    with pytest.raises(jose.JoseError):
        jose.verify(jose.parse(token), key)


# ---- revocation, client status and enc key: one statement, read on every call ---------------------------------------


@pytest.fixture
def registered(oauth_app: Flask) -> Callable[..., str]:
    def make(*, enc_keys: int = 1, status: str = "active") -> str:
        client_id = f"interior-{uuid.uuid4().hex[:8]}"
        keys = PartnerKeys.generate()
        with Session(oauth_app.extensions["exchange.db"]) as session:
            service = ClientService(session=session)
            service.register({"client_id": client_id, "agency": "interior", "name": "t", "scopes": ["returnees:read"],
                              "keys": [{"purpose": "auth", "jwk": keys.auth.public_jwk}]}, officer="TJ-SEC-1")
            for _ in range(enc_keys):
                service.add_key(client_id, "enc", PartnerKeys.generate().enc.public_jwk)  # the previous one retires
            if status != "active":
                service.update(client_id, {"status": status, "status_reason": "t"}, if_match=None, officer="TJ-SEC-1")
            session.commit()
        return client_id

    return make


def state(app: Flask, client_id: str, jti: str = "j" * 32) -> Any:
    with Session(app.extensions["exchange.db"]) as session:
        return read_client_state(session, client_id, jti)


def newest_enc_kid(app: Flask, client_id: str) -> str:
    with Session(app.extensions["exchange.db"]) as session:
        client = ClientService(session=session).get(client_id)
        active = [k for k in client.keys if k.purpose == "enc" and k.status == "active"]
        assert len(active) == 1
        return active[0].kid


def test_client_state_names_status_revocation_and_the_active_enc_key(oauth_app: Flask,
                                                                     registered: Callable[..., str]) -> None:
    client_id = registered(enc_keys=2)
    row = state(oauth_app, client_id)
    assert (row.status, row.revoked, row.kid) == ("active", False, newest_enc_kid(oauth_app, client_id))
    with Session(oauth_app.extensions["exchange.db"]) as session:
        expires = datetime.now(UTC) + timedelta(minutes=5)
        session.add(RevokedToken(jti="j" * 32, client_id=client_id, expires_at=expires))
        session.commit()
    assert state(oauth_app, client_id).revoked is True
    assert state(oauth_app, client_id, "k" * 32).revoked is False
    assert state(oauth_app, "nobody") is None
    assert state(oauth_app, registered(status="suspended")).status == "suspended"
    row = state(oauth_app, registered(enc_keys=0))
    assert (row.status, row.kid, row.x) == ("active", None, None)


def test_responses_are_sealed_to_the_key_found_with_the_client(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False)
    keys = PartnerKeys.generate()
    with Session(app.extensions["exchange.db"]) as session:
        service = ClientService(session=session)
        service.register({"client_id": "interior-seal", "agency": "interior", "name": "t",
                          "scopes": ["returnees:read"], "keys": keys.registration()}, officer="TJ-SEC-1")
        session.commit()
    partner = Partner(http=app.test_client(), client_id="interior-seal", agency="interior",
                      scopes=frozenset({"returnees:read"}), auth_key=keys.auth)

    def rkid() -> str:
        response = partner.call("GET", "/v1/returnees")
        assert response.status_code == 200, response.data
        protected = json.loads(response.data)["protected"]
        header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
        return str(header["rkid"])

    assert rkid() == newest_enc_kid(app, "interior-seal")
    with Session(app.extensions["exchange.db"]) as session:  # rotation: the very next response uses the new key
        ClientService(session=session).add_key("interior-seal", "enc", PartnerKeys.generate().enc.public_jwk)
        session.commit()
    time.sleep(0.01)
    assert rkid() == newest_enc_kid(app, "interior-seal")
