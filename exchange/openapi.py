"""The OpenAPI document as the wire really is (protocol.md §1-5), completed after flask-smorest has drawn the views.

flask-smorest documents each view's plaintext schemas as `application/json`. On the wire of `/v1/` every request
body and every 2xx body is an envelope (`application/vnd.exchange.envelope.v1+json`), so `complete_document`:

- puts the envelope media type on every request body and data-bearing response, its schema the `Envelope` component,
  and names the plaintext inside in the media type's `x-plaintext-schema` (and in words in the description);
- adds the security schemes (OAuth2 client credentials with private_key_jwt, DPoP-bound tokens: the `DPoP` header),
  each operation's scopes (any one of them suffices: one security requirement per scope) and its purposes of use
  (`x-purposes`, the purposes of the agencies that hold one of those scopes);
- lists each operation's error responses by status with their stable codes, derived from error classes: those of the
  stages the request passes (authentication, the guard, the envelope, validation, the path's record, the commit) and
  those the view declares with `exchange.web.openapi.raises`. A new error class appears wherever it is declared or
  its stage runs;
- documents conditional writes (`If-Match`, from a declared `PreconditionFailed`/`PreconditionRequired`);
- documents the discovery (`/.well-known/*`) and OAuth (`/oauth/*`) endpoints, which are plain Flask routes.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable
from typing import Any

from flask import Flask

from exchange.envelope.http import NoResponseKey
from exchange.protocol import envelope_errors
from exchange.protocol.audit_errors import AuditKeyUnavailable, AuditPending, AuditUnavailable
from exchange.protocol.auth_errors import (
    DPoPReplay,
    InsufficientScope,
    InvalidDPoPProof,
    InvalidToken,
    PurposeNotAllowed,
)
from exchange.protocol.envelope import MAX_LIFETIME, MEDIA_TYPE, SUITE
from exchange.protocol.errors import (
    CommitUnknown,
    DatabaseUnavailable,
    ExchangeError,
    NotFound,
    RateLimited,
    ReplayCacheUnavailable,
    ResponseWithheld,
    UnsupportedMediaType,
    ValidationFailed,
)
from exchange.protocol.policy import AGENCY_SCOPES, ALL_SCOPES, PURPOSES
from exchange.web.openapi import declared_errors, if_match_declared
from exchange.web.pipeline import CommitFailed

Errors = tuple[type[ExchangeError], ...]

# The stages of a /v1/ call, in order, with the errors each can end it with.
ADMISSION: Errors = (RateLimited, DatabaseUnavailable, ReplayCacheUnavailable, AuditKeyUnavailable)
AUTHENTICATION: Errors = (InvalidToken, InvalidDPoPProof, DPoPReplay)
GUARD: Errors = (InsufficientScope, PurposeNotAllowed)
RESPONSE_KEY: Errors = (NoResponseKey,)
ENVELOPE: Errors = (UnsupportedMediaType, *sorted(
    (cls for name in envelope_errors.__all__
     if isinstance(cls := getattr(envelope_errors, name), type) and issubclass(cls, envelope_errors.EnvelopeError)
     and cls.step and cls.status < 500),  # EnvelopeReplyMismatch (502) is a client's reading of a bad response
    key=lambda cls: cls.step))
VALIDATION: Errors = (ValidationFailed,)
PATH_RECORD: Errors = (NotFound,)
# after the commit: stored (or maybe, commit_unknown), so never a 503; send the same envelope again for the outcome
AFTER_COMMIT: Errors = (AuditPending, ResponseWithheld, CommitUnknown)
COMMIT: Errors = (AuditUnavailable, CommitFailed, ExchangeError, *AFTER_COMMIT)

SCOPE_DESCRIPTIONS = {
    "returnees:read": "Read the register (interior, prosecutor).",
    "returnees:write": "Register and change returnees and their records (interior).",
    "returnees:screen": "Screen travellers and read the border view (border).",
    "crossings:write": "Record border crossings (border).",
    "decisions:write": "Record prosecutorial decisions (prosecutor).",
    "audit:read": "Read and verify the audit log (auditor).",
    "clients:admin": "Register and manage agency clients (security officers).",
    "keys:admin": "Manage the exchange's keys (security officers).",
}


def purposes_for(scopes: Iterable[str]) -> list[str]:
    """The purposes of use of every agency that holds one of `scopes` (a caller declares one of its own)."""
    wanted = set(scopes)
    return sorted({p for agency, held in AGENCY_SCOPES.items() if held & wanted for p in PURPOSES.get(agency, ())})


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def error_responses(errors: Iterable[type[ExchangeError]]) -> dict[str, dict[str, Any]]:
    """One response per status, its codes those of `errors` (first declaration of a code wins its message)."""
    by_status: dict[int, dict[str, str]] = {}
    for error in errors:
        by_status.setdefault(error.status, {}).setdefault(error.code, error.default_message)
    responses: dict[str, dict[str, Any]] = {}
    for status in sorted(by_status):
        codes = by_status[status]
        lines = "\n".join(f"- `{code}`: {message}" for code, message in codes.items())
        response: dict[str, Any] = {
            "description": f"Error codes:\n{lines}",
            "content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/Error"},
                {"type": "object", "properties": {"code": {"type": "string", "enum": list(codes)}}},
            ]}}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying, when known.",
                                                   "schema": {"type": "integer", "minimum": 0}}}
        responses[str(status)] = response
    return responses


def envelope_content(plaintext: dict[str, Any] | None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Envelope"}}
    if plaintext is not None:
        media["x-plaintext-schema"] = plaintext
    return {MEDIA_TYPE: media}


def _plaintext_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "oneOf" in schema:
        return " | ".join(_plaintext_name(s) for s in schema["oneOf"])
    return "JSON"


def shared_response(shared: dict[str, dict[str, Any]], status: str, response: dict[str, Any]) -> str:
    """The name of `response` among the document's components (many operations share one set of codes): the
    status and a short hash of its codes, stable across runs."""
    codes = response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]
    name = f"Error{status}-{hashlib.sha256(' '.join(codes).encode()).hexdigest()[:8]}"
    shared.setdefault(name, response)
    return name


def complete_operation(operation: dict[str, Any], handler: Any, *, path_parameters: bool,
                       shared: dict[str, dict[str, Any]]) -> None:
    scopes = sorted(getattr(handler, "exchange_scopes", ()))
    purposes = purposes_for(scopes)
    operation["security"] = [{"oauth2": [scope], "DPoP": []} for scope in scopes]
    operation["x-scopes"] = scopes
    operation["x-purposes"] = purposes
    note = (f"\n\nScopes (any one): {', '.join(f'`{s}`' for s in scopes)}. Purposes of use (the DPoP proof's "
            f"`purpose` claim, one of your agency's): {', '.join(f'`{p}`' for p in purposes)}.")
    operation["description"] = (operation.get("description", "") + note).strip()

    declared = declared_errors(handler)
    errors: list[type[ExchangeError]] = [*ADMISSION, *AUTHENTICATION, *GUARD, *RESPONSE_KEY]
    body = operation.get("requestBody")
    if body is not None:
        plaintext = body["content"].pop("application/json")["schema"]
        body["content"] = envelope_content(plaintext)
        body["description"] = (f"An envelope (protocol.md §4) sealed to the exchange's `envelope-enc` key; its "
                               f"plaintext is `{_plaintext_name(plaintext)}` (`x-plaintext-schema`).")
        errors += [*ENVELOPE, *VALIDATION]
    if any(p.get("in") == "query" for p in operation.get("parameters", ())):
        errors += VALIDATION
    if path_parameters:
        errors += PATH_RECORD
    errors += declared
    errors += COMMIT

    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)  # flask-smorest's generic one: ours lists the codes
    for status, response in list(responses.items()):
        if status.startswith("2") and isinstance(response, dict) and "application/json" in response.get("content", {}):
            plaintext = response["content"].pop("application/json")["schema"]
            response["content"] = envelope_content(plaintext)
            response["description"] = (response.get("description", "") + f" Sealed to your client's `enc` key and "
                                       f"signed by the exchange; the plaintext is `{_plaintext_name(plaintext)}` "
                                       "(`x-plaintext-schema`), the header carries the audit receipt.").strip()
    for status, response in error_responses(errors).items():
        responses[status] = {"$ref": f"#/components/responses/{shared_response(shared, status, response)}"}

    required = if_match_declared(handler)
    if required is not None:
        operation.setdefault("parameters", []).append({
            "in": "header", "name": "If-Match", "required": required, "schema": {"type": "string"},
            "description": 'The ETag of the record as you read it, such as "3" (412 precondition_failed when it has '
                           "changed" + ("; 428 precondition_required without it)." if required else ")."),
        })


def complete_document(app: Flask, spec: Any) -> None:
    """Complete flask-smorest's `spec` (an apispec `APISpec`) in place; call once every blueprint is registered."""
    paths: dict[str, dict[str, Any]] = spec._paths
    shared: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        view = app.view_functions[rule.endpoint]
        operations = paths[_openapi_path(rule.rule)]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            handler = getattr(view.view_class, method.lower())  # type: ignore[union-attr]
            complete_operation(operations[method.lower()], handler, path_parameters=bool(rule.arguments),
                               shared=shared)

    components = spec.components  # copies: the module's dicts are shared by every app built in this process
    for name, scheme in SECURITY_SCHEMES.items():
        components.security_scheme(name, copy.deepcopy(scheme))
    for name, schema in SCHEMAS.items():
        components.schema(name, component=copy.deepcopy(schema))
    for name, response in sorted(shared.items()):
        components.response(name, response)
    for path, operations in OAUTH_PATHS.items():
        paths[path] = copy.deepcopy(operations)


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "oauth2": {
        "type": "oauth2",
        "description": (
            "OAuth 2.0 client credentials (RFC 6749 §4.4). The client authenticates with private_key_jwt (RFC 7523: "
            "`client_assertion_type` jwt-bearer, an EdDSA-signed assertion whose `aud` is the issuer) and gets a "
            "DPoP-bound access token (RFC 9449). Send it as `Authorization: DPoP <access token>` (not Bearer), "
            "with a fresh `DPoP` proof on every request."),
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {
            scope: SCOPE_DESCRIPTIONS.get(scope, scope) for scope in ALL_SCOPES}}},
    },
    "DPoP": {
        "type": "apiKey", "in": "header", "name": "DPoP",
        "description": (
            "A DPoP proof (RFC 9449): a JWT with `typ` dpop+jwt, `alg` EdDSA and the client's public `jwk`, over "
            "`htm` (the method), `htu` (the issuer plus the path), `iat`, a unique `jti`, `ath` (the access token's "
            "hash) and the exchange's `purpose` claim: the purpose of use of this call (see each operation's "
            "`x-purposes`)."),
    },
}

_B64URL = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Envelope": {
        "type": "object",
        "description": (
            f"The signed-and-encrypted envelope of protocol v1 (media type `{MEDIA_TYPE}`, suite `{SUITE}`). "
            "`protected` is the base64url (no padding) of the header's JSON bytes, as signed; `ciphertext` is "
            "libsodium's `crypto_box_seal` to the recipient's X25519 key of the Ed25519 signature (64 bytes) "
            "followed by the plaintext: the JSON of the operation's `x-plaintext-schema`. Build and open envelopes "
            "with the partner library or by the published test vectors (schemas/test-vectors/)."),
        "required": ["protected", "ciphertext"],
        "additionalProperties": False,
        "properties": {"protected": {**_B64URL, "description": "base64url of the header (EnvelopeHeader)."},
                       "ciphertext": {**_B64URL, "description": "base64url of the sealed box."}},
    },
    "EnvelopeHeader": {
        "type": "object",
        "description": (f"The protected header, inside `protected`. `exp` is exclusive and `iat < exp <= iat + "
                        f"{MAX_LIFETIME}`. A response also carries `reply_to`, `request_hash` and `audit`."),
        "required": ["v", "suite", "sender", "skid", "recipient", "rkid", "msg_id", "iat", "exp", "method", "target",
                     "ctype"],
        "additionalProperties": False,
        "properties": {
            "v": {"type": "integer", "enum": [1]},
            "suite": {"type": "string", "enum": [SUITE]},
            "sender": {"type": "string", "description": "The sending agency (`exchange` for responses)."},
            "skid": {**_B64URL, "description": "RFC 7638 thumbprint of the sender's Ed25519 `sign` key."},
            "recipient": {"type": "string", "description": "`exchange`, or the agency a response is for."},
            "rkid": {**_B64URL, "description": "RFC 7638 thumbprint of the recipient's X25519 key."},
            "msg_id": {**_B64URL, "description": "16 to 64 random bytes, base64url; never reused."},
            "iat": {"type": "integer", "minimum": 0},
            "exp": {"type": "integer", "minimum": 0},
            "method": {"type": "string", "pattern": "^[A-Z]{1,16}$"},
            "target": {"type": "string", "description": "The path and query exactly as on the request line."},
            "ctype": {"type": "string", "enum": ["application/json"]},
            "reply_to": {"type": "string", "description": "The request envelope's msg_id, or the DPoP proof's jti."},
            "request_hash": {**_B64URL, "description": "SHA-256 of the request's protected.ciphertext, or of the "
                                                       "DPoP proof for a bodiless request."},
            "audit": {"type": "object", "required": ["index", "leaf_hash"], "additionalProperties": False,
                      "properties": {"index": {"type": "integer", "minimum": 0}, "leaf_hash": _B64URL}},
        },
    },
    "OAuthError": {
        "type": "object",
        "required": ["error", "code", "status", "message"],
        "properties": {
            "error": {"type": "string", "description": "RFC 6749 §5.2 error (the same as `code`)."},
            "error_description": {"type": "string"},
            "code": {"type": "string"},
            "status": {"type": "integer"},
            "message": {"type": "string"},
            "request_id": {"type": "string", "nullable": True},
        },
    },
    "TokenResponse": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "An RFC 9068 JWT bound to the DPoP key (cnf.jkt)."},
            "token_type": {"type": "string", "enum": ["DPoP"]},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["grant_type", "client_assertion_type", "client_assertion", "scope"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "client_assertion_type": {"type": "string",
                                      "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
            "client_assertion": {"type": "string", "description": (
                "A JWT signed (alg EdDSA) with the client's `auth` key: `iss` and `sub` the client id, `aud` the "
                "issuer, `exp`, `iat` and a unique `jti`.")},
            "scope": {"type": "string", "description": "Space-separated scopes of the client's agency (required)."},
        },
    },
    "TokenByClientRequest": {
        "type": "object",
        "required": ["token", "client_assertion_type", "client_assertion"],
        "properties": {
            "token": {"type": "string"},
            "token_type_hint": {"type": "string", "enum": ["access_token"]},
            "client_assertion_type": {"type": "string",
                                      "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
            "client_assertion": {"type": "string", "description": "As at the token endpoint (`aud` the issuer)."},
        },
    },
    "Introspection": {
        "type": "object",
        "required": ["active"],
        "properties": {"active": {"type": "boolean"}, "client_id": {"type": "string"}, "sub": {"type": "string"},
                       "agency": {"type": "string"}, "scope": {"type": "string"}, "exp": {"type": "integer"},
                       "iat": {"type": "integer"}, "jti": {"type": "string"},
                       "token_type": {"type": "string", "enum": ["DPoP"]},
                       "cnf": {"type": "object", "properties": {"jkt": {"type": "string"}}}},
    },
    "AuthorizationServerMetadata": {
        "type": "object",
        "description": "RFC 8414 metadata.",
        "required": ["issuer", "token_endpoint", "jwks_uri"],
        "properties": {name: {"type": "string"} for name in (
            "issuer", "token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint")} | {
            name: {"type": "array", "items": {"type": "string"}} for name in (
                "grant_types_supported", "token_endpoint_auth_methods_supported",
                "token_endpoint_auth_signing_alg_values_supported", "revocation_endpoint_auth_methods_supported",
                "introspection_endpoint_auth_methods_supported", "dpop_signing_alg_values_supported",
                "scopes_supported", "response_types_supported")},
    },
    "Jwks": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {
            "type": "object",
            "description": ("A public OKP JWK of the exchange with its `purpose` (`envelope-enc`: seal requests to "
                            "the key whose `status` is `active`; `envelope-sign`, `token-sign`, `audit-sign`: verify "
                            "with the key the `kid` names)."),
            "required": ["kty", "crv", "x", "kid"],
            "properties": {"kty": {"type": "string", "enum": ["OKP"]}, "crv": {"type": "string"},
                           "x": _B64URL, "kid": {"type": "string"}, "alg": {"type": "string"},
                           "use": {"type": "string"}, "purpose": {"type": "string"}, "status": {"type": "string"}},
        }}},
    },
}


def _oauth_errors(*pairs: tuple[int, list[str]]) -> dict[str, Any]:
    return {str(status): {
        "description": "Error codes (`error`, also in `code`): " + ", ".join(f"`{c}`" for c in codes) + ".",
        "content": {"application/json": {"schema": {"allOf": [
            {"$ref": "#/components/schemas/OAuthError"},
            {"type": "object", "properties": {"error": {"type": "string", "enum": codes}}}]}}},
    } for status, codes in pairs}


_AUDIT_FAILURE = {"503": {"description": "Error codes:\n- `audit_unavailable`: the call could not be audited; no "
                                         "token was issued or changed.",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
_DPOP_HEADER = {"in": "header", "name": "DPoP", "schema": {"type": "string"}}
_NO_STORE = {"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}}


def _form(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


OAUTH_PATHS: dict[str, dict[str, Any]] = {
    "/.well-known/oauth-authorization-server": {"get": {
        "tags": ["discovery"], "summary": "Authorization server metadata (RFC 8414)", "security": [],
        "responses": {"200": {"description": "The issuer and its endpoints.", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/AuthorizationServerMetadata"}}}}},
    }},
    "/.well-known/jwks.json": {"get": {
        "tags": ["discovery"], "summary": "The exchange's public keys, each with its purpose and status",
        "security": [],
        "responses": {"200": {"description": "Every key still trusted, once.",
                              "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Jwks"}}}}},
    }},
    "/oauth/token": {"post": {
        "tags": ["oauth"], "summary": "Get a DPoP-bound access token (client credentials, private_key_jwt)",
        "security": [],
        "description": ("The `DPoP` header's proof (`htm` POST, `htu` the issuer + `/oauth/token`, no `ath`) is "
                        "checked first and binds the token (RFC 9449 §5)."),
        "parameters": [{**_DPOP_HEADER, "required": True}],
        "requestBody": _form("TokenRequest"),
        "responses": {"200": {"description": "The access token.", "headers": _NO_STORE, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/TokenResponse"}}}},
            **_oauth_errors((400, ["invalid_request", "invalid_dpop_proof", "invalid_grant", "invalid_scope",
                                   "unauthorized_client", "unsupported_grant_type"]), (401, ["invalid_client"])),
            **_AUDIT_FAILURE},
    }},
    "/oauth/revoke": {"post": {
        "tags": ["oauth"], "summary": "Revoke an access token you hold (RFC 7009)", "security": [],
        "description": "The token stops working at once. A `DPoP` header is optional here.",
        "parameters": [{**_DPOP_HEADER, "required": False}],
        "requestBody": _form("TokenByClientRequest"),
        "responses": {"200": {"description": "Revoked (also for a token that was not valid)."},
                      **_oauth_errors((400, ["invalid_request", "unsupported_token_type"]), (401, ["invalid_client"])),
                      **_AUDIT_FAILURE},
    }},
    "/oauth/introspect": {"post": {
        "tags": ["oauth"], "summary": "Introspect an access token (RFC 7662; security officers' clients only)",
        "security": [],
        "requestBody": _form("TokenByClientRequest"),
        "responses": {"200": {"description": "Whether the token is active, and its claims.", "headers": _NO_STORE,
                              "content": {"application/json": {"schema": {
                                  "$ref": "#/components/schemas/Introspection"}}}},
                      **_oauth_errors((400, ["invalid_request", "unsupported_token_type"]), (401, ["invalid_client"])),
                      **_AUDIT_FAILURE},
    }},
}
