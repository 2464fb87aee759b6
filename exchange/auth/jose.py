"""JOSE for protocol v1: EdDSA (Ed25519) only, through joserfc.

Protocol v1 (protocol.md) names the JWS algorithm `EdDSA` (RFC 8037). joserfc 1.8 warns on every use of `EdDSA`
because RFC 9864 now prefers the fully specified name `Ed25519`; the key type and the signature are identical.
Rather than silencing warnings process-wide, our calls go through their own registry that allows exactly `EdDSA`
and carries no such warning. A later protocol version can accept `Ed25519` as well.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from joserfc import jwt
from joserfc._rfc8037.jws_eddsa import EdDSAAlgorithm
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from joserfc.jws import JWSRegistry, extract_compact

ALG = "EdDSA"


class _EdDSA(EdDSAAlgorithm):
    security_warning = None  # type: ignore[assignment]  # see the module docstring


class _Registry(JWSRegistry):
    algorithms = {ALG: _EdDSA()}  # noqa: RUF012  (class-level table, as joserfc defines it)


REGISTRY = _Registry(algorithms=[ALG])

__all__ = ["ALG", "REGISTRY", "JoseError", "KeySet", "OKPKey", "b64url", "decode", "encode", "header_of", "sha256_b64"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
