"""The envelope's receiver checks (protocol.md §4), each with its exact code, and their order.

Rejected envelopes are built here with nacl directly (`World.body`), not with `seal`: a test that made its bad
envelopes with the code under test could share its mistakes. Each `Defect` breaks exactly one check; every defect is
tested alone, and every pair of defects at different steps is tested together, expecting the earlier step's code
(a tampered header addressed to the wrong recipient fails at step 3, not 9). The replay cache is
`InMemoryReplayCache` wrapped by a spy, so that a test can tell whether a rejected envelope consumed its msg_id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import nacl.bindings
import nacl.public
import nacl.signing
import pytest
from joserfc.jwk import OKPKey

from exchange.protocol import envelope_errors as errors
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.encoding import b64url, b64url_decode_strict
from exchange.protocol.envelope import (
    MAX_BODY_BYTES,
    MEDIA_TYPE,
    AuditReceipt,
    EnvelopeHeader,
    OpenedEnvelope,
    RequestRef,
    SealedEnvelope,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    ed25519_kid,
    new_msg_id,
    open_envelope,
    open_response,
    parse_json,
    request_hash_of,
    request_hash_of_proof,
    seal,
    seal_json,
    verify_evidence,
    x25519_kid,
)
from exchange.protocol.errors import ExchangeError, ValidationFailed
from exchange.protocol.replay import InMemoryReplayCache

TARGET = "/v1/returnees?dry_run=false"
MARKER = "PLAINTEXT-MARKER-7f3a"  # must never appear in an error message or a repr
PLAINTEXT = json.dumps({"register_number": "RT-2015-000123", "note": MARKER,
                        "person_name": {"given": "Фарҳод"}}, ensure_ascii=False).encode("utf-8")
DOMAIN = b"exchange-envelope/v1\x00"


class SpyReplay:
    """InMemoryReplayCache, remembering every claim made of it."""

    def __init__(self) -> None:
        self.inner = InMemoryReplayCache()
        self.claims: list[tuple[str, str, int]] = []

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        self.claims.append((namespace, jti, expires_at))
        self.inner.claim(namespace, jti, expires_at)


@dataclass
class World:
    """The parties' keys (generated per test), and a builder of envelopes that does not use `seal`."""

    now: int = field(default_factory=lambda: int(time.time()))
    interior_sign: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    mallory_sign: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    exchange_sign: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    exchange_enc: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    exchange_enc_retiring: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    exchange_enc_gone: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    interior_enc: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    prosecutor_enc: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    replay: SpyReplay = field(default_factory=SpyReplay)
    revoked: bool = False

    def sender_keys(self) -> StaticSenderKeys:
        return StaticSenderKeys([
            SenderKey(agency="interior", verify_key=self.interior_sign.verify_key, revoked=self.revoked),
            SenderKey(agency="exchange", verify_key=self.exchange_sign.verify_key),
        ])

    def decrypt_keys(self) -> dict[str, nacl.public.PrivateKey]:
        return decrypt_keyring([self.exchange_enc, self.exchange_enc_retiring])

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {
            "v": 1, "suite": "ed25519+x25519-sealedbox", "sender": "interior",
            "skid": ed25519_kid(self.interior_sign.verify_key), "recipient": "exchange",
            "rkid": x25519_kid(self.exchange_enc.public_key), "msg_id": new_msg_id(), "iat": self.now,
            "exp": self.now + 60, "method": "POST", "target": TARGET, "ctype": "application/json",
        }
        header.update(overrides)
        return header

    def body(
        self, header: dict[str, Any] | bytes, *, plaintext: bytes = PLAINTEXT,
        signer: nacl.signing.SigningKey | None = None, to: nacl.public.PublicKey | None = None,
        signed_header: dict[str, Any] | bytes | None = None, content: bytes | None = None,
    ) -> bytes:
        """An envelope by the spec, built with nacl: `signed_header` makes the signature cover another header than
        the one sent; `content` replaces sig || plaintext."""
        def raw(h: dict[str, Any] | bytes) -> bytes:
            return h if isinstance(h, bytes) else json.dumps(h, separators=(",", ":")).encode()

        header_bytes = raw(header)
        signed = raw(signed_header) if signed_header is not None else header_bytes
        signer = signer or self.interior_sign
        sig = signer.sign(DOMAIN + signed + b"\x00" + hashlib.sha256(plaintext).digest()).signature
        box = nacl.bindings.crypto_box_seal(sig + plaintext if content is None else content,
                                            bytes(to or self.exchange_enc.public_key))
        return json.dumps({"protected": b64url(header_bytes), "ciphertext": b64url(box)}).encode()

    def open(self, body: bytes, **context: Any) -> OpenedEnvelope:
        arguments: dict[str, Any] = {
            "receiver": "exchange", "decrypt_keys": self.decrypt_keys(), "method": "POST", "target": TARGET,
            "authenticated_agency": "interior", "sender_keys": self.sender_keys(), "replay": self.replay,
            "now": self.now,
        }
        arguments.update(context)
        return open_envelope(body, **arguments)


@pytest.fixture
def world() -> World:
    return World()


def rejected(code: str, call: Callable[[], Any]) -> errors.EnvelopeError:
    with pytest.raises(errors.EnvelopeError) as caught:
        call()
    assert caught.value.code == code, f"expected {code}, got {caught.value.code}: {caught.value.message}"
    assert MARKER not in caught.value.message
    return caught.value


# --- the happy path ---------------------------------------------------------------------------------------------------

def test_a_sealed_envelope_opens_to_its_plaintext(world: World) -> None:
    header = EnvelopeHeader.for_request(
        sender="interior", skid=ed25519_kid(world.interior_sign.verify_key), recipient="exchange",
        rkid=x25519_kid(world.exchange_enc.public_key), method="POST", target=TARGET, now=world.now)
    sealed = seal(header=header, plaintext=PLAINTEXT, signing_key=world.interior_sign,
                  recipient_key=world.exchange_enc.public_key)

    opened = world.open(sealed.to_json())

    assert opened.plaintext == PLAINTEXT
    assert opened.json["person_name"] == {"given": "Фарҳод"}
    assert opened.header == header
    assert opened.header_bytes == header.to_bytes() == b64url_decode_strict(sealed.protected)
    assert world.interior_sign.verify_key.verify(
        DOMAIN + opened.header_bytes + b"\x00" + hashlib.sha256(PLAINTEXT).digest(), opened.sig)
    assert world.replay.claims == [("envelope:interior", header.msg_id, header.exp + 60)]
    assert MEDIA_TYPE == "application/vnd.exchange.envelope.v1+json"


def test_an_envelope_built_by_the_spec_alone_opens(world: World) -> None:
    """Interoperability: `World.body` follows protocol.md §4 with nacl and json only."""
    header = world.header()
    opened = world.open(world.body(header))
    assert opened.header.msg_id == header["msg_id"]
    assert opened.header_bytes == json.dumps(header, separators=(",", ":")).encode()


def test_header_bytes_are_verified_as_sent_not_reserialised(world: World) -> None:
    """Another implementation may space and order its header as it likes: the signature covers its bytes."""
    header_bytes = json.dumps(dict(reversed(list(world.header().items()))), indent=1).encode()
    opened = world.open(world.body(header_bytes))
    assert opened.header_bytes == header_bytes
    assert opened.header.to_bytes() != header_bytes


def test_whitespace_in_the_body_is_not_part_of_the_envelope(world: World) -> None:
    body = world.body(world.header())
    spaced = json.dumps(json.loads(body), indent=4).encode()
    assert world.open(spaced).plaintext == PLAINTEXT


def test_an_envelope_to_a_retiring_key_still_opens(world: World) -> None:
    """keys.md: envelopes sealed to the previous envelope-enc key open during the overlap."""
    header = world.header(rkid=x25519_kid(world.exchange_enc_retiring.public_key))
    assert world.open(world.body(header, to=world.exchange_enc_retiring.public_key)).plaintext == PLAINTEXT


def test_seal_json_seals_compact_utf8(world: World) -> None:
    header = EnvelopeHeader.for_request(
        sender="interior", skid=ed25519_kid(world.interior_sign.verify_key), recipient="exchange",
        rkid=x25519_kid(world.exchange_enc.public_key), method="POST", target=TARGET, now=world.now)
    value = {"given": "Фарҳод", "n": [1, 2.5, None, True]}
    sealed = seal_json(header=header, value=value, signing_key=world.interior_sign,
                       recipient_key=world.exchange_enc.public_key)
    opened = world.open(sealed.to_json())
    assert opened.json == value
    assert opened.plaintext == '{"given":"Фарҳод","n":[1,2.5,null,true]}'.encode()


# --- each receiver check alone, with its code -------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """One envelope and the request it arrives with; defects edit it. `signed_changes` alter only the header the
    signature covers (as if the header had been changed after signing)."""

    header: dict[str, Any]
    signed_changes: dict[str, Any] = field(default_factory=dict)
    plaintext: bytes = PLAINTEXT
    signer: str = "interior"
    flip_ciphertext: bool = False
    body_edit: Callable[[bytes], bytes] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False
    seen_before: bool = False

    def run(self, world: World) -> OpenedEnvelope:
        signer = {"interior": world.interior_sign, "mallory": world.mallory_sign}[self.signer]
        signed = {**self.header, **self.signed_changes} if self.signed_changes else None
        body = world.body(self.header, plaintext=self.plaintext, signer=signer, signed_header=signed)
        if self.flip_ciphertext:
            envelope = json.loads(body)
            box = bytearray(b64url_decode_strict(envelope["ciphertext"]))
            box[len(box) // 2] ^= 0x01
            body = json.dumps({"protected": envelope["protected"], "ciphertext": b64url(bytes(box))}).encode()
        if self.body_edit is not None:
            body = self.body_edit(body)
        world.revoked = self.revoked
        if self.seen_before:
            world.replay.inner.claim("envelope:interior", self.header["msg_id"], self.header["exp"] + 60)
        return world.open(body, **self.context)


@dataclass(frozen=True)
class Defect:
    name: str
    step: int
    code: str
    apply: Callable[[Scenario, World], Scenario]

    def __str__(self) -> str:
        return self.name


def _header(scenario: Scenario, **changes: Any) -> Scenario:
    return replace(scenario, header={**scenario.header, **changes})


def _context(scenario: Scenario, **changes: Any) -> Scenario:
    return replace(scenario, context={**scenario.context, **changes})


def _edit(scenario: Scenario, edit: Callable[[bytes], bytes]) -> Scenario:
    return replace(scenario, body_edit=edit)


def _extra_member(body: bytes) -> bytes:
    return body[:-1] + b', "sig": "AAAA"}'


def _padded_base64(body: bytes) -> bytes:
    envelope = json.loads(body)
    return json.dumps({"protected": envelope["protected"] + "==", "ciphertext": envelope["ciphertext"]}).encode()


DEFECTS = [
    Defect("oversized body", 1, "envelope_too_large", lambda s, w: _context(s, max_bytes=200)),
    Defect("extra body member", 1, "envelope_malformed", lambda s, w: _edit(s, _extra_member)),
    Defect("padded base64", 1, "envelope_malformed", lambda s, w: _edit(s, _padded_base64)),
    Defect("unknown v", 2, "envelope_unsupported", lambda s, w: _header(s, v=2)),
    Defect("unknown suite", 2, "envelope_unsupported", lambda s, w: _header(s, suite="ECDH-ES+A256KW")),
    Defect("wrong recipient", 3, "envelope_wrong_recipient", lambda s, w: _header(s, recipient="border")),
    Defect("rkid not in keyring", 3, "envelope_wrong_recipient",
           lambda s, w: _header(s, rkid=x25519_kid(w.exchange_enc_gone.public_key))),
    Defect("expired", 4, "envelope_expired", lambda s, w: _context(s, now=s.header["exp"])),
    Defect("issued in the future", 4, "envelope_expired", lambda s, w: _context(s, now=s.header["iat"] - 11)),
    Defect("other method", 5, "envelope_misdirected", lambda s, w: _context(s, method="PUT")),
    Defect("other target", 5, "envelope_misdirected", lambda s, w: _context(s, target="/v1/returnees")),
    Defect("sender is not the token's agency", 6, "envelope_sender_mismatch",
           lambda s, w: _context(s, authenticated_agency="border")),
    Defect("tampered ciphertext", 7, "envelope_undecryptable", lambda s, w: replace(s, flip_ciphertext=True)),
    Defect("unknown signing key", 8, "unknown_key",
           lambda s, w: _header(replace(s, signer="mallory"), skid=ed25519_kid(w.mallory_sign.verify_key))),
    Defect("revoked signing key", 8, "key_revoked", lambda s, w: replace(s, revoked=True)),
    Defect("tampered header", 9, "envelope_bad_signature",
           lambda s, w: replace(s, signed_changes={**s.signed_changes, "msg_id": new_msg_id()})),
    Defect("forwarded, re-addressed", 9, "envelope_bad_signature",
           lambda s, w: replace(s, signed_changes={**s.signed_changes, "recipient": "prosecutor",
                                                   "rkid": x25519_kid(w.prosecutor_enc.public_key)})),
    Defect("replayed msg_id", 10, "envelope_replayed", lambda s, w: replace(s, seen_before=True)),
    Defect("plaintext not JSON", 11, "validation_failed", lambda s, w: replace(s, plaintext=b"\xff" + MARKER.encode())),
]


@pytest.mark.parametrize("defect", DEFECTS, ids=str)
def test_each_check_rejects_with_its_code(world: World, defect: Defect) -> None:
    scenario = defect.apply(Scenario(header=world.header()), world)
    error = rejected(defect.code, lambda: scenario.run(world))
    assert error.step == defect.step


@pytest.mark.parametrize(("first", "second"), [
    (a, b) for a, b in itertools.permutations(DEFECTS, 2) if a.step < b.step
], ids=str)
def test_the_earlier_check_decides(world: World, first: Defect, second: Defect) -> None:
    """Two defects at once: the check that comes first in protocol.md §4 reports."""
    scenario = first.apply(second.apply(Scenario(header=world.header()), world), world)
    rejected(first.code, lambda: scenario.run(world))


@pytest.mark.parametrize("defect", [d for d in DEFECTS if d.step <= 9], ids=str)
def test_a_rejected_envelope_never_consumes_its_msg_id(world: World, defect: Defect) -> None:
    """Step 10 records (sender, msg_id) only when steps 1-9 passed; the same msg_id is still usable after."""
    header = world.header()
    scenario = defect.apply(Scenario(header=header), world)
    rejected(defect.code, lambda: scenario.run(world))
    assert world.replay.claims == []

    world.revoked = False
    opened = world.open(world.body(header))
    assert opened.header.msg_id == header["msg_id"]


def test_step_11_comes_after_the_replay_check_so_non_json_consumes_the_msg_id(world: World) -> None:
    """The spec's order: a well-signed envelope whose content is not JSON is still a message seen."""
    header = world.header()
    rejected("validation_failed", lambda: world.open(world.body(header, plaintext=b"not json")))
    rejected("envelope_replayed", lambda: world.open(world.body(header)))


# --- the checks, case by case -----------------------------------------------------------------------------------------

def test_replayed_msg_id(world: World) -> None:
    body = world.body(world.header())
    world.open(body)
    rejected("envelope_replayed", lambda: world.open(body))


def test_the_same_msg_id_from_another_sender_is_not_a_replay(world: World) -> None:
    """The replay namespace is the sender's: (sender, msg_id)."""
    msg_id = new_msg_id()
    world.open(world.body(world.header(msg_id=msg_id)))
    header = world.header(msg_id=msg_id, sender="exchange", skid=ed25519_kid(world.exchange_sign.verify_key))
    opened = world.open(world.body(header, signer=world.exchange_sign), authenticated_agency="exchange")
    assert opened.header.sender == "exchange"


def test_forwarded_unchanged_names_the_first_recipient(world: World) -> None:
    """Surreptitious forwarding: content signed by interior for the prosecutor, re-sealed by the prosecutor to the
    exchange with the header as signed. The header names the prosecutor (step 3)."""
    header = world.header(recipient="prosecutor", rkid=x25519_kid(world.prosecutor_enc.public_key))
    rejected("envelope_wrong_recipient", lambda: world.open(world.body(header)))
    # ... and with the rkid changed to the exchange's (recipient still the prosecutor): still step 3.
    header = world.header(recipient="prosecutor")
    rejected("envelope_wrong_recipient", lambda: world.open(world.body(header)))


def test_forwarded_and_readdressed_fails_the_signature(world: World) -> None:
    signed = world.header(recipient="prosecutor", rkid=x25519_kid(world.prosecutor_enc.public_key))
    sent = {**signed, "recipient": "exchange", "rkid": x25519_kid(world.exchange_enc.public_key)}
    rejected("envelope_bad_signature", lambda: world.open(world.body(sent, signed_header=signed)))


def test_a_resealed_plaintext_fails_the_signature(world: World) -> None:
    """Anyone can seal to the exchange: a captured signature over one plaintext, sealed with another."""
    header = world.header()
    sig = world.interior_sign.sign(DOMAIN + json.dumps(header, separators=(",", ":")).encode() + b"\x00"
                                   + hashlib.sha256(PLAINTEXT).digest()).signature
    other = b'{"register_number":"RT-2015-000999"}'
    rejected("envelope_bad_signature", lambda: world.open(world.body(header, content=sig + other)))


def test_a_signature_without_the_domain_prefix_fails(world: World) -> None:
    header = world.header()
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    sig = world.interior_sign.sign(header_bytes + b"\x00" + hashlib.sha256(PLAINTEXT).digest()).signature
    rejected("envelope_bad_signature", lambda: world.open(world.body(header, content=sig + PLAINTEXT)))


def test_a_key_of_another_agency_is_unknown_for_the_sender(world: World) -> None:
    header = world.header(skid=ed25519_kid(world.exchange_sign.verify_key))
    rejected("unknown_key", lambda: world.open(world.body(header, signer=world.exchange_sign)))


def test_a_key_outside_its_validity_is_unknown(world: World) -> None:
    keys = StaticSenderKeys([SenderKey(agency="interior", verify_key=world.interior_sign.verify_key,
                                       not_before=world.now + 1)])
    rejected("unknown_key", lambda: world.open(world.body(world.header()), sender_keys=keys))
    keys = StaticSenderKeys([SenderKey(agency="interior", verify_key=world.interior_sign.verify_key,
                                       not_after=world.now - 1)])
    rejected("unknown_key", lambda: world.open(world.body(world.header()), sender_keys=keys))


def test_no_authenticated_agency_fails_step_6(world: World) -> None:
    rejected("envelope_sender_mismatch", lambda: world.open(world.body(world.header()), authenticated_agency=None))


def test_the_window_edges(world: World) -> None:
    header = world.header(iat=world.now + 10, exp=world.now + 70)
    world.open(world.body(header))  # 10 s of future skew is allowed
    header = world.header(iat=world.now + 11, exp=world.now + 70)
    rejected("envelope_expired", lambda: world.open(world.body(header)))
    header = world.header(iat=world.now - 299, exp=world.now + 1)
    world.open(world.body(header))  # the last second of a 300 s envelope
    header = world.header(iat=world.now - 300, exp=world.now)
    rejected("envelope_expired", lambda: world.open(world.body(header)))  # exp is exclusive
    header = world.header(iat=world.now, exp=world.now + 301)
    rejected("envelope_expired", lambda: world.open(world.body(header)))  # lifetime over 300 s
    header = world.header(iat=world.now, exp=world.now)
    rejected("envelope_expired", lambda: world.open(world.body(header)))


def test_envelope_for_another_endpoint(world: World) -> None:
    body = world.body(world.header())
    rejected("envelope_misdirected", lambda: world.open(body, method="PATCH"))
    rejected("envelope_misdirected", lambda: world.open(body, target="/v1/returnees?dry_run=true"))
    rejected("envelope_misdirected", lambda: world.open(body, target="/v1/returnees"))
    rejected("envelope_misdirected", lambda: world.open(body, method="post"))


def test_a_response_envelope_is_not_a_request(world: World) -> None:
    header = world.header(reply_to=new_msg_id(), request_hash=b64url(bytes(32)),
                          audit={"index": 1, "leaf_hash": b64url(bytes(32))})
    rejected("envelope_misdirected", lambda: world.open(world.body(header)))


def test_content_too_short_for_a_signature_is_undecryptable(world: World) -> None:
    rejected("envelope_undecryptable", lambda: world.open(world.body(world.header(), content=b"x" * 63)))
    body = json.loads(world.body(world.header()))
    short = json.dumps({"protected": body["protected"], "ciphertext": b64url(bytes(47))}).encode()
    rejected("envelope_undecryptable", lambda: world.open(short))


def test_sealed_to_another_key_than_rkid_is_undecryptable(world: World) -> None:
    body = world.body(world.header(), to=world.exchange_enc_retiring.public_key)
    rejected("envelope_undecryptable", lambda: world.open(body))


@pytest.mark.parametrize("plaintext", [
    b"not json", b"", b'{"a":1,"a":2}', b"\xef\xbb\xbf{}", b'"\xff"', b"NaN", b'{"a":Infinity}', b"[1,]",
    b"{} {}", b"[" * 100_000 + b"]" * 100_000, json.dumps("x").encode("utf-16"),
], ids=["text", "empty", "duplicate member", "BOM", "not UTF-8", "NaN", "Infinity", "trailing comma",
        "two values", "nested too deep", "UTF-16"])
def test_plaintext_that_is_not_one_json_value(world: World, plaintext: bytes) -> None:
    error = rejected("validation_failed", lambda: world.open(world.body(world.header(), plaintext=plaintext)))
    assert error.status == 422
    assert isinstance(error, ValidationFailed)


@pytest.mark.parametrize("plaintext", [b"null", b"0", b'"x"', b"[]", b" {} ", b"1e400"])
def test_any_json_value_is_content(world: World, plaintext: bytes) -> None:
    assert world.open(world.body(world.header(), plaintext=plaintext)).plaintext == plaintext


# --- step 1 and 2 in detail -------------------------------------------------------------------------------------------

def test_oversized_body_is_refused_before_parsing(world: World) -> None:
    rejected("envelope_too_large", lambda: world.open(b"[" * (MAX_BODY_BYTES + 1)))
    body = world.body(world.header())
    rejected("envelope_too_large", lambda: world.open(body, max_bytes=len(body) - 1))
    assert world.open(body, max_bytes=len(body)).plaintext == PLAINTEXT


def _sealed_with(world: World, **members: Any) -> bytes:
    body = json.loads(world.body(world.header()))
    body.update(members)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


MALFORMED_BODIES: list[tuple[str, Callable[[World], bytes]]] = [
    ("not JSON", lambda w: b"protected=x"),
    ("not UTF-8", lambda w: b'{"protected":"\xff","ciphertext":""}'),
    ("UTF-16", lambda w: w.body(w.header()).decode().encode("utf-16")),
    ("array", lambda w: b"[]"),
    ("nested too deep", lambda w: b"[" * 200_000),
    ("extra member", lambda w: _sealed_with(w, header="x")),
    ("missing ciphertext", lambda w: _sealed_with(w, ciphertext=None)),
    ("missing protected", lambda w: _sealed_with(w, protected=None)),
    ("duplicate member", lambda w: w.body(w.header())[:-1] + b', "ciphertext": "AAAA"}'),
    ("ciphertext not a string", lambda w: _sealed_with(w, ciphertext=12)),
    ("protected not a string", lambda w: _sealed_with(w, protected=[])),
    ("standard base64", lambda w: _sealed_with(w, ciphertext="ab+/")),
    ("padding", lambda w: _sealed_with(w, ciphertext="AAA=")),
    ("whitespace in base64", lambda w: _sealed_with(w, ciphertext="AA AA")),
    ("non-canonical last character", lambda w: _sealed_with(w, ciphertext="AB")),
    ("impossible length", lambda w: _sealed_with(w, ciphertext="AAAAA")),
    ("non-ASCII in base64", lambda w: _sealed_with(w, ciphertext="AAAé")),
]


@pytest.mark.parametrize(("name", "make"), MALFORMED_BODIES, ids=[c[0] for c in MALFORMED_BODIES])
def test_malformed_body(world: World, name: str, make: Callable[[World], bytes]) -> None:
    rejected("envelope_malformed", lambda: world.open(make(world)))


def _drop(member: str) -> Callable[[World], dict[str, Any]]:
    def make(world: World) -> dict[str, Any]:
        header = world.header()
        del header[member]
        return header
    return make


HEADER_CASES: list[tuple[str, str, Callable[[World], dict[str, Any] | bytes]]] = [
    ("not JSON", "envelope_malformed", lambda w: b"{v:1}"),
    ("not an object", "envelope_malformed", lambda w: b"[1]"),
    ("not UTF-8", "envelope_malformed", lambda w: b'{"v":1,"suite":"\xff"}'),
    ("duplicate member", "envelope_malformed",
     lambda w: json.dumps(w.header(), separators=(",", ":")).encode()[:-1] + b',"recipient":"border"}'),
    ("no v", "envelope_malformed", _drop("v")),
    ("no suite", "envelope_malformed", _drop("suite")),
    ("v is 2", "envelope_unsupported", lambda w: w.header(v=2)),
    ("v is a string", "envelope_unsupported", lambda w: w.header(v="1")),
    ("v is true", "envelope_unsupported", lambda w: w.header(v=True)),
    ("v is 1.0", "envelope_unsupported", lambda w: w.header(v=1.0)),
    ("other suite", "envelope_unsupported", lambda w: w.header(suite="ed25519+x25519-sealedbox ")),
    ("other ctype", "envelope_unsupported", lambda w: w.header(ctype="text/plain")),
    ("unsupported v and bad types", "envelope_unsupported", lambda w: w.header(v=2, iat="soon")),
    ("missing msg_id", "envelope_malformed", _drop("msg_id")),
    ("missing ctype", "envelope_malformed", _drop("ctype")),
    ("missing target", "envelope_malformed", _drop("target")),
    ("extra member", "envelope_malformed", lambda w: w.header(kid="x")),
    ("extra member not echoed", "envelope_malformed", lambda w: w.header(**{MARKER: 1})),
    ("iat a string", "envelope_malformed", lambda w: w.header(iat=str(w.now))),
    ("exp a float", "envelope_malformed", lambda w: w.header(exp=w.now + 60.0)),
    ("exp a boolean", "envelope_malformed", lambda w: w.header(exp=True)),
    ("iat negative", "envelope_malformed", lambda w: w.header(iat=-1)),
    ("exp beyond 2^53", "envelope_malformed", lambda w: w.header(exp=2**53)),
    ("huge integer", "envelope_malformed",
     lambda w: json.dumps(w.header(exp=0), separators=(",", ":")).encode().replace(
         b'"exp":0', b'"exp":1' + b"0" * 5000)),
    ("sender not a string", "envelope_malformed", lambda w: w.header(sender=["interior"])),
    ("sender with a colon", "envelope_malformed", lambda w: w.header(sender="interior:x")),
    ("empty recipient", "envelope_malformed", lambda w: w.header(recipient="")),
    ("skid not a thumbprint", "envelope_malformed", lambda w: w.header(skid="interior-key-1")),
    ("rkid padded", "envelope_malformed", lambda w: w.header(rkid=x25519_kid(w.exchange_enc.public_key) + "=")),
    ("msg_id of 120 bits", "envelope_malformed", lambda w: w.header(msg_id=b64url(bytes(15)))),
    ("msg_id not base64url", "envelope_malformed", lambda w: w.header(msg_id="a uuid? 9f0c-...")),
    ("method lowercase", "envelope_malformed", lambda w: w.header(method="post")),
    ("target without a slash", "envelope_malformed", lambda w: w.header(target="v1/returnees")),
    ("target with a space", "envelope_malformed", lambda w: w.header(target="/v1/returnees x")),
    ("reply_to alone", "envelope_malformed", lambda w: w.header(reply_to="abc")),
    ("audit not an object", "envelope_malformed",
     lambda w: w.header(reply_to="abc", request_hash=b64url(bytes(32)), audit=[1, "x"])),
    ("audit with an extra member", "envelope_malformed",
     lambda w: w.header(reply_to="abc", request_hash=b64url(bytes(32)),
                        audit={"index": 1, "leaf_hash": b64url(bytes(32)), "root": "x"})),
    ("audit index negative", "envelope_malformed",
     lambda w: w.header(reply_to="abc", request_hash=b64url(bytes(32)),
                        audit={"index": -1, "leaf_hash": b64url(bytes(32))})),
    ("request_hash too short", "envelope_malformed",
     lambda w: w.header(reply_to="abc", request_hash=b64url(bytes(31)),
                        audit={"index": 1, "leaf_hash": b64url(bytes(32))})),
    ("header over 16 KiB", "envelope_malformed", lambda w: w.header(target="/" + "a" * 17_000)),
]


@pytest.mark.parametrize(("name", "code", "make"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_bad_headers(world: World, name: str, code: str, make: Callable[[World], dict[str, Any] | bytes]) -> None:
    error = rejected(code, lambda: world.open(world.body(make(world))))
    assert error.step == {"envelope_malformed": 1, "envelope_unsupported": 2}[code]


def test_an_unsupported_version_with_a_wrong_recipient_is_unsupported(world: World) -> None:
    rejected("envelope_unsupported", lambda: world.open(world.body(world.header(v=2, recipient="border"))))


def test_a_malformed_body_with_a_valid_signature_elsewhere_is_malformed(world: World) -> None:
    rejected("envelope_malformed", lambda: world.open(_extra_member(world.body(world.header(recipient="border")))))


# --- responses (client side) ------------------------------------------------------------------------------------------

@dataclass
class Exchange:
    """A request from interior, and the exchange's response to it."""

    world: World
    request: SealedEnvelope
    ref: RequestRef

    def response_header(self, **changes: Any) -> EnvelopeHeader:
        header = EnvelopeHeader.for_response(
            sender="exchange", skid=ed25519_kid(self.world.exchange_sign.verify_key), recipient="interior",
            rkid=x25519_kid(self.world.interior_enc.public_key), request=self.ref,
            audit=AuditReceipt(index=7, leaf_hash=b64url(hashlib.sha256(b"leaf").digest())), now=self.world.now)
        return replace(header, **changes)

    def respond(self, header: EnvelopeHeader | None = None, plaintext: bytes = b'{"status":"registered"}') -> bytes:
        return seal(header=header or self.response_header(), plaintext=plaintext,
                    signing_key=self.world.exchange_sign, recipient_key=self.world.interior_enc.public_key).to_json()

    def open(self, body: bytes, **overrides: Any) -> OpenedEnvelope:
        arguments: dict[str, Any] = {
            "request": self.ref, "receiver": "interior", "decrypt_keys": decrypt_keyring([self.world.interior_enc]),
            "sender": "exchange", "replay": InMemoryReplayCache(), "now": self.world.now,
            "sender_keys": StaticSenderKeys([SenderKey(agency="exchange",
                                                       verify_key=self.world.exchange_sign.verify_key)]),
        }
        arguments.update(overrides)
        return open_response(body, **arguments)


@pytest.fixture
def exchange(world: World) -> Exchange:
    header = EnvelopeHeader.for_request(
        sender="interior", skid=ed25519_kid(world.interior_sign.verify_key), recipient="exchange",
        rkid=x25519_kid(world.exchange_enc.public_key), method="POST", target=TARGET, now=world.now)
    request = seal(header=header, plaintext=PLAINTEXT, signing_key=world.interior_sign,
                   recipient_key=world.exchange_enc.public_key)
    # The exchange derives what its response names from the envelope it opened; the client from the one it sent.
    served = world.open(request.to_json()).request_ref()
    ref = RequestRef.of_envelope(request)
    assert served == ref
    return Exchange(world=world, request=request, ref=ref)


def test_a_response_opens_for_the_client(exchange: Exchange) -> None:
    opened = exchange.open(exchange.respond())
    assert opened.json == {"status": "registered"}
    assert opened.header.reply_to == exchange.ref.reply_to
    assert opened.header.request_hash == request_hash_of(exchange.request)
    assert opened.header.audit == AuditReceipt(index=7, leaf_hash=b64url(hashlib.sha256(b"leaf").digest()))


def test_a_response_to_another_request_is_refused(exchange: Exchange) -> None:
    body = exchange.respond()
    other_hash = replace(exchange.ref, request_hash=b64url(hashlib.sha256(b"other").digest()))
    rejected("envelope_reply_mismatch", lambda: exchange.open(body, request=other_hash))
    other_reply = replace(exchange.ref, reply_to=new_msg_id())
    rejected("envelope_reply_mismatch", lambda: exchange.open(body, request=other_reply))
    other_target = replace(exchange.ref, target="/v1/returnees")
    rejected("envelope_misdirected", lambda: exchange.open(body, request=other_target))


def test_a_request_envelope_is_not_a_response(exchange: Exchange, world: World) -> None:
    header = EnvelopeHeader.for_request(
        sender="exchange", skid=ed25519_kid(world.exchange_sign.verify_key), recipient="interior",
        rkid=x25519_kid(world.interior_enc.public_key), method="POST", target=TARGET, now=world.now)
    body = seal(header=header, plaintext=b"{}", signing_key=world.exchange_sign,
                recipient_key=world.interior_enc.public_key).to_json()
    rejected("envelope_reply_mismatch", lambda: exchange.open(body))


def test_a_response_signed_by_an_agency_is_refused(exchange: Exchange, world: World) -> None:
    """A response must come from the party the client called (step 6 with the exchange's id)."""
    header = exchange.response_header(sender="interior", skid=ed25519_kid(world.interior_sign.verify_key))
    body = seal(header=header, plaintext=b"{}", signing_key=world.interior_sign,
                recipient_key=world.interior_enc.public_key).to_json()
    rejected("envelope_sender_mismatch", lambda: exchange.open(body))


def test_a_response_with_a_reply_mismatch_and_wrong_recipient_fails_at_step_3(exchange: Exchange) -> None:
    body = exchange.respond(exchange.response_header(recipient="border"))
    other = replace(exchange.ref, reply_to=new_msg_id())
    rejected("envelope_wrong_recipient", lambda: exchange.open(body, request=other))


def test_a_response_to_a_bodiless_request_names_the_dpop_proof(world: World) -> None:
    claims = b64url(json.dumps({"jti": "jti-123", "htm": "GET"}).encode())
    proof = f"eyJhbGciOiJFZERTQSJ9.{claims}.c2ln"
    ref = RequestRef.of_proof(proof, method="GET", target="/v1/returnees/42")
    assert ref.reply_to == "jti-123"
    assert ref.request_hash == b64url(hashlib.sha256(proof.encode()).digest()) == request_hash_of_proof(proof)
    exchange = Exchange(world=world, request=SealedEnvelope(protected="", ciphertext=""), ref=ref)
    opened = exchange.open(exchange.respond())
    assert opened.header.method == "GET"
    assert opened.header.reply_to == "jti-123"
    with pytest.raises(ValueError):
        RequestRef.of_proof("not-a-jws", method="GET", target="/")


# --- evidence, keys, helpers ------------------------------------------------------------------------------------------

def test_evidence_lets_a_third_party_verify_who_said_what(world: World) -> None:
    opened = world.open(world.body(world.header()))
    evidence = opened.evidence()
    assert evidence == {
        "msg_id": opened.header.msg_id,
        "protected": opened.protected,
        "protected_hash": b64url(hashlib.sha256(opened.protected.encode()).digest()),
        "sig": b64url(opened.sig),
        "plaintext_hash": b64url(hashlib.sha256(PLAINTEXT).digest()),
    }
    header = verify_evidence(protected=evidence["protected"], sig=evidence["sig"], plaintext=PLAINTEXT,
                             verify_key=world.interior_sign.verify_key)
    assert header == opened.header
    rejected("envelope_bad_signature", lambda: verify_evidence(
        protected=evidence["protected"], sig=evidence["sig"], plaintext=PLAINTEXT + b" ",
        verify_key=world.interior_sign.verify_key))
    rejected("envelope_bad_signature", lambda: verify_evidence(
        protected=evidence["protected"], sig=evidence["sig"], plaintext=PLAINTEXT,
        verify_key=world.mallory_sign.verify_key))
    rejected("envelope_malformed", lambda: verify_evidence(
        protected=evidence["protected"] + "=", sig=evidence["sig"], plaintext=PLAINTEXT,
        verify_key=world.interior_sign.verify_key))


def test_nothing_secret_in_reprs(world: World) -> None:
    opened = world.open(world.body(world.header()))
    for text in (repr(opened), repr(opened.sealed), str(opened)):
        assert MARKER not in text
        assert opened.sealed.ciphertext not in text
        assert b64url(opened.sig) not in text


def test_kids_are_rfc7638_thumbprints(world: World) -> None:
    """Against joserfc's own thumbprint of the same OKP JWKs."""
    x = b64url(bytes(world.exchange_enc.public_key))
    assert x25519_kid(world.exchange_enc.public_key) == OKPKey.import_key(
        {"kty": "OKP", "crv": "X25519", "x": x}).thumbprint()
    x = b64url(bytes(world.interior_sign.verify_key))
    assert ed25519_kid(world.interior_sign.verify_key) == OKPKey.import_key(
        {"kty": "OKP", "crv": "Ed25519", "x": x}).thumbprint()


def test_msg_ids_carry_128_random_bits() -> None:
    ids = {new_msg_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(b64url_decode_strict(i)) == 16 for i in ids)


def test_request_hash_is_over_protected_dot_ciphertext(world: World) -> None:
    sealed = SealedEnvelope.from_json(world.body(world.header()))
    expected = hashlib.sha256(f"{sealed.protected}.{sealed.ciphertext}".encode()).digest()
    assert request_hash_of(sealed) == sealed.request_hash() == b64url(expected)


def test_sealed_envelope_round_trips_its_json(world: World) -> None:
    body = world.body(world.header())
    sealed = SealedEnvelope.from_json(body)
    assert SealedEnvelope.from_json(sealed.to_json()) == sealed
    assert json.loads(sealed.to_json()) == json.loads(body)


def test_header_round_trips_and_validates_on_construction(world: World) -> None:
    header = EnvelopeHeader.for_request(sender="interior", skid=ed25519_kid(world.interior_sign.verify_key),
                                        recipient="exchange", rkid=x25519_kid(world.exchange_enc.public_key),
                                        method="GET", target="/v1/returnees?q=%D0%A4", now=world.now)
    assert EnvelopeHeader.parse(header.to_bytes()) == header
    assert (header.v, header.suite, header.ctype) == (1, "ed25519+x25519-sealedbox", "application/json")
    with pytest.raises(ValueError, match="msg_id"):
        replace(header, msg_id="short")
    with pytest.raises(ValueError, match="target"):
        replace(header, target="https://exchange.example/v1")
    with pytest.raises(ValueError, match="reply_to"):
        replace(header, reply_to="x")


def test_seal_refuses_keys_or_windows_the_receiver_would_reject(world: World) -> None:
    header = EnvelopeHeader.for_request(sender="interior", skid=ed25519_kid(world.interior_sign.verify_key),
                                        recipient="exchange", rkid=x25519_kid(world.exchange_enc.public_key),
                                        method="POST", target=TARGET, now=world.now)
    arguments: dict[str, Any] = {"header": header, "plaintext": b"{}", "signing_key": world.interior_sign,
                                 "recipient_key": world.exchange_enc.public_key}
    with pytest.raises(ValueError, match="skid"):
        seal(**{**arguments, "signing_key": world.mallory_sign})
    with pytest.raises(ValueError, match="rkid"):
        seal(**{**arguments, "recipient_key": world.interior_enc.public_key})
    with pytest.raises(ValueError, match="window"):
        seal(**{**arguments, "header": replace(header, exp=header.iat + 301)})
    with pytest.raises(ValueError, match="window"):
        seal(**{**arguments, "header": replace(header, exp=header.iat)})


def test_empty_trust_sets_are_refused(world: World) -> None:
    body = world.body(world.header())
    with pytest.raises(ValueError, match="empty"):
        world.open(body, decrypt_keys={})
    with pytest.raises(ValueError):
        decrypt_keyring([])
    with pytest.raises(ValueError, match="empty"):
        StaticSenderKeys([])
    assert world.replay.claims == []


def test_the_spy_sees_what_the_cache_refuses() -> None:
    spy = SpyReplay()
    spy.claim("envelope:interior", "m", int(time.time()) + 60)
    with pytest.raises(Replayed):
        spy.claim("envelope:interior", "m", int(time.time()) + 60)


@pytest.mark.parametrize(("text", "ok"), [
    ("", b""), ("AA", b"\x00"), ("AAA", b"\x00\x00"), ("AAAA", b"\x00\x00\x00"), ("-_8", b"\xfb\xff"),
    ("AB", None), ("AAB", None), ("A", None), ("AA==", None), ("AA\n", None), ("+/8", None), ("A A", None),
    ("é", None),
])
def test_b64decode_accepts_only_canonical_base64url(text: str, ok: bytes | None) -> None:
    if ok is None:
        with pytest.raises(ValueError):
            b64url_decode_strict(text)
    else:
        assert b64url_decode_strict(text) == ok


def test_parse_json_is_strict() -> None:
    assert parse_json(b'{"a":[1,2.5,"\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    for bad in (b'{"a":1,"a":1}', b"NaN", b"-Infinity", b"\xff", b"[" * 50_000):
        with pytest.raises(ValueError):
            parse_json(bad)


# --- the error table --------------------------------------------------------------------------------------------------

ERROR_TABLE = [
    (errors.EnvelopeMalformed, 1, 400, "envelope_malformed"),
    (errors.EnvelopeTooLarge, 1, 413, "envelope_too_large"),
    (errors.EnvelopeUnsupported, 2, 400, "envelope_unsupported"),
    (errors.EnvelopeWrongRecipient, 3, 400, "envelope_wrong_recipient"),
    (errors.EnvelopeExpired, 4, 400, "envelope_expired"),
    (errors.EnvelopeMisdirected, 5, 400, "envelope_misdirected"),
    (errors.EnvelopeReplyMismatch, 5, 502, "envelope_reply_mismatch"),
    (errors.EnvelopeSenderMismatch, 6, 403, "envelope_sender_mismatch"),
    (errors.EnvelopeUndecryptable, 7, 400, "envelope_undecryptable"),
    (errors.UnknownKey, 8, 401, "unknown_key"),
    (errors.KeyRevoked, 8, 401, "key_revoked"),
    (errors.EnvelopeBadSignature, 9, 401, "envelope_bad_signature"),
    (errors.EnvelopeReplayed, 10, 409, "envelope_replayed"),
    (errors.EnvelopeNotJson, 11, 422, "validation_failed"),
]


@pytest.mark.parametrize(("cls", "step", "status", "code"), ERROR_TABLE, ids=[c[3] for c in ERROR_TABLE])
def test_error_classes(cls: type[errors.EnvelopeError], step: int, status: int, code: str) -> None:
    assert issubclass(cls, errors.EnvelopeError)
    assert issubclass(cls, ExchangeError)
    assert (cls.step, cls.status, cls.code) == (step, status, code)
    assert cls().message == cls.default_message


def test_every_error_class_is_in_the_table() -> None:
    defined = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, errors.EnvelopeError) and obj is not errors.EnvelopeError}
    assert defined == {row[0] for row in ERROR_TABLE}
    assert set(errors.__all__) == {cls.__name__ for cls in defined} | {"EnvelopeError"}
