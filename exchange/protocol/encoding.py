"""The one home of the wire encodings: base64url (RFC 4648 §5, no padding) and JWK thumbprints (RFC 7638).

- `b64url`: encode, no padding.
- `b64url_decode`: lenient, for values the exchange wrote itself or that a later check verifies anyway (padding may
  be missing; raises `binascii.Error`, a `ValueError`, on bad input).
- `b64url_decode_strict`: canonical only (no padding, only the base64url alphabet, zero unused trailing bits), for
  what the receiver of an envelope checks (protocol.md §4); raises `ValueError` on anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Final

_B64URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")  # "+", "/" and "=" are not in our base64url: make them invalid
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_UNUSED_BITS: Final = {0: 0, 2: 4, 3: 2}  # len % 4 -> unused low bits of the last character


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_decode_strict(text: str) -> bytes:
    """Decode canonical base64url without padding; raise ValueError on anything else (padding, other characters,
    non-zero unused trailing bits)."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError("not base64url") from e
    return b64url_decode_strict_ascii(raw)


def b64url_decode_strict_ascii(raw: bytes) -> bytes:
    """`b64url_decode_strict` of text already encoded as bytes (an envelope's parts, sliced from the body without a
    copy to str)."""
    if len(raw) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = binascii.a2b_base64(raw.translate(_B64URL_TO_STD) + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error as e:
        raise ValueError("not base64url") from e
    # strict_mode checks the alphabet and the padding; the last character may still carry unused bits.
    unused_bits = _UNUSED_BITS[len(raw) % 4]
    if unused_bits and _B64URL_ALPHABET.index(chr(raw[-1])) & ((1 << unused_bits) - 1):
        raise ValueError("not canonical base64url")
    return data


def okp_thumbprint(crv: str, x: str) -> str:
    """RFC 7638 JWK thumbprint of an OKP key: b64url(SHA-256 of {"crv","kty","x"} in lexicographic order)."""
    canonical = json.dumps({"crv": crv, "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())
