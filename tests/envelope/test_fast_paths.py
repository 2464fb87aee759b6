"""The envelope's fast paths decide exactly as the general code they stand in for.

- `EnvelopeHeader.to_bytes` writes the header member by member: byte for byte `dumps_json(header.to_dict())`.
- `SealedEnvelope.from_json` reads a body of exactly `to_json`'s form without the JSON parser: for any body, its
  outcome (the envelope, or the error's class, code and message) is the general path's.
- `EnvelopeHeader.parse` reads a request header of exactly `to_bytes`'s form with one pattern: for any header bytes,
  its outcome (the header, or the error's class, code and message) is the general path's.
- `_b64_size` tells the size `b64url_decode_strict` would decode to, or -1 where it refuses, without decoding.
- `parse_json` keeps one decoder: it still refuses what it refused (duplicates, NaN, a byte order mark, non-UTF-8).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.protocol.encoding import b64url, b64url_decode_strict
from exchange.protocol.envelope import (
    MAX_TIME,
    AuditReceipt,
    EnvelopeHeader,
    RequestRef,
    SealedEnvelope,
    _b64_size,
    dumps_json,
    ed25519_kid,
    new_msg_id,
    parse_json,
    seal,
    x25519_kid,
)
from exchange.protocol.envelope_errors import EnvelopeError

SIGN = nacl.signing.SigningKey.generate()
ENC = nacl.public.PrivateKey.generate()
SKID, RKID = ed25519_kid(SIGN.verify_key), x25519_kid(ENC.public_key)
NOW = int(time.time())

PARTY = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
TARGET = st.from_regex(r"/[\x21-\x7e]{0,60}", fullmatch=True)  # quotes and backslashes included: escaped by JSON
B64_32 = st.binary(min_size=32, max_size=32).map(b64url)


@settings(max_examples=300, deadline=None)
@given(sender=PARTY, recipient=PARTY, target=TARGET, method=st.from_regex(r"[A-Z]{1,16}", fullmatch=True),
       msg_id=st.binary(min_size=16, max_size=64).map(b64url), iat=st.integers(0, 2**53 - 400),
       lifetime=st.integers(1, 300), response=st.booleans(), reply_to=st.from_regex(r"[\x21-\x7e]{1,40}",
                                                                                         fullmatch=True),
       request_hash=B64_32, index=st.integers(0, 2**53 - 1), leaf_hash=B64_32)
def test_header_bytes_are_the_json_encoders(
    sender: str, recipient: str, target: str, method: str, msg_id: str, iat: int, lifetime: int, response: bool,
    reply_to: str, request_hash: str, index: int, leaf_hash: str,
) -> None:
    members: dict[str, Any] = {"sender": sender, "skid": SKID, "recipient": recipient, "rkid": RKID,
                               "msg_id": msg_id, "iat": iat, "exp": iat + lifetime, "method": method,
                               "target": target}
    if response:
        members |= {"reply_to": reply_to, "request_hash": request_hash,
                    "audit": AuditReceipt(index=index, leaf_hash=leaf_hash)}
    header = EnvelopeHeader(**members)
    assert header.to_bytes() == dumps_json(header.to_dict())
    assert EnvelopeHeader.parse(header.to_bytes()) == header


def test_the_headers_own_init_sets_exactly_the_dataclass_fields() -> None:
    """`EnvelopeHeader.__init__` is written out (one update instead of a frozen __setattr__ per member): it must set
    every field, nothing else, and still check them."""
    header = EnvelopeHeader.for_request(sender="interior", skid=SKID, recipient="exchange", rkid=RKID,
                                        method="POST", target="/v1/x", now=NOW)
    assert list(vars(header)) == [f.name for f in dataclasses.fields(EnvelopeHeader)]
    assert dataclasses.replace(header, target="/v1/y").target == "/v1/y"
    with pytest.raises(ValueError, match="target"):
        dataclasses.replace(header, target="v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.target = "/v1/y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        EnvelopeHeader(sender="interior", skid=SKID, recipient="exchange", rkid=RKID, msg_id=new_msg_id(),  # type: ignore[call-arg]
                       iat=NOW, exp=NOW + 1, method="POST")


def test_header_with_int_subclasses_falls_back_to_the_encoder() -> None:
    header = EnvelopeHeader(sender="interior", skid=SKID, recipient="exchange", rkid=RKID, msg_id=new_msg_id(),
                            iat=True, exp=200, method="POST", target="/v1/x")
    assert header.to_bytes() == dumps_json(header.to_dict())
    assert b'"iat":true' in header.to_bytes()


def _body() -> bytes:
    header = EnvelopeHeader.for_request(sender="interior", skid=SKID, recipient="exchange", rkid=RKID,
                                        method="POST", target="/v1/returnees", now=NOW)
    return seal(header=header, plaintext=b'{"a":1}', signing_key=SIGN, recipient_key=ENC.public_key).to_json()


BODY = _body()


def outcome(read: Callable[[], SealedEnvelope]) -> Any:
    try:
        sealed = read()
    except EnvelopeError as e:
        return type(e), e.code, str(e)
    return sealed, sealed.header_bytes, sealed.sealed_bytes


def both_paths(body: bytes) -> tuple[Any, Any]:
    fast = outcome(lambda: SealedEnvelope.from_json(body))
    with mock.patch.object(SealedEnvelope, "_from_canonical", return_value=None):
        general = outcome(lambda: SealedEnvelope.from_json(body))
    return fast, general


def test_the_canonical_body_takes_the_fast_path_to_the_same_envelope() -> None:
    assert SealedEnvelope._from_canonical(BODY) is not None
    fast, general = both_paths(BODY)
    assert fast == general
    assert fast[0].to_json() == BODY


@pytest.mark.parametrize("body", [
    BODY.replace(b'{"protected":"', b'{ "protected":"'),
    BODY.replace(b'","ciphertext":"', b'", "ciphertext":"'),
    BODY.replace(b'{"protected":"', b'{"protected":"\\u0041'),  # an escape: the general path decides
    BODY[:-2] + b'=="}',
    BODY[:-2] + b'"}"}',
    BODY.replace(b'","ciphertext":"', b'","ciphertext":"","ciphertext":"'),
    BODY.replace(b'","ciphertext":"', b'","protected":"x","ciphertext":"'),
    b'{"protected":"","ciphertext":""}',
    b'{"protected":"A","ciphertext":"AA"}',
    b'{"protected":"AA","ciphertext":"AB"}',
    BODY[:20] + "é".encode() + BODY[20:],
    BODY[:20] + b"\xff" + BODY[20:],
    BODY + b" ",
    b'{"protected":"' + BODY[:-2],
])
def test_other_bodies_get_the_general_paths_answer(body: bytes) -> None:
    fast, general = both_paths(body)
    assert fast == general


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_edit_of_a_body_gets_the_general_paths_answer(data: st.DataObject) -> None:
    body = bytearray(BODY)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(body)))
        byte = data.draw(st.sampled_from(b'"\\{}:, =A_-/+') | st.integers(0, 255))
        if data.draw(st.booleans()) and position < len(body):
            body[position] = byte
        elif data.draw(st.booleans()) and position < len(body):
            del body[position]
        else:
            body.insert(position, byte)
    fast, general = both_paths(bytes(body))
    assert fast == general


@pytest.mark.parametrize("text", [b'{"a":1,"a":2}', b"NaN", b"[Infinity]", b"\xef\xbb\xbf{}", b"\xff", b"",
                                  "\ufeff{}".encode()])
def test_parse_json_still_refuses(text: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        parse_json(text)


def test_parse_json_reads_what_it_read() -> None:
    assert parse_json(b' {"a":[1,2.5,"\\u00e9",null,true]} ') == {"a": [1, 2.5, "é", None, True]}


def test_seal_request_names_the_request_as_its_envelope_does() -> None:
    """The client's `seal_request` builds its `RequestRef` from the header it wrote, not by parsing it back."""
    from exchange.partner.envelopes import PartnerKeys, PublishedKeys, seal_request

    exchange_enc = nacl.public.PrivateKey.generate()
    published = PublishedKeys.from_jwks({"keys": [{
        "kty": "OKP", "crv": "X25519", "x": b64url(bytes(exchange_enc.public_key)),
        "kid": x25519_kid(exchange_enc.public_key), "purpose": "envelope-enc"}]}, fetched_at=NOW)
    keys = PartnerKeys.generate()
    body, request = seal_request(agency="interior", keys=keys, exchange=published, method="POST",
                                 target="/v1/returnees?x=1", value={"a": 1}, now=NOW)
    sealed = SealedEnvelope.from_json(body)
    assert request == RequestRef.of_envelope(sealed)
    assert EnvelopeHeader.parse(sealed.header_bytes).skid == keys.sign.kid


def test_the_shared_decoder_parses_correctly_from_many_threads() -> None:
    """`parse_json` shares one decoder, whose duplicate check runs Python code mid-parse (so threads switch there)."""
    import json
    import sys
    import threading

    documents = [dumps_json([{"n": i, "name": "Фарҳод", "tags": ["a", "b"], "nested": {"k": [i, None]}}
                             for i in range(count)]) for count in (1, 10, 200)]
    expected = [json.loads(document) for document in documents]
    failures: list[str] = []

    def work(offset: int) -> None:
        for i in range(60):
            index = (i + offset) % len(documents)
            if parse_json(documents[index]) != expected[index]:
                failures.append("a document parsed differently")
            try:
                parse_json(b'{"a":1,"a":2}')
                failures.append("a duplicate member was accepted")
            except ValueError:
                pass

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(offset,)) for offset in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


# --- the request header's pattern -------------------------------------------------------------------------------------

def header_outcome(data: bytes) -> Any:
    try:
        header = EnvelopeHeader.parse(data)
    except EnvelopeError as e:
        return type(e), e.code, str(e)
    return header, {name: (type(value), value) for name, value in vars(header).items()}


def both_header_paths(data: bytes) -> tuple[Any, Any]:
    fast = header_outcome(data)
    with mock.patch.object(EnvelopeHeader, "_from_canonical", return_value=None):
        general = header_outcome(data)
    return fast, general


def header_bytes(**changes: Any) -> bytes:
    """A request header in `to_bytes`'s form (members in its order, compact), with any values, valid or not."""
    members: dict[str, Any] = {"v": 1, "suite": "ed25519+x25519-sealedbox", "sender": "interior", "skid": SKID,
                               "recipient": "exchange", "rkid": RKID, "msg_id": b64url(bytes(16)), "iat": NOW,
                               "exp": NOW + 60, "method": "POST", "target": "/v1/returnees",
                               "ctype": "application/json"}
    return dumps_json(members | changes)


HEADER = header_bytes()


def test_a_request_header_takes_the_pattern_to_the_same_header() -> None:
    assert EnvelopeHeader._from_canonical(HEADER) is not None
    fast, general = both_header_paths(HEADER)
    assert fast == general
    assert fast[0].to_bytes() == HEADER


@settings(max_examples=300, deadline=None)
@given(sender=PARTY | st.text(max_size=70), recipient=PARTY, target=TARGET | st.text(max_size=40),
       method=st.from_regex(r"[A-Z]{1,17}", fullmatch=True), msg_id=st.binary(min_size=14, max_size=66).map(b64url),
       iat=st.integers(-2, MAX_TIME + 2) | st.sampled_from([0, MAX_TIME, MAX_TIME + 1, 10**16, 10**17]),
       lifetime=st.integers(-1, 400), skid=B64_32 | st.sampled_from([SKID[:-1] + "B", SKID + "A", ""]))
def test_any_request_header_gets_the_general_paths_answer(
    sender: str, recipient: str, target: str, method: str, msg_id: str, iat: int, lifetime: int, skid: str,
) -> None:
    data = header_bytes(sender=sender, recipient=recipient, target=target, method=method, msg_id=msg_id, iat=iat,
                        exp=iat + lifetime, skid=skid)
    fast, general = both_header_paths(data)
    assert fast == general
    if isinstance(general[0], EnvelopeHeader) and '"' not in target and "\\" not in target:
        assert EnvelopeHeader._from_canonical(data) is not None  # every valid request header without escapes


@pytest.mark.parametrize("data", [
    header_bytes(iat=MAX_TIME, exp=MAX_TIME),          # in range: the pattern's
    header_bytes(iat=MAX_TIME + 1),                   # 16 digits past 2**53 - 1: the general path refuses
    header_bytes(iat=10**16),                          # 17 digits
    header_bytes(iat=-1), header_bytes(iat=1.5), header_bytes(iat=True), header_bytes(iat="1"),
    HEADER.replace(b'"iat":', b'"iat":0'),             # a leading zero is not JSON
    header_bytes(msg_id=b64url(bytes(15))), header_bytes(msg_id=b64url(bytes(64))),
    header_bytes(msg_id=b64url(bytes(65))),
    header_bytes(msg_id=b64url(bytes(16))[:-1] + "B"),  # unused bits set
    header_bytes(msg_id=b64url(bytes(17)) + "A"),        # a length no base64url has
    header_bytes(target='/v1/"x"'), header_bytes(target="/v1/\\x"), header_bytes(target="/v1/é"),
    header_bytes(target="v1"), header_bytes(target="/" + "a" * 8191), header_bytes(target="/" + "a" * 8192),
    header_bytes(method="post"), header_bytes(sender="-x"), header_bytes(sender="a" * 65),
    header_bytes(v=2), header_bytes(v=1.0), header_bytes(suite="x"), header_bytes(ctype="text/plain"),
    HEADER.replace(b'"target":"/v1/returnees"', b'"target":"\\/v1/returnees"'),   # an escape
    HEADER.replace(b'"target":"/v1/returnees"', b'"target":"\\u002fv1/returnees"'),
    HEADER.replace(b",", b", "), HEADER + b" ", b" " + HEADER, HEADER + b"\n", HEADER[:-1],
    HEADER.replace(b'"ctype"', b'"x":1,"ctype"'), HEADER.replace(b'"sender"', b'"sender":"a","sender"'),
    dumps_json(parse_json(HEADER) | {"reply_to": "abc", "request_hash": b64url(bytes(32)),
                                      "audit": {"index": 1, "leaf_hash": b64url(bytes(32))}}),
    b"", b"{}", b"[]", b"\xff" + HEADER,
])
def test_other_headers_get_the_general_paths_answer(data: bytes) -> None:
    fast, general = both_header_paths(data)
    assert fast == general


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_edit_of_a_header_gets_the_general_paths_answer(data: st.DataObject) -> None:
    header = bytearray(HEADER)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(header)))
        byte = data.draw(st.sampled_from(b'"\\{}:, 0159-AQBw_/+.\x00\x7f') | st.integers(0, 255))
        if data.draw(st.booleans()) and position < len(header):
            header[position] = byte
        elif data.draw(st.booleans()) and position < len(header):
            del header[position]
        else:
            header.insert(position, byte)
    fast, general = both_header_paths(bytes(header))
    assert fast == general


@settings(max_examples=1000, deadline=None)
@given(text=st.text(alphabet="AEQgwBb9-_+/= \né", max_size=12) | st.binary(max_size=70).map(b64url))
def test_b64_size_is_the_strict_decoders(text: str) -> None:
    try:
        expected = len(b64url_decode_strict(text))
    except ValueError:
        expected = -1
    assert _b64_size(text) == expected
