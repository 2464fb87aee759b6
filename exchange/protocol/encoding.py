"""The one home of the wire encodings: base64url (RFC 4648 §5, no padding) and JWK thumbprints (RFC 7638).

- `b64url`: encode, no padding.
- `b64url_decode`: lenient, for values the exchange wrote itself or that a later check verifies anyway (padding may
  be missing; raises `binascii.Error`, a `ValueError`, on bad input).
- `b64url_decode_strict`: canonical only (no padding, only the base64url alphabet, zero unused trailing bits), for
  what the receiver of an envelope checks (protocol.md §4); raises `ValueError` on anything else.

`b64url` and the strict decoder run through pybase64 (SIMD; the envelope's body is mostly base64url, and `binascii`
costs more per byte than the Ed25519 and sealed-box calls around it): its `b64decode(..., altchars=b"-_",
validate=True, padded=False, canonical=True)` is exactly canonical base64url (the semantics of CPython 3.15's
`base64.b64decode`). Tests hold both equal to the standard library's `binascii` for any input.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Final

import pybase64

_URL_ALTCHARS: Final = b"-_"  # base64url's characters for "+" and "/" (RFC 4648 §5)


def b64url(data: bytes) -> str:
    return pybase64.b64encode_as_string(data, altchars=_URL_ALTCHARS, padded=False)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_decode_strict(text: str | bytes) -> bytes:
    """Decode canonical base64url without padding; raise ValueError on anything else (padding, other characters
    including "+" and "/", non-zero unused trailing bits, a length no encoding has, non-ASCII text). Takes the text as
    str, or as ASCII bytes (an envelope's parts, sliced from its body without a copy to str)."""
    try:
        return pybase64.b64decode(text, altchars=_URL_ALTCHARS, validate=True, padded=False, canonical=True)
    except ValueError as e:  # binascii.Error, and ValueError for a str that is not ASCII
        raise ValueError("not canonical base64url") from e


def okp_thumbprint(crv: str, x: str) -> str:
    """RFC 7638 JWK thumbprint of an OKP key: b64url(SHA-256 of {"crv","kty","x"} in lexicographic order)."""
    canonical = json.dumps({"crv": crv, "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())
