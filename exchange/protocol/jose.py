"""JOSE for protocol v1: EdDSA (Ed25519) only, through joserfc.

Protocol v1 (protocol.md) names the JWS algorithm `EdDSA` (RFC 8037). joserfc 1.8 warns on every use of `EdDSA`
because RFC 9864 now prefers the fully specified name `Ed25519`; the key type and the signature are identical.
Rather than silencing warnings process-wide, our calls go through their own registry that allows exactly `EdDSA`
and carries no such warning. A later protocol version can accept `Ed25519` as well.

Signatures are checked by libsodium (PyNaCl), which the envelopes use already: about half the time of the OpenSSL
path joserfc takes through `cryptography`, and stricter (it refuses small-order keys and non-canonical signatures).
joserfc still parses the JWS and checks its header (`crit`, header member types, sizes). The API checks of every
request parse a token once (`parse`), look at its header, then `verify` the parsed object.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jwt
from joserfc._rfc8037.jws_eddsa import EdDSAAlgorithm
from joserfc.errors import BadSignatureError, InvalidPayloadError, JoseError
from joserfc.jwk import KeySet, OKPKey
from joserfc.jws import CompactSignature, JWSRegistry, extract_compact, validate_compact

from exchange.protocol.encoding import b64url

ALG = "EdDSA"


class _EdDSA(EdDSAAlgorithm):
    security_warning = None  # type: ignore[assignment]  # see the module docstring

    def verify(self, msg: bytes, sig: bytes, key: OKPKey) -> bool:
        op_key = key.get_op_key("verify")
        if not isinstance(op_key, Ed25519PublicKey):
            return bool(super().verify(msg, sig, key))  # Ed448, or not a public key: joserfc decides (and refuses)
        try:
            nacl.signing.VerifyKey(op_key.public_bytes_raw()).verify(msg, sig)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True


class _Registry(JWSRegistry):
    algorithms = {ALG: _EdDSA()}  # noqa: RUF012  (class-level table, as joserfc defines it)


REGISTRY = _Registry(algorithms=[ALG])

__all__ = ["ALG", "REGISTRY", "JoseError", "KeySet", "OKPKey", "decode", "encode", "header_of", "parse",
           "sha256_b64", "verify"]


def sha256_b64(text: str) -> str:
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def encode(header: dict[str, Any], claims: dict[str, Any], key: OKPKey) -> str:
    return jwt.encode({**header, "alg": ALG}, claims, key, algorithms=[ALG], registry=REGISTRY)


def decode(token: str, key: OKPKey | KeySet) -> jwt.Token:
    """Verify an EdDSA-signed JWT and return it; any other algorithm, `none` included, raises JoseError."""
    return jwt.decode(token, key, algorithms=[ALG], registry=REGISTRY)


def header_of(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (to choose a key or check `typ` before verifying)."""
    try:
        obj = extract_compact(token.encode("ascii"))
    except (JoseError, UnicodeEncodeError, ValueError) as e:
        raise JoseError("not a compact JWS") from e
    header = obj.protected
    if not isinstance(header, dict):
        raise JoseError("bad JWS header")
    parsed: dict[str, Any] = json.loads(json.dumps(header))
    return parsed


def parse(token: str) -> CompactSignature:
    """A compact JWS, parsed and its header checked by the registry, not verified: read `.headers()` to choose the key
    (do not change it), then `verify`."""
    try:
        obj: CompactSignature = extract_compact(token.encode("ascii"), registry=REGISTRY)
    except (JoseError, UnicodeEncodeError, ValueError) as e:
        raise JoseError("not a compact JWS") from e
    if not isinstance(obj.protected, dict):
        raise JoseError("bad JWS header")
    return obj


def verify(obj: CompactSignature, key: OKPKey | KeySet) -> dict[str, Any]:
    """The claims of a parsed JWS signed with EdDSA by `key` (what `decode` returns, without parsing it again); any
    other algorithm, a bad signature or a payload that is not a JSON object raises JoseError. From a `KeySet`, the key
    is the header's `kid` (or the only key, without `kid`), as joserfc chooses it."""
    if not validate_compact(obj, key, [ALG], REGISTRY):
        raise BadSignatureError()
    try:
        claims = json.loads(obj.payload)
    except (TypeError, ValueError) as e:
        raise InvalidPayloadError() from e
    if not isinstance(claims, dict):
        raise InvalidPayloadError()
    return claims
