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
from sqlalchemy import select
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


# ---- the token endpoint: the client and its auth keys in one read, the assertion parsed once ------------------------


def auth_keys(app: Flask, client_id: str) -> set[str] | None:
    from exchange.clients.keys import client_for_token

    with Session(app.extensions["exchange.db"]) as session:
        client = client_for_token(session, client_id)
    return None if client is None else {k.kid for k in client.auth_keys}


def test_client_for_token_reads_the_state_and_only_the_auth_keys_that_verify_now(oauth_app: Flask) -> None:
    from exchange.clients.keys import client_for_token
    from exchange.clients.models import ClientKey

    first, second, third = PartnerKeys.generate(), PartnerKeys.generate(), PartnerKeys.generate()
    with Session(oauth_app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": "interior-ck", "agency": "interior", "name": "t", "scopes": ["returnees:read"],
             "keys": first.registration()}, officer="TJ-SEC-1")  # auth, sign and enc keys
        session.commit()
    assert auth_keys(oauth_app, "interior-ck") == {first.auth.kid}  # the sign and enc keys never sign assertions
    with Session(oauth_app.extensions["exchange.db"]) as session:
        ClientService(session=session).add_key("interior-ck", "auth", second.auth.public_jwk)  # the first retires
        session.commit()
    assert auth_keys(oauth_app, "interior-ck") == {first.auth.kid, second.auth.kid}
    with Session(oauth_app.extensions["exchange.db"]) as session:  # the overlap is over: no longer accepted
        old = session.scalars(select(ClientKey).where(ClientKey.kid == first.auth.kid)).one()
        old.retire_at = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()
    assert auth_keys(oauth_app, "interior-ck") == {second.auth.kid}
    with Session(oauth_app.extensions["exchange.db"]) as session:
        ClientService(session=session).add_key("interior-ck", "auth", third.auth.public_jwk)
        ClientService(session=session).revoke_key("interior-ck", second.auth.kid, reason="t")
        pending = session.scalars(select(ClientKey).where(ClientKey.kid == third.auth.kid)).one()
        pending.status = "pending"
        session.commit()
    assert auth_keys(oauth_app, "interior-ck") == set()  # revoked, pending: neither signs
    with Session(oauth_app.extensions["exchange.db"]) as session:
        client = client_for_token(session, "interior-ck")
        assert client is not None
        assert (client.client_id, client.agency, client.status, client.scopes) == (
            "interior-ck", "interior", "active", ("returnees:read",))
        assert client_for_token(session, "nobody") is None


def unsigned_claims(partner: Partner, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": partner.client_id, "sub": partner.client_id, "aud": ISSUER, "jti": uuid.uuid4().hex, "iat": now,
            "exp": now + 60, **overrides}


def signed_with(key: Any, header: dict[str, Any], payload: Any) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = key.key.get_op_key("sign").sign(signing_input.encode())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize("defect", ["not a jws", "payload not an object", "no sub", "sub not a string",
                                    "unknown client", "kid of no key of the client", "no kid, two keys"])
def test_malformed_assertions_are_refused_as_invalid_client_and_audited(
    partner: Callable[..., Partner], oauth_app: Flask, defect: str,
) -> None:
    from exchange.audit.models import AuditEntry
    from exchange.partner.credentials import PartnerKey

    interior = partner("interior")
    key, claims = interior.auth_key, unsigned_claims(interior)
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT", "kid": key.kid}
    if defect == "not a jws":
        assertion = "abc"
    elif defect == "payload not an object":
        assertion = signed_with(key, header, [claims])
    elif defect == "no sub":
        assertion = signed_with(key, header, {k: v for k, v in claims.items() if k != "sub"})
    elif defect == "sub not a string":
        assertion = signed_with(key, header, {**claims, "sub": 7})
    elif defect == "unknown client":
        assertion = signed_with(key, header, {**claims, "sub": "nobody", "iss": "nobody"})
    elif defect == "kid of no key of the client":
        assertion = signed_with(key, {**header, "kid": PartnerKey.generate().kid}, claims)
    else:  # which of two keys signed is not said: refused (protocol.md §2)
        with Session(oauth_app.extensions["exchange.db"]) as session:
            ClientService(session=session).add_key(interior.client_id, "auth", PartnerKey.generate().public_jwk)
            session.commit()
        assertion = signed_with(key, {"alg": "EdDSA", "typ": "JWT"}, claims)
    response = interior.token_request(assertion=assertion)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    with Session(oauth_app.extensions["exchange.db"]) as session:
        last = json.loads(session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx.desc())).first() or "{}")
    assert (last["action"], last["reason"], last["status"]) == ("token.deny", "invalid_client", 401)


def test_an_assertion_without_kid_is_accepted_from_a_client_with_one_auth_key(partner: Callable[..., Partner]) -> None:
    interior = partner("interior")
    assertion = signed_with(interior.auth_key, {"alg": "EdDSA", "typ": "JWT"}, unsigned_claims(interior))
    assert interior.token_request(assertion=assertion).status_code == 200


def test_tokens_are_signed_by_the_key_given_each_time() -> None:
    """The imported signing keys are kept per kid (a thumbprint): a rotated key signs the very next token."""
    import nacl.signing

    from exchange.auth.tokens import issue_access_token
    from exchange.keys.store import ExchangeKey

    first, second = (ExchangeKey(purpose="token", created_at=0, signing_key=nacl.signing.SigningKey.generate())
                     for _ in range(2))
    for key in (first, second, first):
        token, _claims = issue_access_token(key=key, issuer=ISSUER, audience=f"{ISSUER}/v1", client_id="c",
                                            agency="interior", scope="returnees:read", jkt="j" * 43)
        parsed = jose.parse(token)
        assert parsed.protected["kid"] == key.kid
        public = jose.OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": key.x})
        assert jose.verify(parsed, public)["client_id"] == "c"
