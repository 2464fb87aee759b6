"""Published test vectors for envelope v1 (`schemas/test-vectors/envelope-v1.json`), generated from fixed seeds.

Everything is derived from labelled SHA-256 seeds, so `build_vectors()` returns the same document on every run and
`tests/envelope/test_vectors.py` checks that the published file is exactly what this code produces. Ed25519 is
deterministic, so signatures are reproducible; a sealed box is not (it draws an ephemeral X25519 key), so the vectors
fix the ephemeral secret and build the box by hand (`_unsafe_fixed_ephemeral_seal`: never for real traffic). Another
implementation cannot, and need not, reproduce those ciphertexts with its libsodium; it must OPEN them, and reject
every negative vector with the published code. `schemas/test-vectors/README.md` says how.

Run `python -m exchange.envelope.vectors [path]` to (re)write the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.public
import nacl.signing

from exchange.protocol import envelope_errors as errors
from exchange.protocol.clock import FUTURE_SKEW
from exchange.protocol.dpop import PAST_SKEW
from exchange.protocol.encoding import b64url, b64url_decode_strict, okp_thumbprint
from exchange.protocol.envelope import (
    CTYPE,
    MAX_BODY_BYTES,
    MAX_LIFETIME,
    MEDIA_TYPE,
    SIGNATURE_DOMAIN,
    SUITE,
    VERSION,
    AuditReceipt,
    EnvelopeHeader,
    dumps_json,
    ed25519_kid,
    request_hash_of_proof,
    signing_input,
    x25519_kid,
)

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "test-vectors" / "envelope-v1.json"
SEED_LABEL = b"exchange-envelope/v1 test vectors: "
IAT = 1767225600  # 2026-01-01T00:00:00Z
NOW = IAT + 5
LIFETIME = 120
TARGET = "/v1/returnees?dry_run=false"
GET_TARGET = "/v1/returnees/4f1c9e0a-8a43-4c55-9d0a-2b9f7f0e6a11"
PLAINTEXT = dumps_json({
    "register_number": "RT-2015-000123",
    "person_name": {"given": "Фарҳод", "surname": "Раҳимов"},
    "birth_date": "1991-03-14",
    "returned": True,
    "dependants": 2,
})

ED25519_KEYS = ("interior-sign", "interior-dpop", "exchange-sign", "mallory-sign", "interior-auth")
X25519_KEYS = ("interior-enc", "exchange-enc", "exchange-enc-retired", "prosecutor-enc")


def seed(label: str) -> bytes:
    """SHA-256("exchange-envelope/v1 test vectors: " || label): every secret of the vectors."""
    return hashlib.sha256(SEED_LABEL + label.encode("ascii")).digest()


def signing_key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed(name))


def private_key(name: str) -> nacl.public.PrivateKey:
    return nacl.public.PrivateKey(seed(name))


def _unsafe_fixed_ephemeral_seal(message: bytes, recipient: nacl.public.PublicKey, ephemeral_secret: bytes) -> bytes:
    """libsodium's crypto_box_seal with a FIXED ephemeral key, for reproducible vectors only (a reused ephemeral key
    would let anyone who learns it read every box made with it):
    epk || crypto_box(message, nonce = BLAKE2b-192(epk || pk), pk, esk)."""
    pk = bytes(recipient)
    epk = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = hashlib.blake2b(epk + pk, digest_size=nacl.bindings.crypto_box_NONCEBYTES).digest()
    return epk + nacl.bindings.crypto_box(message, nonce, pk, ephemeral_secret)


def _keys() -> dict[str, dict[str, str]]:
    keys: dict[str, dict[str, str]] = {}
    for name in ED25519_KEYS:
        public = signing_key(name).verify_key
        keys[name] = {"alg": "Ed25519", "seed": b64url(seed(name)), "public": b64url(bytes(public)),
                      "kid": ed25519_kid(public)}
    for name in X25519_KEYS:
        key = private_key(name).public_key
        keys[name] = {"alg": "X25519", "private": b64url(seed(name)), "public": b64url(bytes(key)),
                      "kid": x25519_kid(key)}
    return keys


def kid(name: str) -> str:
    if name in ED25519_KEYS:
        return ed25519_kid(signing_key(name).verify_key)
    return x25519_kid(private_key(name).public_key)


def msg_id(name: str) -> str:
    return b64url(seed(f"msg_id {name}")[:16])


@dataclass(frozen=True, kw_only=True)
class Built:
    """One envelope as built, with what a positive vector publishes."""

    header_bytes: bytes
    plaintext: bytes
    sig: bytes
    ephemeral_secret: bytes
    sealed: bytes

    @property
    def protected(self) -> str:
        return b64url(self.header_bytes)

    @property
    def ciphertext(self) -> str:
        return b64url(self.sealed)

    @property
    def body(self) -> bytes:
        return f'{{"protected":"{self.protected}","ciphertext":"{self.ciphertext}"}}'.encode("ascii")


def request_header(name: str, **overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "v": VERSION, "suite": SUITE, "sender": "interior", "skid": kid("interior-sign"), "recipient": "exchange",
        "rkid": kid("exchange-enc"), "msg_id": msg_id(name), "iat": IAT, "exp": IAT + LIFETIME, "method": "POST",
        "target": TARGET, "ctype": CTYPE,
    }
    for member, value in overrides.items():
        if value is _DROP:
            del header[member]
        else:
            header[member] = value
    return header


_DROP = object()


def build(
    name: str, *, header: dict[str, Any] | bytes, plaintext: bytes = PLAINTEXT, signer: str = "interior-sign",
    to: str = "exchange-enc", signed_header: bytes | None = None, signed_plaintext: bytes | None = None,
    content: bytes | None = None, domain: bytes = SIGNATURE_DOMAIN,
) -> Built:
    """Sign and seal; `signed_header`/`signed_plaintext` sign other bytes than those sent (tampering), `content`
    replaces sig || plaintext entirely, `domain` replaces the signature's domain separation string."""
    header_bytes = header if isinstance(header, bytes) else dumps_json(header)
    to_sign = signed_header if signed_header is not None else header_bytes
    digest = hashlib.sha256(signed_plaintext if signed_plaintext is not None else plaintext).digest()
    message = signing_input(to_sign, digest)
    if domain != SIGNATURE_DOMAIN:
        message = domain + message[len(SIGNATURE_DOMAIN):]
    sig = signing_key(signer).sign(message).signature
    ephemeral = seed(f"ephemeral {name}")
    sealed = _unsafe_fixed_ephemeral_seal(sig + plaintext if content is None else content,
                                          private_key(to).public_key, ephemeral)
    return Built(header_bytes=header_bytes, plaintext=plaintext, sig=sig, ephemeral_secret=ephemeral, sealed=sealed)


def request_context(**overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "mode": "request", "receiver": "exchange", "decrypt_keys": ["exchange-enc"], "method": "POST",
        "target": TARGET, "expected_sender": "interior", "now": NOW, "max_bytes": MAX_BODY_BYTES,
        "sender_keys": [{"agency": "interior", "key": "interior-sign", "revoked": False},
                        {"agency": "exchange", "key": "exchange-sign", "revoked": False}],
        "seen": [],
    }
    context.update(overrides)
    return context


def _positive(name: str, description: str, built: Built, *, sender: str, recipient: str,
              context: dict[str, Any]) -> dict[str, Any]:
    header = json.loads(built.header_bytes)
    return {
        "name": name,
        "description": description,
        "sender_key": sender,
        "recipient_key": recipient,
        "header": header,
        "header_bytes": built.header_bytes.decode("utf-8"),
        "header_compact": built.header_bytes == dumps_json(header),  # as `seal` writes it (else: as another might)
        "protected": built.protected,
        "plaintext": built.plaintext.decode("utf-8"),
        "plaintext_hash": b64url(hashlib.sha256(built.plaintext).digest()),
        "signing_input": b64url(signing_input(built.header_bytes, hashlib.sha256(built.plaintext).digest())),
        "sig": b64url(built.sig),
        "ephemeral_secret": b64url(built.ephemeral_secret),
        "ciphertext": built.ciphertext,
        "body": built.body.decode("ascii"),
        "context": context,
        "expect": {
            "ok": True,
            "request_hash": _request_hash(built),
            "evidence": {
                "msg_id": header["msg_id"],
                "protected": built.protected,
                "protected_hash": b64url(hashlib.sha256(built.protected.encode("ascii")).digest()),
                "sig": b64url(built.sig),
                "plaintext_hash": b64url(hashlib.sha256(built.plaintext).digest()),
            },
        },
    }


def _request_hash(built: Built) -> str:
    return b64url(hashlib.sha256(f"{built.protected}.{built.ciphertext}".encode("ascii")).digest())


def _negative(name: str, description: str, body: bytes, error: type[errors.EnvelopeError],
              context: dict[str, Any]) -> dict[str, Any]:
    vector: dict[str, Any] = {"name": name, "description": description}
    try:
        vector["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        vector["body_b64"] = b64url(body)
    vector["context"] = context
    vector["expect"] = {"ok": False, "step": error.step, "code": error.code, "status": error.status}
    return vector


def _b64_part(built: Built) -> tuple[str, str]:
    """A part of the body whose length leaves unused bits in its last character (for the canonical-encoding
    vectors)."""
    for member, text in (("protected", built.protected), ("ciphertext", built.ciphertext)):
        if len(text) % 4 in (2, 3):
            return member, text
    raise RuntimeError("no base64 part with unused trailing bits")  # pragma: no cover


def _body(protected: str, ciphertext: str) -> bytes:
    return f'{{"protected":"{protected}","ciphertext":"{ciphertext}"}}'.encode()


def _dpop_proof() -> tuple[str, str]:
    """A fixed DPoP proof (its signature deterministic), for the response to a bodiless request."""
    key = signing_key("interior-dpop")
    jti = b64url(seed("dpop jti")[:16])
    header = {"typ": "dpop+jwt", "alg": "EdDSA",
              "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(key.verify_key))}}
    claims = {"jti": jti, "htm": "GET", "htu": f"https://exchange.example{GET_TARGET}", "iat": IAT,
              "ath": b64url(hashlib.sha256(b"access-token").digest()), "purpose": "amnesty-vetting"}
    signing = f"{b64url(dumps_json(header))}.{b64url(dumps_json(claims))}"
    return f"{signing}.{b64url(key.sign(signing.encode('ascii')).signature)}", jti


def build_vectors() -> dict[str, Any]:
    """The whole published document."""
    positives: list[dict[str, Any]] = []
    negatives: list[dict[str, Any]] = []

    # --- positive: a request, a response to it, and a response to a bodiless request -----------------------------
    request_header_bytes = EnvelopeHeader(
        sender="interior", skid=kid("interior-sign"), recipient="exchange", rkid=kid("exchange-enc"),
        msg_id=msg_id("request"), iat=IAT, exp=IAT + LIFETIME, method="POST", target=TARGET).to_bytes()
    request = build("request", header=request_header_bytes)
    positives.append(_positive(
        "request", "interior -> exchange: a POST with a JSON body (UTF-8 beyond ASCII in the plaintext).", request,
        sender="interior-sign", recipient="exchange-enc", context=request_context()))

    # The header as another implementation may write it: members in another order, spaces, an escaped character.
    # Valid: the receiver verifies the bytes as sent. A receiver that re-serialises the parsed header fails it.
    reordered = request_header("request-header-as-written")
    written = ("{ " + ", ".join(f'"{name}": {json.dumps(reordered[name])}' for name in reversed(list(reordered)))
               + " }").replace('"interior"', '"\\u0069nterior"').encode("ascii")
    written_built = build("request-header-as-written", header=written)
    positives.append(_positive(
        "request-header-as-written", "A request whose header bytes are not compact nor in the spec's member order, "
        "with a JSON escape (\\u0069): verify the signature over the bytes as sent, never a re-serialisation.",
        written_built, sender="interior-sign", recipient="exchange-enc", context=request_context()))

    audit = AuditReceipt(index=41, leaf_hash=b64url(hashlib.sha256(b"audit leaf 41").digest()))
    response_plaintext = dumps_json({"id": "4f1c9e0a-8a43-4c55-9d0a-2b9f7f0e6a11", "status": "registered"})
    response_header = EnvelopeHeader(
        sender="exchange", skid=kid("exchange-sign"), recipient="interior", rkid=kid("interior-enc"),
        msg_id=msg_id("response"), iat=IAT + 1, exp=IAT + 1 + LIFETIME, method="POST", target=TARGET,
        reply_to=msg_id("request"), request_hash=_request_hash(request), audit=audit)
    response = build("response", header=response_header.to_bytes(), plaintext=response_plaintext,
                     signer="exchange-sign", to="interior-enc")

    def response_context(**overrides: Any) -> dict[str, Any]:
        context: dict[str, Any] = {
            "mode": "response", "receiver": "interior", "decrypt_keys": ["interior-enc"], "expected_sender":
            "exchange", "now": NOW, "max_bytes": MAX_BODY_BYTES,
            "request": {"method": "POST", "target": TARGET, "reply_to": msg_id("request"),
                        "request_hash": _request_hash(request)},
            "sender_keys": [{"agency": "exchange", "key": "exchange-sign", "revoked": False}],
            "seen": [],
        }
        context.update(overrides)
        return context

    positives.append(_positive(
        "response", "exchange -> interior: the response to the vector \"request\" (reply_to its msg_id, "
        "request_hash over its protected.ciphertext, the audit entry).", response,
        sender="exchange-sign", recipient="interior-enc", context=response_context()))

    proof, jti = _dpop_proof()
    get_plaintext = dumps_json({"id": "4f1c9e0a-8a43-4c55-9d0a-2b9f7f0e6a11", "register_number": "RT-2015-000123",
                                "status": "vetted"})
    get_header = EnvelopeHeader(
        sender="exchange", skid=kid("exchange-sign"), recipient="interior", rkid=kid("interior-enc"),
        msg_id=msg_id("response-to-get"), iat=IAT, exp=IAT + MAX_LIFETIME, method="GET", target=GET_TARGET,
        reply_to=jti, request_hash=request_hash_of_proof(proof), audit=AuditReceipt(
            index=42, leaf_hash=b64url(hashlib.sha256(b"audit leaf 42").digest())))
    get_response = build("response-to-get", header=get_header.to_bytes(), plaintext=get_plaintext,
                         signer="exchange-sign", to="interior-enc")
    get_context = response_context(request={"method": "GET", "target": GET_TARGET, "reply_to": jti,
                                            "request_hash": request_hash_of_proof(proof), "dpop_proof": proof})
    positives.append(_positive(
        "response-to-get", "exchange -> interior: the response to a bodiless GET (reply_to the DPoP proof's jti, "
        "request_hash over the proof); the longest lifetime allowed (exp = iat + 300).", get_response,
        sender="exchange-sign", recipient="interior-enc", context=get_context))

    # --- negative --------------------------------------------------------------------------------------------------
    def neg(name: str, description: str, body: bytes, error: type[errors.EnvelopeError], **context: Any) -> None:
        negatives.append(_negative(name, description, body, error, request_context(**context)))

    def neg_response(name: str, description: str, body: bytes, error: type[errors.EnvelopeError],
                     **context: Any) -> None:
        negatives.append(_negative(name, description, body, error, response_context(**context)))

    def req(name: str, *, overrides: dict[str, Any] | None = None, signed_overrides: dict[str, Any] | None = None,
            **kwargs: Any) -> Built:
        """The request vector with header members overridden (_DROP removes one), signed and sealed;
        `signed_overrides` makes the signature cover another header than the one sent."""
        header = request_header(name, **(overrides or {}))
        signed = dumps_json(request_header(name, **signed_overrides)) if signed_overrides is not None else None
        return build(name, header=header, signed_header=signed, **kwargs)

    def sealed_header(name: str, header_bytes: bytes) -> bytes:
        return build(name, header=header_bytes).body

    good = request.body
    # 1. envelope_too_large / envelope_malformed
    neg("too-large", "A valid envelope one byte over the receiver's limit.", good, errors.EnvelopeTooLarge,
        max_bytes=len(good) - 1)
    neg("body-not-json", "The body is not JSON.", good[:-1], errors.EnvelopeMalformed)
    neg("body-not-utf8", "The body is not UTF-8.", b'{"protected":"\xff","ciphertext":""}', errors.EnvelopeMalformed)
    neg("body-not-object", "The body is a JSON array.",
        f'["{request.protected}","{request.ciphertext}"]'.encode(), errors.EnvelopeMalformed)
    neg("body-extra-member", "A third member next to protected and ciphertext.",
        good[:-1] + b',"header":{}}', errors.EnvelopeMalformed)
    neg("body-missing-member", "No ciphertext.", f'{{"protected":"{request.protected}"}}'.encode(),
        errors.EnvelopeMalformed)
    neg("body-duplicate-member", "ciphertext twice (equal values: still refused).",
        good[:-1] + f',"ciphertext":"{request.ciphertext}"}}'.encode(), errors.EnvelopeMalformed)
    neg("body-member-not-string", "ciphertext is not a string.",
        f'{{"protected":"{request.protected}","ciphertext":["{request.ciphertext}"]}}'.encode(),
        errors.EnvelopeMalformed)
    member, text = _b64_part(request)
    padded = {"protected": request.protected, "ciphertext": request.ciphertext}
    padded[member] = text + "=" * (-len(text) % 4)
    neg("base64-padded", f"{member} carries base64 padding.", _body(**padded), errors.EnvelopeMalformed)
    unused = {"protected": request.protected, "ciphertext": request.ciphertext}
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused[member] = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    neg("base64-non-canonical", f"The last character of {member} has a non-zero unused bit (it decodes to the "
        "same bytes in lenient decoders).", _body(**unused), errors.EnvelopeMalformed)
    position = next(i for i, c in enumerate(request.ciphertext) if c in "-_")
    std = request.ciphertext[:position] + {"-": "+", "_": "/"}[request.ciphertext[position]] + \
        request.ciphertext[position + 1:]
    neg("base64-standard-alphabet", "ciphertext uses the standard base64 alphabet (+ or /).",
        _body(request.protected, std), errors.EnvelopeMalformed)
    neg("header-not-json", "The protected header is not JSON.",
        sealed_header("header-not-json", b"{v:1}"), errors.EnvelopeMalformed)
    neg("header-not-object", "The protected header is a JSON array.",
        sealed_header("header-not-object", b"[1]"), errors.EnvelopeMalformed)
    duplicate = request_header("header-duplicate-member")
    duplicate_bytes = dumps_json(duplicate)[:-1] + b',"recipient":"border"}'
    neg("header-duplicate-member", "recipient twice in the header (parsers disagree on which wins).",
        sealed_header("header-duplicate-member", duplicate_bytes), errors.EnvelopeMalformed)
    neg("header-no-version", "The header has no v.", req("header-no-version", overrides={"v": _DROP}).body,
        errors.EnvelopeMalformed)
    for member, value in (("sender", 7), ("skid", None), ("recipient", ["exchange"]), ("msg_id", 12345),
                          ("iat", float(IAT)), ("exp", str(IAT + LIFETIME)), ("method", "post"),
                          ("target", {"path": TARGET}), ("rkid", True)):
        label = f"header-{member}-wrong-type"
        neg(label, f"{member} is {json.dumps(value)}: a header member of the wrong type (or format) is malformed, "
            "never coerced.", req(label, overrides={member: value}).body, errors.EnvelopeMalformed)
    # 2. envelope_unsupported
    neg("unsupported-version", "v is 2.", req("unsupported-version", overrides={"v": 2}).body,
        errors.EnvelopeUnsupported)
    neg("version-as-string", 'v is the string "1".', req("version-as-string", overrides={"v": "1"}).body,
        errors.EnvelopeUnsupported)
    neg("unsupported-suite", "An unknown suite.", req("unsupported-suite", overrides={"suite": "ECDH-ES+A256KW"}).body,
        errors.EnvelopeUnsupported)
    neg("unsupported-ctype", "ctype is not application/json.",
        req("unsupported-ctype", overrides={"ctype": "text/plain"}).body, errors.EnvelopeUnsupported)
    # 1 (continued, after the version is known): the members of v1
    neg("header-missing-member", "The header has no msg_id.",
        req("header-missing-member", overrides={"msg_id": _DROP}).body, errors.EnvelopeMalformed)
    neg("header-extra-member", "The header has an unknown member (kid).",
        req("header-extra-member", overrides={"kid": kid("interior-sign")}).body, errors.EnvelopeMalformed)
    neg("header-wrong-type", "iat is a string.", req("header-wrong-type", overrides={"iat": str(IAT)}).body,
        errors.EnvelopeMalformed)
    neg("header-boolean-time", "exp is a boolean.", req("header-boolean-time", overrides={"exp": True}).body,
        errors.EnvelopeMalformed)
    neg("header-short-msg-id", "msg_id has fewer than 128 bits.",
        req("header-short-msg-id", overrides={"msg_id": b64url(seed("short")[:15])}).body, errors.EnvelopeMalformed)
    # 3. envelope_wrong_recipient
    neg("wrong-recipient", "Addressed to border (sealed to the exchange's key).",
        req("wrong-recipient", overrides={"recipient": "border"}).body, errors.EnvelopeWrongRecipient)
    neg("unknown-rkid", "Sealed to a key of the exchange that no longer decrypts (not in its keyring).",
        req("unknown-rkid", overrides={"rkid": kid("exchange-enc-retired")}, to="exchange-enc-retired").body,
        errors.EnvelopeWrongRecipient)
    neg("tampered-header-and-wrong-recipient", "Header altered after signing AND addressed to border: step 3 "
        "decides before the signature (step 9) is looked at.",
        req("tampered-header-and-wrong-recipient", overrides={"recipient": "border"}, signed_overrides={}).body,
        errors.EnvelopeWrongRecipient)
    forwarded = request_header("forwarded", recipient="prosecutor", rkid=kid("prosecutor-enc"))
    neg("forwarded-unchanged", "Signed by interior for the prosecutor, who re-seals sig || plaintext to the "
        "exchange leaving the header as signed: it names the prosecutor.",
        build("forwarded-unchanged", header=forwarded).body, errors.EnvelopeWrongRecipient)
    # 4. envelope_expired
    neg("expired", "Received at exp (exp is exclusive).", good, errors.EnvelopeExpired, now=IAT + LIFETIME)
    neg("issued-in-future", "iat more than 10 s ahead of the receiver's clock.", good, errors.EnvelopeExpired,
        now=IAT - FUTURE_SKEW - 1)
    neg("lifetime-too-long", "exp = iat + 301.",
        req("lifetime-too-long", overrides={"exp": IAT + MAX_LIFETIME + 1}).body, errors.EnvelopeExpired)
    neg("exp-not-after-iat", "exp = iat.", req("exp-not-after-iat", overrides={"exp": IAT}).body,
        errors.EnvelopeExpired)
    neg("exp-before-iat", "exp = iat - 1 (iat >= exp), though not yet expired at now.",
        req("exp-before-iat", overrides={"iat": NOW + 5, "exp": NOW + 4}).body, errors.EnvelopeExpired)
    # 5. envelope_misdirected
    neg("other-method", "Sealed for POST, sent with PUT.", good, errors.EnvelopeMisdirected, method="PUT")
    neg("other-target", "Sealed for another query string.", good, errors.EnvelopeMisdirected,
        target="/v1/returnees?dry_run=true")
    response_as_request = request_header(
        "response-as-request", reply_to=msg_id("request"), request_hash=_request_hash(request),
        audit={"index": 41, "leaf_hash": audit.leaf_hash})
    neg("response-as-request", "A response-shaped envelope (reply_to, request_hash, audit) sent as a request.",
        build("response-as-request", header=response_as_request).body, errors.EnvelopeMisdirected)
    # 6. envelope_sender_mismatch
    neg("sender-not-token-agency", "Sender interior, but the access token is border's.", good,
        errors.EnvelopeSenderMismatch, expected_sender="border")
    # 7. envelope_undecryptable
    flipped = bytearray(request.sealed)
    flipped[100] ^= 0x01
    neg("tampered-ciphertext", "One bit of the sealed box flipped.", _body(request.protected, b64url(bytes(flipped))),
        errors.EnvelopeUndecryptable)
    neg("sealed-to-other-key", "rkid names the exchange's key, but the box is sealed to another one.",
        req("sealed-to-other-key", to="exchange-enc-retired").body, errors.EnvelopeUndecryptable)
    neg("truncated-ciphertext", "The sealed box cut to 40 bytes.",
        _body(request.protected, b64url(request.sealed[:40])), errors.EnvelopeUndecryptable)
    neg("content-without-signature", "The box decrypts to 10 bytes: no room for a 64-byte signature.",
        req("content-without-signature", content=b"0123456789").body, errors.EnvelopeUndecryptable)
    # 8. unknown_key / key_revoked
    neg("unknown-signing-key", "Signed by a key interior never registered (skid is its thumbprint).",
        req("unknown-signing-key", overrides={"skid": kid("mallory-sign")}, signer="mallory-sign").body,
        errors.UnknownKey)
    neg("skid-of-another-agency", "skid is the exchange's sign key; the sender is interior.",
        req("skid-of-another-agency", overrides={"skid": kid("exchange-sign")}, signer="exchange-sign").body,
        errors.UnknownKey)
    neg("revoked-signing-key", "interior's sign key is revoked.", good, errors.KeyRevoked,
        sender_keys=[{"agency": "interior", "key": "interior-sign", "revoked": True}])
    reserialised = request_header("header-reserialised")
    reserialised_sent = b", ".join(dumps_json(reserialised).split(b","))  # the same members, other bytes
    neg("header-reserialised", "The signature covers the compact header; the bytes sent are the same members with "
        "spaces. Equal as JSON, not as bytes: a receiver that re-serialises the parsed header wrongly accepts it.",
        build("header-reserialised", header=reserialised_sent, signed_header=dumps_json(reserialised)).body,
        errors.EnvelopeBadSignature)
    # 9. envelope_bad_signature
    neg("tampered-header", "target altered after signing (and the request made to the altered target).",
        req("tampered-header", overrides={"target": "/v1/returnees?dry_run=true"}, signed_overrides={}).body,
        errors.EnvelopeBadSignature, target="/v1/returnees?dry_run=true")
    neg("resealed-other-plaintext", "The signature of one plaintext with another, sealed anew (anyone can seal to "
        "the exchange).", req("resealed-other-plaintext", plaintext=dumps_json({"register_number": "RT-2015-000999"}),
                              signed_plaintext=PLAINTEXT).body, errors.EnvelopeBadSignature)
    neg("signed-by-other-key", "Names interior's skid, signed by another key.",
        req("signed-by-other-key", signer="mallory-sign").body, errors.EnvelopeBadSignature)
    readdressed = request_header("forwarded-readdressed")
    neg("forwarded-readdressed", "Signed by interior for the prosecutor; the prosecutor re-addresses the header to "
        "the exchange and re-seals: the signature covers recipient and rkid.",
        build("forwarded-readdressed", header=readdressed, signed_header=dumps_json(forwarded)).body,
        errors.EnvelopeBadSignature)
    neg("no-domain-separation", "Signed without the \"exchange-envelope/v1\\0\" prefix.",
        req("no-domain-separation", domain=b"").body, errors.EnvelopeBadSignature)
    # 10. envelope_replayed
    neg("replayed", "The receiver has seen (interior, this msg_id) before.", good, errors.EnvelopeReplayed,
        seen=[["envelope:interior", msg_id("request")]])
    # 11. validation_failed
    neg("plaintext-not-json", "A correctly signed plaintext that is not JSON.",
        req("plaintext-not-json", plaintext=b"register_number=RT-2015-000123").body, errors.EnvelopeNotJson)
    neg("plaintext-duplicate-member", "A correctly signed JSON text with a duplicate member name.",
        req("plaintext-duplicate-member", plaintext=b'{"dependants":2,"dependants":3}').body, errors.EnvelopeNotJson)
    neg("plaintext-not-utf8", "A correctly signed plaintext that is not UTF-8.",
        req("plaintext-not-utf8", plaintext=b'"\xff"').body, errors.EnvelopeNotJson)
    # Responses (step 5: reply checks)
    neg_response("response-other-request-hash", "The response answers another request (request_hash differs).",
                 response.body, errors.EnvelopeReplyMismatch,
                 request={"method": "POST", "target": TARGET, "reply_to": msg_id("request"),
                          "request_hash": b64url(hashlib.sha256(b"another request").digest())})
    neg_response("response-other-reply-to", "reply_to is not the client's msg_id.", response.body,
                 errors.EnvelopeReplyMismatch,
                 request={"method": "POST", "target": TARGET, "reply_to": msg_id("another request"),
                          "request_hash": _request_hash(request)})
    neg_response("response-other-method", "The response names POST; the client's request was a PUT to the same "
                 "target with the same reply_to and request_hash (checking those alone is not enough).",
                 response.body, errors.EnvelopeMisdirected,
                 request={"method": "PUT", "target": TARGET, "reply_to": msg_id("request"),
                          "request_hash": _request_hash(request)})
    neg_response("response-other-target", "The response names another target than the client's request.",
                 response.body, errors.EnvelopeMisdirected,
                 request={"method": "POST", "target": "/v1/returnees?dry_run=true", "reply_to": msg_id("request"),
                          "request_hash": _request_hash(request)})
    no_audit = {**json.loads(response_header.to_bytes()), "msg_id": msg_id("response-without-audit")}
    del no_audit["audit"]
    neg_response("response-without-audit", "A response with reply_to and request_hash but no audit receipt: every "
                 "response names the audit entry of the call.",
                 build("response-without-audit", header=no_audit, plaintext=response_plaintext,
                       signer="exchange-sign", to="interior-enc").body, errors.EnvelopeMalformed)
    bad_audit = {**json.loads(response_header.to_bytes()), "msg_id": msg_id("response-audit-wrong-type")}
    bad_audit["audit"] = {"index": "41", "leaf_hash": audit.leaf_hash}
    neg_response("response-audit-wrong-type", "audit.index is a string.",
                 build("response-audit-wrong-type", header=bad_audit, plaintext=response_plaintext,
                       signer="exchange-sign", to="interior-enc").body, errors.EnvelopeMalformed)
    not_a_response = EnvelopeHeader(
        sender="exchange", skid=kid("exchange-sign"), recipient="interior", rkid=kid("interior-enc"),
        msg_id=msg_id("not-a-response"), iat=IAT, exp=IAT + LIFETIME, method="POST", target=TARGET).to_bytes()
    neg_response("request-as-response", "An envelope without reply_to, request_hash and audit, as a response.",
                 build("request-as-response", header=not_a_response, signer="exchange-sign", to="interior-enc").body,
                 errors.EnvelopeReplyMismatch)

    return {
        "description": "Test vectors for the envelope of protocol v1 §4 (Returnee Exchange). Generated by "
                       "exchange/envelope/vectors.py; see README.md next to this file.",
        "media_type": MEDIA_TYPE,
        "v": VERSION,
        "suite": SUITE,
        "signature_domain_b64": b64url(SIGNATURE_DOMAIN),
        "max_lifetime": MAX_LIFETIME,
        "future_skew": FUTURE_SKEW,
        "seed_derivation": "seed(label) = SHA-256(\"exchange-envelope/v1 test vectors: \" || label)",
        "keys": _keys(),
        "positive": positives,
        "negative": negatives,
    }


# --- DPoP proofs and client assertions (protocol.md §2-3) -------------------------------------------------------

ISSUER = "https://exchange.example"
ACCESS_TOKEN = "access-token"  # noqa: S105  (any string: a proof binds to the SHA-256 of the token as sent: ath)
CLIENT_ID = "interior-registry"


def _jwk(name: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(signing_key(name).verify_key))}


def _jws(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, signer: str | None) -> str:
    """A compact JWS signed by `signer` (Ed25519 is deterministic); `signer=None` leaves the signature empty."""
    head = header if isinstance(header, bytes) else dumps_json(header)
    body = claims if isinstance(claims, bytes) else dumps_json(claims)
    signing = f"{b64url(head)}.{b64url(body)}"
    sig = b64url(signing_key(signer).sign(signing.encode("ascii")).signature) if signer else ""
    return f"{signing}.{sig}"


def _jwt_vector(name: str, description: str, token: str, context: dict[str, Any], expect: dict[str, Any],
                header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes) -> dict[str, Any]:
    def shown(part: dict[str, Any] | bytes) -> Any:
        return part.decode("utf-8") if isinstance(part, bytes) else part

    return {"name": name, "description": description, "header": shown(header), "claims": shown(claims),
            "token": token, "context": context, "expect": expect}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for member, value in changes.items():
        if value is _DROP:
            out.pop(member, None)
        else:
            out[member] = value
    return out


def build_dpop_vectors() -> dict[str, Any]:
    """DPoP proofs (RFC 9449 with protocol v1's claims): which a resource server or the token endpoint accepts."""
    jwk = _jwk("interior-dpop")
    jkt = okp_thumbprint("Ed25519", jwk["x"])
    url = f"{ISSUER}{GET_TARGET}"
    header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}
    ath = b64url(hashlib.sha256(ACCESS_TOKEN.encode("ascii")).digest())

    def claims(name: str, **changes: Any) -> dict[str, Any]:
        base = {"jti": b64url(seed(f"dpop jti {name}")[:16]), "htm": "GET", "htu": url, "iat": IAT, "ath": ath,
                "purpose": "amnesty-vetting"}
        return _with(base, **changes)

    def context(**changes: Any) -> dict[str, Any]:
        return {"method": "GET", "url": url, "access_token": ACCESS_TOKEN, "bound_to": jkt, "now": NOW, "seen": [],
                **changes}

    positive: list[dict[str, Any]] = []
    negative: list[dict[str, Any]] = []

    def pos(name: str, description: str, *, head: dict[str, Any] = header, body: dict[str, Any] | None = None,
            ctx: dict[str, Any] | None = None) -> None:
        body = claims(name) if body is None else body
        positive.append(_jwt_vector(name, description, _jws(head, body, "interior-dpop"), ctx or context(),
                                    {"ok": True, "jkt": jkt, "jti": body["jti"], "purpose": body.get("purpose")},
                                    head, body))

    def neg(name: str, description: str, *, head: dict[str, Any] | bytes = header,
            body: dict[str, Any] | bytes | None = None, signer: str | None = "interior-dpop",
            code: str = "invalid_dpop_proof", **ctx: Any) -> None:
        body = claims(name) if body is None else body
        negative.append(_jwt_vector(name, description, _jws(head, body, signer), context(**ctx),
                                    {"ok": False, "code": code, "status": 401}, head, body))

    pos("proof", "A proof for GET with an access token: htu is the issuer plus the path (not the URL the client "
        "happened to use), ath the token's hash, purpose the purpose of use.")
    pos("proof-token-endpoint", "A proof for the token endpoint: POST, no ath (no token yet).",
        body=claims("proof-token-endpoint", htm="POST", htu=f"{ISSUER}/oauth/token", ath=_DROP),
        ctx=context(method="POST", url=f"{ISSUER}/oauth/token", access_token=None, bound_to=None))
    pos("proof-oldest-iat", f"iat exactly {PAST_SKEW} s before now: the oldest accepted.",
        body=claims("proof-oldest-iat", iat=NOW - PAST_SKEW))

    neg("typ-jwt", "typ is JWT, not dpop+jwt.", head=_with(header, typ="JWT"))
    neg("alg-ed25519", 'alg is "Ed25519": protocol v1 names the algorithm EdDSA only.',
        head=_with(header, alg="Ed25519"))
    neg("alg-none", "alg none and no signature.", head=_with(header, alg="none"), signer=None)
    neg("jwk-private", "The jwk carries the private key (d).",
        head=_with(header, jwk={**jwk, "d": b64url(seed("interior-dpop"))}))
    neg("jwk-x25519", "The jwk is an X25519 key.", head=_with(header, jwk={**jwk, "crv": "X25519"}))
    neg("signed-by-other-key", "The jwk is interior-dpop's; the signature is another key's.", signer="mallory-sign")
    neg("htm-lowercase", 'htm is "get": methods are compared exactly.', body=claims("htm-lowercase", htm="get"))
    neg("htm-other", "htm is POST; the request is a GET.", body=claims("htm-other", htm="POST"))
    neg("htu-as-used", "htu is the URL the client connected to, not the issuer plus the path.",
        body=claims("htu-as-used", htu=f"http://127.0.0.1:8000{GET_TARGET}"))
    neg("htu-with-query", "htu carries a query string; it is the issuer plus the path only.",
        body=claims("htu-with-query", htu=f"{url}?page=2"))
    neg("iat-too-old", f"iat {PAST_SKEW + 1} s before now.", body=claims("iat-too-old", iat=NOW - PAST_SKEW - 1))
    neg("iat-future", f"iat {FUTURE_SKEW + 1} s ahead of now.", body=claims("iat-future", iat=NOW + FUTURE_SKEW + 1))
    neg("iat-string", "iat is a string (a claim of the wrong type).", body=claims("iat-string", iat=str(IAT)))
    neg("iat-boolean", "iat is true.", body=claims("iat-boolean", iat=True))
    neg("jti-short", "jti has 15 characters (16-128).", body=claims("jti-short", jti="A" * 15))
    neg("jti-missing", "No jti.", body=claims("jti-missing", jti=_DROP))
    neg("ath-other-token", "ath is the hash of another token.",
        body=claims("ath-other-token", ath=b64url(hashlib.sha256(b"another token").digest())))
    neg("ath-missing", "No ath with an access token.", body=claims("ath-missing", ath=_DROP))
    mallory = _with(header, jwk=_jwk("mallory-sign"))
    neg("other-key-than-bound", "A valid proof by a key other than the one the token is bound to (cnf.jkt).",
        head=mallory, signer="mallory-sign")
    neg("purpose-wrong-type", "purpose is a number.", body=claims("purpose-wrong-type", purpose=7))
    neg("replayed", "The receiver has seen this jti.", code="dpop_replay",
        seen=[["dpop", claims("replayed")["jti"]]])
    return {
        "description": "Test vectors for DPoP proofs (RFC 9449, protocol v1 §3). Generated by "
                       "exchange/protocol/vectors.py; see README.md next to this file.",
        "seed_derivation": "seed(label) = SHA-256(\"exchange-envelope/v1 test vectors: \" || label)",
        "issuer": ISSUER, "past_skew": PAST_SKEW, "future_skew": FUTURE_SKEW,
        "keys": {name: key for name, key in _keys().items() if name in ("interior-dpop", "mallory-sign")},
        "positive": positive, "negative": negative,
    }


def build_assertion_vectors() -> dict[str, Any]:
    """private_key_jwt client assertions (RFC 7523, protocol v1 §2): which the token endpoint accepts."""
    skew = FUTURE_SKEW
    lifetime = 60
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid("interior-auth")}

    def claims(name: str, **changes: Any) -> dict[str, Any]:
        base = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": ISSUER, "iat": IAT, "exp": IAT + lifetime,
                "jti": b64url(seed(f"assertion jti {name}")[:16])}
        return _with(base, **changes)

    def context(**changes: Any) -> dict[str, Any]:
        return {"issuer": ISSUER, "client_id": CLIENT_ID, "client_keys": ["interior-auth"], "now": NOW, "seen": [],
                **changes}

    positive: list[dict[str, Any]] = []
    negative: list[dict[str, Any]] = []

    def pos(name: str, description: str, *, head: dict[str, Any] = header, body: dict[str, Any] | None = None) -> None:
        body = claims(name) if body is None else body
        positive.append(_jwt_vector(name, description, _jws(head, body, "interior-auth"), context(),
                                    {"ok": True, "jti": body["jti"]}, head, body))

    def neg(name: str, description: str, *, head: dict[str, Any] = header, body: dict[str, Any] | None = None,
            signer: str | None = "interior-auth", **ctx: Any) -> None:
        body = claims(name) if body is None else body
        negative.append(_jwt_vector(name, description, _jws(head, body, signer), context(**ctx),
                                    {"ok": False, "code": "invalid_client", "status": 401}, head, body))

    pos("assertion", "iss = sub = the client id, aud the issuer, a 60 s lifetime, a unique jti.")
    pos("assertion-minimal-header", "kid and typ are optional.", head={"alg": "EdDSA"})
    neg("alg-ed25519", 'alg is "Ed25519": protocol v1 names the algorithm EdDSA only.',
        head=_with(header, alg="Ed25519"))
    neg("alg-none", "alg none and no signature.", head=_with(header, alg="none"), signer=None)
    neg("signed-by-other-key", "Signed by a key the client never registered.", signer="mallory-sign")
    neg("aud-token-endpoint", "aud is the token endpoint's URL, not the issuer (also at the revocation endpoint).",
        body=claims("aud-token-endpoint", aud=f"{ISSUER}/oauth/token"))
    neg("aud-array", "aud is an array holding the issuer: protocol v1 wants the string.",
        body=claims("aud-array", aud=[ISSUER]))
    neg("iss-not-sub", "iss differs from sub.", body=claims("iss-not-sub", iss="interior-other"))
    neg("exp-equals-iat", "exp = iat (iat >= exp).", body=claims("exp-equals-iat", iat=NOW, exp=NOW))
    neg("exp-before-iat", "exp before iat, though exp is still ahead of now (iat >= exp).",
        body=claims("exp-before-iat", iat=NOW + 5, exp=NOW + 4))
    neg("lifetime-too-long", f"exp = iat + {lifetime + 1}.",
        body=claims("lifetime-too-long", exp=IAT + lifetime + 1))
    neg("expired", "Received at exp (exp is exclusive).", now=IAT + lifetime)
    neg("iat-future", f"iat {skew + 1} s ahead of now.",
        body=claims("iat-future", iat=NOW + skew + 1, exp=NOW + skew + 1 + lifetime))
    neg("iat-string", "iat is a string (a claim of the wrong type).", body=claims("iat-string", iat=str(IAT)))
    neg("exp-float", "exp is a number with a fraction.", body=claims("exp-float", exp=IAT + lifetime + 0.5))
    neg("jti-short", "jti has 15 characters (16-128).", body=claims("jti-short", jti="A" * 15))
    neg("replayed", "The token endpoint has seen this jti.", seen=[["assertion", claims("replayed")["jti"]]])
    return {
        "description": "Test vectors for private_key_jwt client assertions (RFC 7523, protocol v1 §2). Generated "
                       "by exchange/protocol/vectors.py; see README.md next to this file.",
        "seed_derivation": "seed(label) = SHA-256(\"exchange-envelope/v1 test vectors: \" || label)",
        "issuer": ISSUER, "max_lifetime": lifetime, "future_skew": skew,
        "keys": {name: key for name, key in _keys().items() if name in ("interior-auth", "mallory-sign")},
        "positive": positive, "negative": negative,
    }


FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "envelope-v1.json": lambda: build_vectors(),
    "dpop-v1.json": build_dpop_vectors,
    "client-assertion-v1.json": build_assertion_vectors,
}


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


def write_vectors(path: Path = DEFAULT_PATH) -> Path:
    """Write the envelope vectors to `path`, and the others beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(build_vectors()), encoding="utf-8")
    for name, builder in FILES.items():
        if name != "envelope-v1.json":
            (path.parent / name).write_text(render(builder()), encoding="utf-8")
    return path


def body_of(vector: dict[str, Any]) -> bytes:
    """The exact body bytes of a vector (`body` as UTF-8, or `body_b64`)."""
    if "body" in vector:
        return str(vector["body"]).encode("utf-8")
    return b64url_decode_strict(vector["body_b64"])


def main(argv: list[str] | None = None, echo: Callable[[str], Any] = print) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = write_vectors(Path(args[0]) if args else DEFAULT_PATH)
    echo(f"wrote {path} and {', '.join(name for name in FILES if name != path.name)} beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
