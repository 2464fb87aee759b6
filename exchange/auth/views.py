"""OAuth2 endpoints and discovery (protocol.md §1-2, operations.md "Paths"). Thin: the server does the work."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from flask import Blueprint, Response, current_app, g, jsonify, request

from exchange.audit.recorder import record_and_commit
from exchange.db import db
from exchange.identity import Caller
from exchange.keys.ring import KeyRing, key_ring
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.protocol.auth_errors import DPoPReplay, InvalidDPoPProof
from exchange.protocol.dpop import verify_dpop_proof
from exchange.protocol.policy import ALL_SCOPES
from exchange.web.errors import error_response

bp = Blueprint("oauth", __name__)

# The exchange's purposes published in the JWKS (keys.md), each key with its `purpose` member: the signing ones here,
# and the X25519 `envelope-enc` keys partners seal requests to.


def _server() -> AuthorizationServer:
    server: AuthorizationServer = current_app.extensions["exchange.oauth_server"]
    return server


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    response = jsonify({"error": error, "error_description": description, "code": error, "status": status,
                        "message": description, "request_id": g.get("request_id")})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    g.oauth_error = error
    return response


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """RFC 8414 authorization server metadata."""
    issuer = current_app.config["ISSUER"].rstrip("/")
    return jsonify({
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": ALL_SCOPES,
        "response_types_supported": [],
    })


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The exchange's public keys, each with its purpose; every key still trusted is listed, once."""
    ring: KeyRing = key_ring()
    keys: dict[str, dict[str, Any]] = {}
    for key, state in ring.published():  # per purpose: the active key first, then pending, then retiring
        keys.setdefault(key.kid, key.public_jwk(state=state))
    response = jsonify({"keys": list(keys.values())})
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.post("/oauth/token")
def token() -> Response:
    """Client credentials with private_key_jwt; the DPoP proof is checked first and binds the token (RFC 9449 §5)."""
    issuer = current_app.config["ISSUER"].rstrip("/")
    try:
        proof = verify_dpop_proof(request.headers.get("DPoP"), method="POST", url=f"{issuer}/oauth/token",
                                  access_token=None, replay=current_app.extensions["exchange.token_replay"])
    except (InvalidDPoPProof, DPoPReplay) as e:
        return _oauth_error("invalid_dpop_proof", e.message)
    g.dpop_jkt = proof.jkt
    g.dpop_jti = proof.jti
    response: Response = _server().create_token_response()
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit_oauth(response: Response) -> Response:
    """Every token issued or refused, and every revocation and introspection, gets its audit entry (audit.md).

    Fail closed: if the entry cannot be written, the caller gets 503 `audit_unavailable` and no token.
    """
    claims = g.get("issued_token_claims") or {}
    ok = response.status_code == 200
    endpoint = request.path.rsplit("/", 1)[-1]
    action = {"token": "token.issue" if ok else "token.deny"}.get(endpoint, "deny" if not ok else "consult")
    if endpoint == "revoke" and ok:
        action = "alter"  # a token's validity changed; the revoked token's id is the record touched
    caller = Caller(agency=claims["agency"], client_id=claims["client_id"], token_jti=claims["jti"],
                    dpop_jti=g.get("dpop_jti")) if claims else None
    try:
        record_and_commit(db.session, action=action, outcome="success" if ok else "failure",
                          status=response.status_code, reason=None if ok else g.get("oauth_error", "invalid_request"),
                          caller=caller, request_id=g.get("request_id", ""), method=request.method, path=request.path,
                          source_ip=request.remote_addr)
    except AuditUnavailable:
        return error_response(status=503, code=AuditUnavailable.code, message=AuditUnavailable.default_message)
    return response


@bp.after_request
def _after_oauth(response: Response) -> Response:
    if g.get("audit_counted"):  # rate limited: accounted for by its window's entry (exchange.limits)
        return response
    return _audit_oauth(response) if request.path.startswith("/oauth/") else response


@bp.post("/oauth/revoke")
def revoke() -> Response:
    """RFC 7009: the client that holds a token revokes it; it stops working at once."""
    response: Response = _server().create_endpoint_response("revocation")
    return response


@bp.post("/oauth/introspect")
def introspect() -> Response:
    """RFC 7662, for security officers' clients only."""
    response: Response = _server().create_endpoint_response("introspection")
    response.headers["Cache-Control"] = "no-store"
    return response
