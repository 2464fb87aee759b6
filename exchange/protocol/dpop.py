"""DPoP proofs (RFC 9449), verified with joserfc. authlib does not implement DPoP.

A proof is a JWS with header `typ: dpop+jwt`, `alg: EdDSA` and the public `jwk`; its claims bind it to one request
(`htm`, `htu`), one moment (`iat`), one access token (`ath`) and one use (`jti`). Protocol v1 adds `purpose`,
`case_ref` and `officer` to the proof's claims.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from exchange.protocol import jose
from exchange.protocol.auth_errors import DPoPReplay, InvalidDPoPProof, Replayed
from exchange.protocol.clock import FUTURE_SKEW
from exchange.protocol.encoding import okp_thumbprint
from exchange.protocol.replay import ReplayCache
from exchange.protocol.text import text_fault

PAST_SKEW = 60  # protocol.md §3: iat within [now - 60, now + 10]
MAX_PROOF_BYTES = 8192


@dataclass(frozen=True, kw_only=True)
class DPoPProof:
    jti: str
    htm: str
    htu: str
    iat: int
    jkt: str  # RFC 7638 thumbprint of the proof's key
    purpose: str | None
    case_ref: str | None
    officer: str | None
    raw: str


def _optional_str(claims: dict[str, Any], name: str, limit: int = 128) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or text_fault(value):
        raise InvalidDPoPProof(f"The proof's {name!r} claim must be a short string (no NUL, no lone surrogate).")
    return value


def verify_dpop_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None,
    replay: ReplayCache,
    bound_to: str | None = None,
    now: int | None = None,
) -> DPoPProof:
    """Return the verified proof for this request, or raise `InvalidDPoPProof` / `DPoPReplay`."""
    now = int(time.time()) if now is None else now
    if not proof or len(proof) > MAX_PROOF_BYTES:
        raise InvalidDPoPProof("Send one DPoP proof in the DPoP header.")
    # 1. Header: typ dpop+jwt, alg EdDSA, a public Ed25519 JWK and nothing private.
    try:
        parsed = jose.parse(proof)
    except jose.JoseError as e:
        raise InvalidDPoPProof("The DPoP proof is not a compact JWS.") from e
    header = parsed.protected
    if header.get("typ") != "dpop+jwt":
        raise InvalidDPoPProof("The DPoP proof's typ must be dpop+jwt.")
    if header.get("alg") != jose.ALG:
        raise InvalidDPoPProof("The DPoP proof must be signed with EdDSA.")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        raise InvalidDPoPProof("The DPoP proof's jwk must be a public Ed25519 key.")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise InvalidDPoPProof("The DPoP proof's jwk has no x.")
    # 2. Signature, by the key in the header.
    try:
        key, jkt = _proof_key(x)
        claims = jose.verify(parsed, key)
    except (jose.JoseError, ValueError, TypeError) as e:
        raise InvalidDPoPProof("The DPoP proof's signature does not verify.") from e
    # 3. The request it was made for.
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128 or text_fault(jti):
        raise InvalidDPoPProof("The DPoP proof needs a unique jti (16-128 characters).")
    if htm != method:
        raise InvalidDPoPProof(f"The DPoP proof's htm must be {method}.")
    if htu != url:
        raise InvalidDPoPProof(f"The DPoP proof's htu must be {url}.")
    if not isinstance(iat, int) or isinstance(iat, bool) or not now - PAST_SKEW <= iat <= now + FUTURE_SKEW:
        raise InvalidDPoPProof("The DPoP proof's iat is outside the accepted window; check your clock.")
    # 4. The access token it accompanies.
    if access_token is not None and claims.get("ath") != jose.sha256_b64(access_token):
        raise InvalidDPoPProof("The DPoP proof's ath does not match the access token.")
    if bound_to is not None and jkt != bound_to:
        raise InvalidDPoPProof("The DPoP proof is signed by a key other than the one the token is bound to.")
    verified = DPoPProof(
        jti=jti, htm=htm, htu=htu, iat=iat, jkt=jkt,
        purpose=_optional_str(claims, "purpose", 64), case_ref=_optional_str(claims, "case_ref"),
        officer=_optional_str(claims, "officer", 64), raw=proof,
    )
    # 5. One use only (last, so that an invalid proof cannot burn a jti).
    try:
        replay.claim("dpop", jti, iat + PAST_SKEW + FUTURE_SKEW)
    except Replayed as e:
        raise DPoPReplay() from e
    return verified


@functools.lru_cache(maxsize=1024)
def _proof_key(x: str) -> tuple[jose.OKPKey, str]:
    """A proof key, imported, and its RFC 7638 thumbprint, once per worker and key (a client proves with the same
    key for the life of its tokens). Both are functions of `x` alone; an invalid `x` raises and is not cached."""
    return jose.OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": x}), okp_thumbprint("Ed25519", x)
