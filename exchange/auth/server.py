"""The OAuth2 authorization server: authlib's, configured for protocol v1 (protocol.md §1-2).

- client credentials is the only grant; private_key_jwt (RFC 7523, EdDSA) the only client authentication, with
  `aud` = the issuer exactly, lifetime <= 60 s, `iat` at most 10 s ahead, and a shared `jti` replay cache;
- access tokens are RFC 9068 JWTs signed by the exchange's `token` key, bound to the DPoP key (`cnf.jkt`), of
  `token_type` DPoP, with no refresh token;
- revocation (RFC 7009) for the client that holds a token; introspection (RFC 7662) for security officers only.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import g
from sqlalchemy.orm import Session

from exchange.auth.models import RevokedToken
from exchange.auth.tokens import AccessToken, issue_access_token, verify_access_token
from exchange.clients.keys import AuthKey, ClientForToken, client_by_id, client_for_token
from exchange.keys.ring import KeyRing
from exchange.protocol import jose
from exchange.protocol.auth_errors import InvalidToken, Replayed
from exchange.protocol.clock import FUTURE_SKEW, TOKEN_LIFETIME
from exchange.protocol.replay import ReplayCache
from exchange.protocol.text import text_fault

AUTH_METHOD = "private_key_jwt"
ASSERTION_MAX_LIFETIME = 60


class TokenClient:
    """A client as authlib's endpoints see it (its `ClientMixin`): the client credentials grant with private_key_jwt
    is all it may use. Read on every request (`client_for_token`), never cached."""

    def __init__(self, row: ClientForToken) -> None:
        self.client_id = row.client_id
        self.agency = row.agency
        self.status = row.status
        self.scopes = row.scopes
        self.auth_keys = row.auth_keys

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == AUTH_METHOD

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials" and self.status == "active"


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client assertions signed by one of the client's active `auth` keys.

    The assertion is parsed once (authlib's own `__call__` would parse it, then joserfc again to verify it): its
    unverified `sub` names the client, whose accepted keys verify the parsed JWS with libsodium (`jose.verify`)."""

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, *, issuer: str, replay: ReplayCache) -> None:
        super().__init__(validate_jti=True, leeway=0)
        self.issuer = issuer
        self.replay = replay

    def __call__(self, query_client: Any, request: Any) -> TokenClient | None:
        form = request.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None  # not this method's request: authlib refuses it (invalid_client)
        parsed, unverified = _extract_assertion(assertion)
        # "sub" is read before the signature and the claims are verified: it may be absent or not a string.
        if "sub" not in unverified:
            raise InvalidClientError(description="Missing claim: 'sub'")
        client_id = unverified["sub"]
        if not isinstance(client_id, str):
            raise InvalidClientError(description="Invalid claim: 'sub'")
        client: TokenClient | None = query_client(client_id)
        if not client:
            raise InvalidClientError(description="The client does not exist on this server.")
        keys = self.resolve_client_public_key(client)
        request.client = client
        self._verify_assertion(parsed, keys)
        client = self.authenticate_client(client)
        # 5. A form `client_id`, when sent, names the same client as the assertion (RFC 7521 §4.2): a request that
        # says one client and proves another is refused, and no token is issued to either.
        named = form.get("client_id")
        if named is not None and named != client.client_id:
            raise InvalidClientError(description="The form client_id is not the client_assertion's sub.")
        return client

    def get_audiences(self) -> list[str]:
        return [self.issuer]

    def resolve_client_public_key(self, client: TokenClient) -> jose.KeySet:
        if not client.auth_keys:
            raise InvalidClientError(description="The client has no active auth key.")
        return _auth_key_set(client.auth_keys)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify an assertion given as text (the published test vectors' entry point)."""
        parsed, _unverified = _extract_assertion(assertion)
        return self._verify_assertion(parsed, resolve_key)

    def _verify_assertion(self, parsed: Any, keys: jose.KeySet | jose.OKPKey) -> dict[str, Any]:
        # 1. EdDSA only: `none`, HS256 with the public key as secret, or anything else is refused by the registry.
        if parsed.protected.get("alg") != jose.ALG:
            raise InvalidClientError(description="The client assertion must be signed with EdDSA.")
        try:
            claims = jose.verify(parsed, keys)
        except (jose.JoseError, ValueError) as e:  # ValueError: joserfc found no key for the header's kid
            raise InvalidClientError(description="The client assertion's signature does not verify.") from e
        # 2. aud is the issuer, exactly and as a string (protocol.md §2).
        if claims.get("aud") != self.issuer:
            raise InvalidClientError(description="The client assertion's aud must be the issuer identifier.")
        # 3. Lifetime: integer iat and exp, iat < exp, iat not ahead of us by more than 10 s, exp - iat <= 60.
        now = int(time.time())
        iat, exp = claims.get("iat"), claims.get("exp")
        if type(iat) is not int or type(exp) is not int:  # not a bool, not a float
            raise InvalidClientError(description="The client assertion needs integer iat and exp.")
        if exp <= iat:
            raise InvalidClientError(description="The client assertion's exp must be after its iat.")
        if iat > now + FUTURE_SKEW:
            raise InvalidClientError(description="The client assertion's iat is in the future; check your clock.")
        if exp - iat > ASSERTION_MAX_LIFETIME or exp <= now:
            raise InvalidClientError(description="The client assertion has expired or lives longer than 60 s.")
        # 4. iss = sub = client_id, and the jti not seen before (authlib's checks, then our replay cache).
        self.verify_claims_dict(claims)
        return claims

    def verify_claims_dict(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != claims.get("sub"):
            raise InvalidClientError(description="The client assertion's iss and sub must both be the client_id.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 16 <= len(jti) <= 128 or text_fault(jti):
            raise InvalidClientError(description="The client assertion needs a unique jti (16-128 characters).")
        if not self.validate_jti(claims, jti):
            raise InvalidClientError(description="The client assertion's jti was used before.")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        try:
            self.replay.claim("assertion", jti, int(claims["exp"]) + FUTURE_SKEW)
        except Replayed:
            return False
        return True

    def authenticate_client(self, client: TokenClient) -> TokenClient:
        if client.status != "active":
            raise InvalidClientError(description="The client is suspended.")
        return super().authenticate_client(client)  # type: ignore[no-any-return]


def _extract_assertion(assertion: str) -> tuple[Any, dict[str, Any]]:
    """The assertion parsed (header checked by the registry, signature not yet verified) and its unverified claims;
    authlib's refusals of a malformed one."""
    try:
        parsed = jose.parse(assertion)
    except jose.JoseError as e:
        raise InvalidClientError(description="Invalid JWT assertion.") from e
    try:
        unverified = json.loads(parsed.payload)
    except (TypeError, ValueError):
        raise InvalidClientError(description="Invalid JWT payload.") from None
    if not isinstance(unverified, dict):
        raise InvalidClientError(description="Invalid JWT payload.")
    return parsed, unverified


@functools.lru_cache(maxsize=256)
def _auth_key_set(keys: tuple[AuthKey, ...]) -> jose.KeySet:
    """A client's accepted public `auth` keys, imported once per worker. Keyed by the keys themselves (their public
    bytes), so it is never stale; which keys a client may sign with (active, retiring in time) is read from the
    database on every request."""
    return jose.KeySet([jose.OKPKey.import_key({"kty": "OKP", "crv": k.crv, "x": k.x, "kid": k.kid}) for k in keys])


class DPoPBoundTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 tokens signed with EdDSA by the exchange's active `token` key, bound to the request's DPoP key."""

    def __init__(self, *, issuer: str, audience: str, keystore: KeyRing) -> None:
        super().__init__(issuer=issuer, alg=jose.ALG, expires_generator=lambda client, grant_type: TOKEN_LIFETIME)
        self.audience = audience
        self.keystore = keystore

    def access_token_generator(self, client: TokenClient, grant_type: str, user: Any, scope: str) -> str:
        jkt = g.get("dpop_jkt")
        if not jkt:  # the token view verifies the DPoP proof before authlib runs; never issue an unbound token
            raise InvalidRequestError(description="A DPoP proof is required.")
        token, claims = issue_access_token(
            key=self.keystore.active("token"), issuer=self.issuer, audience=self.audience,
            client_id=client.client_id, agency=client.agency, scope=scope, jkt=jkt,
        )
        g.issued_token_claims = claims
        return token

    def generate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        token: dict[str, Any] = super().generate(*args, **kwargs)
        token["token_type"] = "DPoP"  # noqa: S105  (a token type, not a secret)
        token.pop("refresh_token", None)
        return token


class ExchangeClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]  # noqa: RUF012

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set((self.request.payload.scope or "").split())
        if not requested:
            raise InvalidScopeError(description="Ask for the scopes you need; there is no default scope.")
        granted = set(self.request.client.scopes)
        if not requested <= granted:
            raise InvalidScopeError(description=f"Not granted to this client: {' '.join(sorted(requested - granted))}")


class _TokenFromJwt:
    """What authlib's revocation and introspection endpoints need to know of a verified access token."""

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    def check_client(self, client: TokenClient) -> bool:
        return client.client_id == self.token.client_id

    def is_expired(self) -> bool:
        return self.token.exp <= time.time()

    def is_revoked(self) -> bool:
        return False  # looked up by the endpoint itself, which has the session


class _VerifiesTokens:
    """For authlib's revocation and introspection endpoints: tokens are verified JWTs, state is in the database."""

    def __init__(self, server: AuthorizationServer, *, verify: Callable[[str], AccessToken],
                 session: Callable[[], Session]) -> None:
        super().__init__(server)  # type: ignore[call-arg]
        self.verify = verify
        self.session = session

    def query_token(self, token_string: str, token_type_hint: str | None) -> _TokenFromJwt | None:
        try:
            return _TokenFromJwt(self.verify(token_string))
        except InvalidToken:
            return None  # RFC 7009 §2.2 / RFC 7662 §2.2: an invalid token is not an error of the request


class ExchangeRevocationEndpoint(_VerifiesTokens, RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = [AUTH_METHOD]  # noqa: RUF012
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def revoke_token(self, token: _TokenFromJwt, request: Any) -> None:
        session = self.session()
        if session.get(RevokedToken, token.token.jti) is None:
            session.add(RevokedToken(jti=token.token.jti, client_id=token.token.client_id,
                                     expires_at=datetime.fromtimestamp(token.token.exp, UTC)))
        session.commit()


class ExchangeIntrospectionEndpoint(_VerifiesTokens, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = [AUTH_METHOD]  # noqa: RUF012
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def check_permission(self, token: _TokenFromJwt, client: TokenClient, request: Any) -> bool:
        if client.agency != "security":
            raise InvalidClientError(description="Only security officers may introspect tokens.")
        return True

    def introspect_token(self, token: _TokenFromJwt) -> dict[str, Any]:
        t = token.token
        session = self.session()
        revoked = session.get(RevokedToken, t.jti) is not None
        client = client_by_id(session, t.client_id)
        if revoked or client is None or client.status != "active":
            return {"active": False}
        return {"active": True, "client_id": t.client_id, "sub": t.client_id, "agency": t.agency,
                "scope": " ".join(sorted(t.scopes)), "exp": t.exp, "iat": t.iat, "jti": t.jti,
                "token_type": "DPoP", "cnf": {"jkt": t.jkt}}


class ExchangeAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's Flask server whose error bodies also carry the exchange's `code`, `status`, `message`."""

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Any:
        if isinstance(payload, dict) and "error" in payload:
            if payload["error"] == "invalid_client":
                status_code = 401  # RFC 6749 §5.2 allows it; client authentication failed, whatever the method
            payload = {**payload, "code": payload["error"], "status": status_code,
                       "message": payload.get("error_description") or payload["error"],
                       "request_id": g.get("request_id")}
            g.oauth_error = payload["error"]
        return super().handle_response(status_code, payload, headers)


def build_server(
    *, issuer: str, audience: str, keystore: KeyRing, replay: ReplayCache, session: Callable[[], Session],
    scopes: list[str],
) -> ExchangeAuthorizationServer:
    def query_client(client_id: str) -> TokenClient | None:
        if not isinstance(client_id, str) or text_fault(client_id):  # no registered client has such an id
            return None
        row = client_for_token(session(), client_id)
        return TokenClient(row) if row is not None else None

    def save_token(token: dict[str, Any], request: Any) -> None:
        """JWT access tokens are self-contained; issuance is recorded by the token view (audit)."""

    def verify(token: str) -> AccessToken:
        return verify_access_token(token, keys=keystore.verification_keys("token"), issuer=issuer,
                                   audience=audience)

    server = ExchangeAuthorizationServer(query_client=query_client, save_token=save_token)
    server.scopes_supported = scopes
    server.register_client_auth_method(AUTH_METHOD, PrivateKeyJwt(issuer=issuer, replay=replay))
    server.register_grant(ExchangeClientCredentialsGrant)
    server.register_token_generator("default", DPoPBoundTokenGenerator(issuer=issuer, audience=audience,
                                                                       keystore=keystore))
    server.register_endpoint(ExchangeRevocationEndpoint(server, verify=verify, session=session))
    server.register_endpoint(ExchangeIntrospectionEndpoint(server, verify=verify, session=session))
    return server
