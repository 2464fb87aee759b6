"""The published vectors (`schemas/test-vectors/envelope-v1.json`): reproduced exactly, and each opens or fails as
published.

Two readings: through `exchange.envelope` (as the exchange and its client library do), and "by the README" with
nacl, hashlib and json only, the way an implementer in another language would check them, so that the file and its
README are known to be enough on their own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import pytest
from joserfc.jwk import OKPKey

from exchange.protocol import vectors
from exchange.protocol.auth_errors import DPoPReplay, InvalidDPoPProof, Replayed
from exchange.protocol.dpop import verify_dpop_proof
from exchange.protocol.envelope import (
    EnvelopeHeader,
    RequestRef,
    SenderKey,
    StaticSenderKeys,
    open_envelope,
    open_response,
    seal,
)
from exchange.protocol.envelope_errors import EnvelopeError

PATH = Path(__file__).resolve().parents[2] / "schemas" / "test-vectors" / "envelope-v1.json"
DOC: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))
POSITIVE = DOC["positive"]
NEGATIVE = DOC["negative"]


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SeenSet:
    """A replay cache on the vectors' own clock (their times are fixed in the past): seen is seen."""

    def __init__(self, seen: list[list[str]]) -> None:
        self.seen = {(namespace, jti) for namespace, jti in seen}

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        if (namespace, jti) in self.seen:
            raise Replayed(jti)
        self.seen.add((namespace, jti))


def open_vector(vector: dict[str, Any]) -> Any:
    context = vector["context"]
    keys = DOC["keys"]
    decrypt = {keys[name]["kid"]: nacl.public.PrivateKey(b64d(keys[name]["private"]))
               for name in context["decrypt_keys"]}
    sender_keys = StaticSenderKeys(
        SenderKey(agency=entry["agency"], verify_key=nacl.signing.VerifyKey(b64d(keys[entry["key"]]["public"])),
                  revoked=entry["revoked"])
        for entry in context["sender_keys"])
    common: dict[str, Any] = {"receiver": context["receiver"], "decrypt_keys": decrypt, "sender_keys": sender_keys,
                              "replay": SeenSet(context["seen"]), "now": context["now"],
                              "max_bytes": context["max_bytes"]}
    body = vectors.body_of(vector)
    if context["mode"] == "request":
        return open_envelope(body, method=context["method"], target=context["target"],
                             authenticated_agency=context["expected_sender"], **common)
    request = context["request"]
    ref = RequestRef(method=request["method"], target=request["target"], reply_to=request["reply_to"],
                     request_hash=request["request_hash"])
    return open_response(body, request=ref, sender=context["expected_sender"], **common)


@pytest.mark.parametrize("name", sorted(vectors.FILES))
def test_the_published_files_are_exactly_what_the_code_produces(name: str) -> None:
    assert vectors.render(vectors.FILES[name]()) == (PATH.parent / name).read_text(encoding="utf-8"), (
        f"schemas/test-vectors/{name} is stale: run `python -m exchange.protocol.vectors`")


def test_names_are_unique_and_every_step_is_covered() -> None:
    names = [v["name"] for v in POSITIVE + NEGATIVE]
    assert len(names) == len(set(names))
    steps = {v["expect"]["step"] for v in NEGATIVE}
    assert steps == set(range(1, 12))
    codes = {v["expect"]["code"] for v in NEGATIVE}
    assert codes == {"envelope_malformed", "envelope_too_large", "envelope_unsupported", "envelope_wrong_recipient",
                     "envelope_expired", "envelope_misdirected", "envelope_sender_mismatch", "envelope_undecryptable",
                     "unknown_key", "key_revoked", "envelope_bad_signature", "envelope_replayed", "validation_failed",
                     "envelope_reply_mismatch"}


@pytest.mark.parametrize("name", sorted(DOC["keys"]))
def test_keys_follow_from_their_seeds(name: str) -> None:
    key = DOC["keys"][name]
    if key["alg"] == "Ed25519":
        assert b64d(key["seed"]) == hashlib.sha256(b"exchange-envelope/v1 test vectors: " + name.encode()).digest()
        public = bytes(nacl.signing.SigningKey(b64d(key["seed"])).verify_key)
    else:
        assert b64d(key["private"]) == hashlib.sha256(
            b"exchange-envelope/v1 test vectors: " + name.encode()).digest()
        public = nacl.bindings.crypto_scalarmult_base(b64d(key["private"]))
    assert b64e(public) == key["public"]
    # RFC 7638, by joserfc and by hand.
    assert key["kid"] == OKPKey.import_key({"kty": "OKP", "crv": key["alg"], "x": key["public"]}).thumbprint()
    canonical = f'{{"crv":"{key["alg"]}","kty":"OKP","x":"{key["public"]}"}}'.encode()
    assert key["kid"] == b64e(hashlib.sha256(canonical).digest())


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_positive_vectors_by_the_readme(vector: dict[str, Any]) -> None:
    """With nacl, hashlib and json only, following schemas/test-vectors/README.md."""
    keys = DOC["keys"]
    body = json.loads(vector["body"])
    assert set(body) == {"protected", "ciphertext"}
    header_bytes = b64d(body["protected"])
    assert header_bytes == vector["header_bytes"].encode()
    assert json.loads(header_bytes) == vector["header"]
    assert vector["header"]["skid"] == keys[vector["sender_key"]]["kid"]
    assert vector["header"]["rkid"] == keys[vector["recipient_key"]]["kid"]
    # Open the box with the recipient's key: sig (64 bytes) || plaintext.
    recipient = keys[vector["recipient_key"]]
    content = nacl.bindings.crypto_box_seal_open(b64d(body["ciphertext"]), b64d(recipient["public"]),
                                                 b64d(recipient["private"]))
    sig, plaintext = content[:64], content[64:]
    assert plaintext == vector["plaintext"].encode()
    assert b64e(sig) == vector["sig"]
    # The signature: Ed25519 over domain || header bytes || 0x00 || SHA-256(plaintext), deterministic.
    digest = hashlib.sha256(plaintext).digest()
    assert b64e(digest) == vector["plaintext_hash"]
    message = b"exchange-envelope/v1\x00" + header_bytes + b"\x00" + digest
    assert b64e(message) == vector["signing_input"]
    sender = keys[vector["sender_key"]]
    nacl.signing.VerifyKey(b64d(sender["public"])).verify(message, sig)
    assert nacl.signing.SigningKey(b64d(sender["seed"])).sign(message).signature == sig
    # The box is libsodium's sealed box with the published ephemeral secret (reproducible where crypto_box is).
    esk = b64d(vector["ephemeral_secret"])
    epk = nacl.bindings.crypto_scalarmult_base(esk)
    pk = b64d(recipient["public"])
    nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
    assert epk + nacl.bindings.crypto_box(sig + plaintext, nonce, pk, esk) == b64d(body["ciphertext"])
    # What a response to it names.
    request_hash = b64e(hashlib.sha256(f'{body["protected"]}.{body["ciphertext"]}'.encode()).digest())
    assert request_hash == vector["expect"]["request_hash"]


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_positive_vectors_open(vector: dict[str, Any]) -> None:
    opened = open_vector(vector)
    assert opened.plaintext == vector["plaintext"].encode()
    assert opened.json == json.loads(vector["plaintext"])
    assert opened.header.to_dict() == vector["header"]
    assert opened.evidence() == vector["expect"]["evidence"]
    assert opened.sealed.request_hash() == vector["expect"]["request_hash"]


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_seal_reproduces_header_bytes_and_signature(vector: dict[str, Any]) -> None:
    """`seal` is randomised in its box only: the header bytes and the signature inside are the published ones."""
    keys = DOC["keys"]
    header = EnvelopeHeader.parse(vector["header_bytes"].encode())
    if not vector["header_compact"]:  # written as another implementation may: seal writes it otherwise
        assert header.to_bytes() != vector["header_bytes"].encode()
        return
    assert header.to_bytes() == vector["header_bytes"].encode()
    recipient = nacl.public.PrivateKey(b64d(keys[vector["recipient_key"]]["private"]))
    sealed = seal(header=header, plaintext=vector["plaintext"].encode(),
                  signing_key=nacl.signing.SigningKey(b64d(keys[vector["sender_key"]]["seed"])),
                  recipient_key=recipient.public_key)
    assert sealed.protected == vector["protected"]
    assert sealed.ciphertext != vector["ciphertext"]  # a fresh ephemeral key
    content = nacl.public.SealedBox(recipient).decrypt(b64d(sealed.ciphertext))
    assert b64e(content[:64]) == vector["sig"]


def test_the_response_vectors_answer_their_requests() -> None:
    by_name = {v["name"]: v for v in POSITIVE}
    request, response = by_name["request"], by_name["response"]
    assert response["header"]["reply_to"] == request["header"]["msg_id"]
    assert response["header"]["request_hash"] == request["expect"]["request_hash"]
    get = by_name["response-to-get"]
    proof = get["context"]["request"]["dpop_proof"]
    ref = RequestRef.of_proof(proof, method="GET", target=get["header"]["target"])
    assert (ref.reply_to, ref.request_hash) == (get["header"]["reply_to"], get["header"]["request_hash"])


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_negative_vectors_fail_with_their_code(vector: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError) as caught:
        open_vector(vector)
    expect = vector["expect"]
    assert (caught.value.code, caught.value.status, caught.value.step) == (
        expect["code"], expect["status"], expect["step"]), vector["description"]


# ---- what the vectors catch: a receiver that slips through the old checks fails them --------------------------


def naive_signature_check(vector: dict[str, Any], *, reserialise: bool) -> bool:
    """Open a positive or negative body by the README, checking the signature over the header bytes as sent or, as
    a wrong implementation does, over the parsed header serialised again."""
    keys = DOC["keys"]
    body = json.loads(vectors.body_of(vector))
    header_bytes = b64d(body["protected"])
    header = json.loads(header_bytes)
    signed = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode() if reserialise else header_bytes
    recipient = next(keys[k] for k in vector["context"]["decrypt_keys"])
    content = nacl.bindings.crypto_box_seal_open(b64d(body["ciphertext"]), b64d(recipient["public"]),
                                                 b64d(recipient["private"]))
    sender = next(keys[e["key"]] for e in vector["context"]["sender_keys"] if e["agency"] == header["sender"])
    message = b"exchange-envelope/v1\x00" + signed + b"\x00" + hashlib.sha256(content[64:]).digest()
    try:
        nacl.signing.VerifyKey(b64d(sender["public"])).verify(message, content[:64])
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def test_a_receiver_that_reserialises_the_header_fails_the_vectors() -> None:
    by_name = {v["name"]: v for v in POSITIVE + NEGATIVE}
    written, respaced = by_name["request-header-as-written"], by_name["header-reserialised"]
    assert naive_signature_check(written, reserialise=False)
    assert not naive_signature_check(written, reserialise=True)  # refuses a valid envelope
    assert not naive_signature_check(respaced, reserialise=False)
    assert naive_signature_check(respaced, reserialise=True)  # accepts one whose signed bytes were not sent


def test_the_response_vectors_differ_from_a_good_response_only_where_a_client_must_look() -> None:
    """A client that checks only reply_to and request_hash (and the signature) accepts these: the method, the
    target and the audit member are what must stop it."""
    by_name = {v["name"]: v for v in NEGATIVE}
    good = next(v for v in POSITIVE if v["name"] == "response")
    for name in ("response-other-method", "response-other-target"):
        request = by_name[name]["context"]["request"]
        assert (request["reply_to"], request["request_hash"]) == (good["header"]["reply_to"],
                                                                  good["header"]["request_hash"])
        assert by_name[name]["body"] == good["body"]
    no_audit = json.loads(b64d(json.loads(by_name["response-without-audit"]["body"])["protected"]))
    assert set(good["header"]) - set(no_audit) == {"audit"}
    assert naive_signature_check(by_name["response-without-audit"], reserialise=False)  # well signed


# ---- DPoP proofs ---------------------------------------------------------------------------------------------

DPOP: dict[str, Any] = json.loads((PATH.parent / "dpop-v1.json").read_text(encoding="utf-8"))


def verify_dpop_vector(vector: dict[str, Any]) -> Any:
    context = vector["context"]
    return verify_dpop_proof(vector["token"], method=context["method"], url=context["url"],
                             access_token=context["access_token"], replay=SeenSet(context["seen"]),
                             bound_to=context["bound_to"], now=context["now"])


@pytest.mark.parametrize("vector", DPOP["positive"], ids=[v["name"] for v in DPOP["positive"]])
def test_dpop_positive_vectors_verify(vector: dict[str, Any]) -> None:
    proof = verify_dpop_vector(vector)
    assert (proof.jkt, proof.jti, proof.purpose) == (vector["expect"]["jkt"], vector["expect"]["jti"],
                                                     vector["expect"]["purpose"])
    # by hand: the JWS signs header.claims with the jwk's key, and jkt is the RFC 7638 thumbprint of that jwk
    head, claims, sig = vector["token"].split(".")
    assert json.loads(b64d(head)) == vector["header"] and json.loads(b64d(claims)) == vector["claims"]
    x = vector["header"]["jwk"]["x"]
    nacl.signing.VerifyKey(b64d(x)).verify(f"{head}.{claims}".encode(), b64d(sig))
    thumbprint = hashlib.sha256(f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()).digest()
    assert b64e(thumbprint) == vector["expect"]["jkt"]


@pytest.mark.parametrize("vector", DPOP["negative"], ids=[v["name"] for v in DPOP["negative"]])
def test_dpop_negative_vectors_fail_with_their_code(vector: dict[str, Any]) -> None:
    with pytest.raises((InvalidDPoPProof, DPoPReplay)) as caught:
        verify_dpop_vector(vector)
    assert (caught.value.code, caught.value.status) == (vector["expect"]["code"], vector["expect"]["status"])
