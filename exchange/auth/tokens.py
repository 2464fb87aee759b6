"""RFC 9068 JWT access tokens: issued by the authorization server, verified on every API call."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from exchange.keys.store import ExchangeKey
from exchange.protocol import jose
from exchange.protocol.auth_errors import InvalidToken
from exchange.protocol.clock import FUTURE_SKEW, TOKEN_LIFETIME


class TrustedKey(Protocol):
    """A `token` key whose signatures are accepted (a registry entry: public part only)."""

    @property
    def kid(self) -> str: ...

    def public_jwk(self) -> dict[str, Any]: ...



@dataclass(frozen=True, kw_only=True)
class AccessToken:
    jti: str
    client_id: str
    agency: str
    scopes: frozenset[str]
    iat: int
    exp: int
    jkt: str


def issue_access_token(
    *, key: ExchangeKey, issuer: str, audience: str, client_id: str, agency: str, scope: str, jkt: str,
    now: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token bound to the DPoP key `jkt`; return it with its claims."""
    now = int(time.time()) if now is None else now
    claims = {
        "iss": issuer, "sub": client_id, "client_id": client_id, "aud": audience, "agency": agency, "scope": scope,
        "iat": now, "exp": now + TOKEN_LIFETIME, "jti": uuid.uuid4().hex, "cnf": {"jkt": jkt},
    }
    return jose.encode({"typ": "at+jwt", "kid": key.kid}, claims, _signing_key(key)), claims


def verify_access_token(
    token: str, *, keys: Sequence[TrustedKey], issuer: str, audience: str, now: int | None = None
) -> AccessToken:
    """Return the verified token or raise `InvalidToken`. `keys`: every `token` key still trusted."""
    now = int(time.time()) if now is None else now
    # 1. Header: typ at+jwt (RFC 9068 §2.1), EdDSA, a kid we published.
    try:
        parsed = jose.parse(token)
    except jose.JoseError as e:
        raise InvalidToken("The access token is not a JWT.") from e
    header = parsed.protected
    if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        raise InvalidToken("The access token's typ must be at+jwt.")
    kid = str(header.get("kid"))
    key = next((key for key in keys if key.kid == kid), None)
    if key is None:
        raise InvalidToken("The access token is signed by an unknown key.")
    # 2. Signature.
    try:
        claims = jose.verify(parsed, _verify_key(key))
    except (jose.JoseError, ValueError) as e:
        raise InvalidToken("The access token's signature does not verify.") from e
    # 3. Claims (RFC 9068 §4): issuer, audience, lifetime, and the DPoP binding.
    if claims.get("iss") != issuer or claims.get("aud") != audience:
        raise InvalidToken("The access token was not issued for this API.")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int) or exp <= now or iat > now + FUTURE_SKEW:
        raise InvalidToken("The access token has expired or is not yet valid.")
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    fields = (claims.get("jti"), claims.get("client_id"), claims.get("agency"), claims.get("scope"), jkt)
    if not all(isinstance(value, str) for value in fields):
        raise InvalidToken("The access token lacks a required claim.")
    jti, client_id, agency, scope, jkt = (str(value) for value in fields)
    return AccessToken(jti=jti, client_id=client_id, agency=agency, scopes=frozenset(scope.split()), iat=iat,
                       exp=exp, jkt=jkt)


# The exchange's token signing keys, imported once per worker: a `kid` is the thumbprint of its key, so an entry can
# never be stale; the key ring still decides per token which key is active. At most a few keys live at once (active,
# pending, retiring), so the table is cleared rather than grown past a handful.
_SIGNING_KEYS: dict[str, jose.OKPKey] = {}
_SIGNING_KEYS_MAX = 8


def _signing_key(key: ExchangeKey) -> jose.OKPKey:
    imported = _SIGNING_KEYS.get(key.kid)
    if imported is None:
        imported = jose.OKPKey.import_key(key.private_jwk())
        if len(_SIGNING_KEYS) >= _SIGNING_KEYS_MAX:
            _SIGNING_KEYS.clear()
        _SIGNING_KEYS[key.kid] = imported
    return imported


def _verify_key(key: TrustedKey) -> jose.OKPKey:
    jwk = key.public_jwk()
    return _imported(key.kid, jwk["crv"], jwk["x"])


@functools.lru_cache(maxsize=64)
def _imported(kid: str, crv: str, x: str) -> jose.OKPKey:
    """The exchange's public token keys, imported once per worker (a key is its public bytes: `x` is the cache key,
    so a registry change can never be served a stale key; which keys are trusted is decided per call)."""
    return jose.OKPKey.import_key({"kty": "OKP", "crv": crv, "x": x, "kid": kid})
