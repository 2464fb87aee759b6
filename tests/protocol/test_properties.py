"""Properties of the envelope: any JSON value round-trips, and no single-byte change of a body gets through.

What a one-byte change can legitimately leave unchanged: the body is JSON, so whitespace between its tokens means
nothing and is not signed (only the header bytes and the plaintext are). `to_json()` emits compact JSON, so no
REPLACEMENT of a byte can be such whitespace; an INSERTION of a whitespace byte between tokens can, and must then
open to the same plaintext. Everything else a byte change could reach is held fixed: base64url is accepted only in
its canonical form (no padding, no other alphabet, zero unused bits), so one text per byte string; the JSON parser
refuses duplicate members; the header is signed as sent; the ciphertext is authenticated. The tests below accept an
opened envelope only when the changed body is the same JSON document as the original (json.loads-equal) and the
plaintext is unchanged, and otherwise demand an `EnvelopeError`: any other exception type fails them.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import nacl.public
import nacl.signing
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from exchange.protocol.envelope import (
    EnvelopeHeader,
    OpenedEnvelope,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    dumps_json,
    ed25519_kid,
    open_envelope,
    seal,
    seal_json,
    x25519_kid,
)
from exchange.protocol.envelope_errors import EnvelopeError
from exchange.protocol.replay import InMemoryReplayCache

TARGET = "/v1/returnees?dry_run=false"
SIGN = nacl.signing.SigningKey.generate()
ENC = nacl.public.PrivateKey.generate()
KEYS = decrypt_keyring([ENC])
SENDERS = StaticSenderKeys([SenderKey(agency="interior", verify_key=SIGN.verify_key)])
NOW = int(time.time())  # the envelopes below live 300 s: plenty for this module

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


# Half the draws stay in the base64url alphabet, so that changes reach the header, the sealed box and the
# signature rather than stopping at the body's syntax.
BASE64URL_BYTES = st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def header(**changes: Any) -> EnvelopeHeader:
    return EnvelopeHeader.for_request(sender="interior", skid=ed25519_kid(SIGN.verify_key), recipient="exchange",
                                      rkid=x25519_kid(ENC.public_key), method="POST", target=TARGET, now=NOW,
                                      lifetime=300, **changes)


def open_(body: bytes) -> OpenedEnvelope:
    """Open with a fresh replay cache: a body that opens must open every time it is tried."""
    return open_envelope(body, receiver="exchange", decrypt_keys=KEYS, method="POST", target=TARGET,
                         authenticated_agency="interior", sender_keys=SENDERS, replay=InMemoryReplayCache(), now=NOW)


PLAINTEXT = dumps_json({"register_number": "RT-2015-000123", "person_name": {"given": "Фарҳод"}})
BODY = seal(header=header(), plaintext=PLAINTEXT, signing_key=SIGN, recipient_key=ENC.public_key).to_json()


def same_json(a: bytes, b: bytes) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def check_changed(body: bytes) -> None:
    """The property: rejected with an EnvelopeError, or the same JSON document opening to the same plaintext."""
    try:
        opened = open_(body)
    except EnvelopeError as e:
        event(f"rejected: {e.code}")
        return
    event("opened: semantically identical")
    assert same_json(body, BODY), "a changed body opened"
    assert opened.plaintext == PLAINTEXT


def _equal_json(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES)
def test_any_json_value_round_trips(value: Any) -> None:
    sealed = seal_json(header=header(), value=value, signing_key=SIGN, recipient_key=ENC.public_key)
    opened = open_(sealed.to_json())
    assert _equal_json(opened.json, value)
    assert opened.plaintext == dumps_json(value)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=300))
def test_any_bytes_are_carried_faithfully_or_refused_as_not_json(plaintext: bytes) -> None:
    """The envelope carries bytes; step 11 then refuses what is not JSON, after the signature was checked."""
    sealed = seal(header=header(), plaintext=plaintext, signing_key=SIGN, recipient_key=ENC.public_key)
    try:
        opened = open_(sealed.to_json())
    except EnvelopeError as e:
        assert e.code == "validation_failed"
        return
    assert opened.plaintext == plaintext


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(BODY) - 1), replacement=st.integers(0, 255) | BASE64URL_BYTES)
def test_any_single_byte_replacement_is_rejected(position: int, replacement: int) -> None:
    assume(BODY[position] != replacement)
    check_changed(BODY[:position] + bytes([replacement]) + BODY[position + 1:])


@settings(max_examples=500, deadline=None)
@given(position=st.integers(0, len(BODY)), inserted=st.integers(0, 255))
def test_any_single_byte_insertion_is_rejected_unless_it_is_whitespace_between_tokens(
    position: int, inserted: int,
) -> None:
    check_changed(BODY[:position] + bytes([inserted]) + BODY[position:])


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(BODY) - 1))
def test_any_single_byte_deletion_is_rejected(position: int) -> None:
    check_changed(BODY[:position] + BODY[position + 1:])


def test_every_single_bit_flip_is_rejected() -> None:
    """Exhaustively, every bit of the body: a replacement never yields the same JSON document (compact body)."""
    for position in range(len(BODY)):
        for bit in range(8):
            changed = bytearray(BODY)
            changed[position] ^= 1 << bit
            try:
                open_(bytes(changed))
            except EnvelopeError:
                continue
            raise AssertionError(f"a flip of bit {bit} at {position} was accepted")


def test_whitespace_between_tokens_is_the_only_harmless_change() -> None:
    """The honest exception, shown: JSON whitespace between the body's tokens opens to the same plaintext."""
    for position in (0, 1, BODY.index(b":") + 1, BODY.index(b","), BODY.index(b",") + 1, len(BODY) - 1, len(BODY)):
        for whitespace in b" \t\r\n":
            changed = BODY[:position] + bytes([whitespace]) + BODY[position:]
            assert open_(changed).plaintext == PLAINTEXT
