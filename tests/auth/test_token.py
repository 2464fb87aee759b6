"""The token endpoint and every API call's authentication: the happy path and each refusal with its exact code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.auth.models import RevokedToken, SeenJti
from exchange.keys.ring import key_ring
from exchange.partner.credentials import PartnerKey, client_assertion, dpop_proof, new_jti
from exchange.protocol import jose
from exchange.register.models import Returnee
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import returnee_body

MakePartner = Callable[..., Partner]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_oauth_error(response: Any, status: int, error: str) -> None:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == error and body["code"] == error
    assert response.headers.get("Cache-Control") == "no-store" or status == 401


def assert_api_error(response: Any, status: int, code: str) -> None:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == code


def count_returnees(app: Flask) -> int:
    with Session(app.extensions["exchange.db"]) as session:
        return session.scalar(select(func.count()).select_from(Returnee)) or 0


# ---- the happy path -------------------------------------------------------------------------------------------------


def test_token_is_an_eddsa_rfc9068_jwt_bound_to_the_dpop_key(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    response = interior.token_request()
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "DPoP" and body["expires_in"] == 300 and "refresh_token" not in body
    header = jose.header_of(body["access_token"])
    token_key = key_ring(oauth_app).active("token")
    assert header == {"typ": "at+jwt", "kid": token_key.kid, "alg": "EdDSA"}
    claims = claims_of(body["access_token"])
    assert claims["iss"] == ISSUER and claims["aud"] == f"{ISSUER}/v1"
    assert claims["sub"] == claims["client_id"] == interior.client_id and claims["agency"] == "interior"
    assert claims["scope"] == "events:read returnees:read returnees:write" and claims["exp"] - claims["iat"] == 300
    assert claims["cnf"] == {"jkt": interior.dpop_key.kid}


def test_authorised_call_reaches_the_register(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    response = interior.call("POST", "/v1/returnees", json=returnee_body())
    assert response.status_code == 201, response.get_json()
    assert interior.call("GET", "/v1/returnees").get_json()["total"] == 1


def test_metadata_and_jwks(oauth_app: Flask) -> None:
    client = oauth_app.test_client()
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["issuer"] == ISSUER and metadata["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA"]
    assert "returnees:screen" in metadata["scopes_supported"]
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert {k["purpose"] for k in keys} == {"token", "envelope-sign", "audit", "envelope-enc"}
    assert {k["crv"] for k in keys if k["purpose"] == "envelope-enc"} == {"X25519"}
    assert len({k["kid"] for k in keys}) == len(keys)
    assert all("d" not in k and k["kty"] == "OKP" for k in keys)


# ---- token endpoint refusals ----------------------------------------------------------------------------------------


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(header)}.{b64(claims)}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def assertion_claims(partner: Partner, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": partner.client_id, "sub": partner.client_id, "aud": ISSUER, "jti": new_jti(), "iat": now,
            "exp": now + 60, **overrides}


def test_alg_none_assertion_is_refused(partner: MakePartner) -> None:
    interior = partner("interior")
    response = interior.token_request(assertion=forged({"alg": "none"}, assertion_claims(interior)))
    assert_oauth_error(response, 401, "invalid_client")


def test_hs256_signed_with_the_public_key_is_refused(partner: MakePartner) -> None:
    import hashlib
    import hmac

    interior = partner("interior")
    header, claims = b64({"alg": "HS256", "typ": "JWT"}), b64(assertion_claims(interior))
    secret = json.dumps(interior.auth_key.public_jwk).encode()
    mac = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    token = f"{header}.{claims}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert_oauth_error(interior.token_request(assertion=token), 401, "invalid_client")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://elsewhere.example"},
        {"aud": [ISSUER]},  # a list is not "the issuer identifier exactly"
        {"aud": f"{ISSUER}/oauth/token"},
        # times as offsets from the moment the test runs (a value computed at collection would age with the suite)
        {"iat": -300, "exp": -240},  # expired
        {"iat": 120, "exp": 150},  # from the future
        {"exp": 600},  # lives longer than 60 s
        {"sub": "someone-else"},
    ],
)
def test_bad_assertion_claims_are_refused(partner: MakePartner, overrides: dict[str, Any], oauth_app: Flask) -> None:
    interior = partner("interior")
    now = int(time.time())
    timed = {name: now + value if name in ("iat", "exp") else value for name, value in overrides.items()}
    claims = assertion_claims(interior, **timed)
    token = jose.encode({"typ": "JWT"}, claims, interior.auth_key.key)
    assert_oauth_error(interior.token_request(assertion=token), 401, "invalid_client")


def test_replayed_assertion_is_refused(partner: MakePartner) -> None:
    interior = partner("interior")
    assertion = client_assertion(client_id=interior.client_id, issuer=ISSUER, key=interior.auth_key)
    assert interior.token_request(assertion=assertion).status_code == 200
    assert_oauth_error(interior.token_request(assertion=assertion), 401, "invalid_client")


def test_assertion_signed_by_an_unregistered_key_is_refused(partner: MakePartner) -> None:
    interior = partner("interior")
    stranger = PartnerKey.generate()
    assertion = client_assertion(client_id=interior.client_id, issuer=ISSUER, key=stranger)
    assert_oauth_error(interior.token_request(assertion=assertion), 401, "invalid_client")


def test_client_secret_authentication_is_refused(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    proof = dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/oauth/token")
    basic = base64.b64encode(f"{interior.client_id}:secret".encode()).decode()
    response = oauth_app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "returnees:read"},
        headers={"Authorization": f"Basic {basic}", "DPoP": proof})
    assert_oauth_error(response, 401, "invalid_client")
    response = oauth_app.test_client().post(
        "/oauth/token", headers={"DPoP": dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/oauth/token")},
        data={"grant_type": "client_credentials", "scope": "returnees:read", "client_id": interior.client_id,
              "client_secret": "secret"})
    assert_oauth_error(response, 401, "invalid_client")


def test_scope_escalation_is_refused(partner: MakePartner) -> None:
    reader = partner("interior", scopes={"returnees:read"})
    assert_oauth_error(reader.token_request(scope={"returnees:read", "returnees:write"}), 400, "invalid_scope")
    assert_oauth_error(reader.token_request(scope={"audit:read"}), 400, "invalid_scope")
    assert_oauth_error(reader.token_request(scope=set()), 400, "invalid_scope")


def test_suspended_client_gets_no_token(partner: MakePartner) -> None:
    assert_oauth_error(partner("border", status="suspended").token_request(), 401, "invalid_client")


@pytest.mark.parametrize("defect", ["missing", "wrong_htm", "wrong_htu", "not_a_jwt", "stale"])
def test_token_request_needs_a_valid_dpop_proof(partner: MakePartner, defect: str) -> None:
    interior = partner("interior")
    proofs = {
        "missing": "",
        "wrong_htm": dpop_proof(key=interior.dpop_key, method="GET", url=f"{ISSUER}/oauth/token"),
        "wrong_htu": dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/oauth/other"),
        "not_a_jwt": "abc.def",
        "stale": dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/oauth/token",
                            now=int(time.time()) - 120),
    }
    assert_oauth_error(interior.token_request(proof=proofs[defect]), 400, "invalid_dpop_proof")


# ---- API call refusals ----------------------------------------------------------------------------------------------


def test_bearer_scheme_is_refused(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    assert_api_error(interior.call("POST", "/v1/returnees", json=returnee_body(), scheme="Bearer"), 401,
                     "invalid_token")
    assert count_returnees(oauth_app) == 0


@pytest.mark.parametrize("defect", ["htm", "htu", "ath", "query_in_htu", "future_iat", "old_iat", "typ", "missing"])
def test_bad_dpop_proofs_on_api_calls(partner: MakePartner, oauth_app: Flask, defect: str) -> None:
    interior = partner("interior")
    token = interior.get_token()
    url = f"{ISSUER}/v1/returnees"
    now = int(time.time())
    kwargs: dict[str, Any] = {"key": interior.dpop_key, "method": "POST", "url": url, "access_token": token,
                              "purpose": "register-maintenance"}
    proof = {
        "htm": lambda: dpop_proof(**{**kwargs, "method": "PUT"}),
        "htu": lambda: dpop_proof(**{**kwargs, "url": f"{ISSUER}/v1/other"}),
        "ath": lambda: dpop_proof(**{**kwargs, "access_token": token + "x"}),
        "query_in_htu": lambda: dpop_proof(**{**kwargs, "url": url + "?page=1"}),
        "future_iat": lambda: dpop_proof(**{**kwargs, "now": now + 60}),
        "old_iat": lambda: dpop_proof(**{**kwargs, "now": now - 120}),
        "typ": lambda: jose.encode({"typ": "jwt", "jwk": interior.dpop_key.public_jwk},
                                   {"jti": new_jti(), "htm": "POST", "htu": url, "iat": now,
                                    "ath": jose.sha256_b64(token)}, interior.dpop_key.key),
        "missing": lambda: "",
    }[defect]()
    response = interior.call("POST", "/v1/returnees", json=returnee_body(), proof=proof)
    assert_api_error(response, 401, "invalid_dpop_proof")
    assert count_returnees(oauth_app) == 0


def test_dpop_key_must_match_the_token_binding(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    token = interior.get_token()
    thief_key = PartnerKey.generate()
    proof = dpop_proof(key=thief_key, method="POST", url=f"{ISSUER}/v1/returnees", access_token=token,
                       purpose="register-maintenance")
    assert_api_error(interior.call("POST", "/v1/returnees", json=returnee_body(), proof=proof), 401,
                     "invalid_dpop_proof")
    assert count_returnees(oauth_app) == 0


def test_replayed_dpop_proof_is_refused(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    token = interior.get_token()
    proof = dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/v1/returnees", access_token=token,
                       purpose="register-maintenance")
    assert interior.call("POST", "/v1/returnees", json=returnee_body(), proof=proof).status_code == 201
    assert_api_error(interior.call("POST", "/v1/returnees", json=returnee_body(), proof=proof), 401, "dpop_replay")
    assert count_returnees(oauth_app) == 1


def test_forged_and_tampered_tokens_are_refused(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    token = interior.get_token()
    header, claims, signature = token.split(".")
    widened = b64({**claims_of(token), "scope": "returnees:read returnees:write audit:read"})
    for bad in (f"{header}.{widened}.{signature}", forged({"alg": "none", "typ": "at+jwt"}, claims_of(token)),
                "not-a-token"):
        interior.token = bad
        assert_api_error(interior.call("GET", "/v1/returnees"), 401, "invalid_token")
    # a token with the right signature but another typ (an ID token, say) is no access token
    key = key_ring(oauth_app).active("token")
    other = jose.encode({"typ": "JWT", "kid": key.kid}, claims_of(token), jose.OKPKey.import_key(key.private_jwk()))
    interior.token = other
    assert_api_error(interior.call("GET", "/v1/returnees"), 401, "invalid_token")


def test_revoked_token_stops_working_at_once(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    token = interior.get_token()
    assert interior.call("GET", "/v1/returnees").status_code == 200
    revoke = oauth_app.test_client().post("/oauth/revoke", data={
        "token": token, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(client_id=interior.client_id, issuer=ISSUER, key=interior.auth_key)})
    assert revoke.status_code == 200, revoke.get_json()
    assert_api_error(interior.call("GET", "/v1/returnees"), 401, "invalid_token")
    assert_api_error(interior.call("POST", "/v1/returnees", json=returnee_body()), 401, "invalid_token")
    assert count_returnees(oauth_app) == 0
    with Session(oauth_app.extensions["exchange.db"]) as session:
        assert session.get(RevokedToken, claims_of(token)["jti"]) is not None


def test_another_client_cannot_revoke_my_token(partner: MakePartner, oauth_app: Flask) -> None:
    mine, theirs = partner("interior"), partner("border")
    token = mine.get_token()
    response = oauth_app.test_client().post("/oauth/revoke", data={
        "token": token, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(client_id=theirs.client_id, issuer=ISSUER, key=theirs.auth_key)})
    assert_oauth_error(response, 400, "invalid_grant")
    assert mine.call("GET", "/v1/returnees").status_code == 200


def test_suspending_a_client_stops_its_tokens_at_once(partner: MakePartner, oauth_app: Flask) -> None:
    border = partner("border")
    border.get_token()
    assert border.call("GET", "/v1/returnees").status_code == 200
    security = partner("security")
    version = security.call("GET", f"/v1/clients/{border.client_id}").headers["ETag"]
    suspended = security.call("PATCH", f"/v1/clients/{border.client_id}", headers={"If-Match": version},
                              json={"status": "suspended", "status_reason": "laptop stolen at Panji Poyon"})
    assert suspended.status_code == 200, suspended.get_json()
    assert_api_error(border.call("GET", "/v1/returnees"), 401, "invalid_token")


@pytest.mark.parametrize("purpose", [None, "oversight", "border-screening", "curiosity"])
def test_missing_or_foreign_purpose_is_refused(partner: MakePartner, oauth_app: Flask, purpose: str | None) -> None:
    interior = partner("interior")
    response = interior.call("POST", "/v1/returnees", json=returnee_body(), purpose=purpose)
    assert_api_error(response, 403, "purpose_not_allowed")
    assert count_returnees(oauth_app) == 0


def test_scope_missing_from_the_token_is_refused(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    interior.get_token(scope={"returnees:read"})  # granted more, asked for less
    assert_api_error(interior.call("POST", "/v1/returnees", json=returnee_body()), 403, "insufficient_scope")
    assert count_returnees(oauth_app) == 0


def test_introspection_is_for_security_officers_only(partner: MakePartner, oauth_app: Flask) -> None:
    interior, security = partner("interior"), partner("security")
    token = interior.get_token()

    def introspect(who: Partner) -> Any:
        return oauth_app.test_client().post("/oauth/introspect", data={
            "token": token, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(client_id=who.client_id, issuer=ISSUER, key=who.auth_key)})

    answer = introspect(security).get_json()
    assert answer["active"] is True and answer["client_id"] == interior.client_id and answer["agency"] == "interior"
    assert answer["cnf"] == {"jkt": interior.dpop_key.kid}
    assert_oauth_error(introspect(interior), 401, "invalid_client")


def test_replay_cache_entries_are_shared_state(partner: MakePartner, oauth_app: Flask) -> None:
    """The database replay cache (default) holds both namespaces, so every worker sees every jti."""
    interior = partner("interior")
    interior.call("GET", "/v1/returnees")
    with Session(oauth_app.extensions["exchange.db"]) as session:
        namespaces = set(session.scalars(select(SeenJti.namespace)))
    assert namespaces == {"assertion", "dpop"}


def test_tokens_issued_and_refused_are_audited(partner: MakePartner, oauth_app: Flask) -> None:
    from exchange.audit.models import AuditEntry

    interior = partner("interior")
    token = interior.get_token()
    assert_oauth_error(interior.token_request(scope={"audit:read"}), 400, "invalid_scope")
    with Session(oauth_app.extensions["exchange.db"]) as session:
        entries = [json.loads(e.leaf) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    issued, refused = entries[-2], entries[-1]
    assert (issued["action"], issued["outcome"], issued["client_id"], issued["agency"]) == (
        "token.issue", "success", interior.client_id, "interior")
    assert issued["token_jti"] == claims_of(token)["jti"] and issued["path"] == "/oauth/token"
    assert (refused["action"], refused["outcome"], refused["reason"], refused["status"]) == (
        "token.deny", "failure", "invalid_scope", 400)
    assert token not in json.dumps(entries)  # ids and hashes, never the token itself


def test_form_client_id_must_name_the_assertions_client(partner: MakePartner, oauth_app: Flask) -> None:
    """RFC 7521 §4.2: a request that names one client and proves another gets no token, for either."""
    interior, border = partner("interior"), partner("border")
    response = interior.token_request(form={"client_id": border.client_id})
    assert_oauth_error(response, 401, "invalid_client")
    assert "access_token" not in response.get_json()
    assert interior.token_request(form={"client_id": interior.client_id}).status_code == 200


def test_token_endpoint_refuses_query_parameters(partner: MakePartner, oauth_app: Flask) -> None:
    interior = partner("interior")
    proof = dpop_proof(key=interior.dpop_key, method="POST", url=f"{ISSUER}/oauth/token")
    data = {"grant_type": "client_credentials", "scope": "returnees:read",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(client_id=interior.client_id, issuer=ISSUER, key=interior.auth_key)}
    response = interior.http.post("/oauth/token?scope=returnees:write", data=data, headers={"DPoP": proof})
    assert_api_error(response, 422, "validation_failed")
    assert "scope" in response.get_json()["errors"]


@pytest.mark.parametrize("bad", ["a\u0000b", "\ud800", "x" * 15 + "\u0000"])
def test_unstorable_text_in_assertions_and_proofs_is_refused_not_a_500(
    partner: MakePartner, oauth_app: Flask, bad: str
) -> None:
    """NUL and lone surrogates in claims that reach the database (sub, jti, officer, case_ref): refused with the
    endpoint's own code, on PostgreSQL too."""
    interior = partner("interior")
    for overrides in ({"sub": bad, "iss": bad}, {"jti": bad + "0123456789abcdef"}):
        token = signed({"alg": "EdDSA", "typ": "JWT"}, assertion_claims(interior, **overrides), interior.auth_key)
        assert_oauth_error(interior.token_request(assertion=token), 401, "invalid_client")
    token = interior.get_token()
    now = int(time.time())
    for extra in ({"officer": bad}, {"case_ref": bad}, {"jti": bad + "0123456789abcdef"}):
        claims = {"jti": new_jti(), "htm": "GET", "htu": f"{ISSUER}/v1/returnees", "iat": now,
                  "ath": jose.sha256_b64(token), "purpose": "investigation", **extra}
        header = {"alg": "EdDSA", "typ": "dpop+jwt", "jwk": interior.dpop_key.public_jwk}
        proof = signed(header, claims, interior.dpop_key)
        assert_api_error(interior.call("GET", "/v1/returnees", proof=proof), 401, "invalid_dpop_proof")


def signed(header: dict[str, Any], claims: dict[str, Any], key: PartnerKey) -> str:
    """A JWS as an attacker builds it: JSON with \\u escapes (a lone surrogate too), signed with the real key."""
    import nacl.signing

    signing_input = f"{b64(header)}.{b64(claims)}"
    d = key.key.as_dict(private=True)["d"]
    secret = nacl.signing.SigningKey(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
    return forged(header, claims, secret.sign(signing_input.encode()).signature)
