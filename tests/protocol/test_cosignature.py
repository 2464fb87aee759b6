"""C2SP tlog-cosignature keys, lines and the verifier's quorum; the signed receipt in the envelope header."""

from __future__ import annotations

import base64

import nacl.signing
import pytest

from exchange.protocol.audit_errors import InvalidCheckpoint, VerificationError
from exchange.protocol.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from exchange.protocol.cosignature import (
    CosignerKey,
    QuorumNotMet,
    WitnessPolicy,
    cosign,
    cosignatures,
    verify_witnessed,
)
from exchange.protocol.encoding import b64url
from exchange.protocol.envelope import AuditReceipt, EnvelopeHeader, dumps_json
from exchange.protocol.envelope_errors import EnvelopeMalformed
from exchange.protocol.receipts import SignedReceipt

ORIGIN = "exchange.test/audit"
LOG = nacl.signing.SigningKey(b"\x01" * 32)
WITNESSES = [nacl.signing.SigningKey(bytes([n]) * 32) for n in (2, 3, 4)]


def key(n: int) -> CosignerKey:
    return CosignerKey(name=f"w{n}.test", public_key=bytes(WITNESSES[n].verify_key))


def note() -> str:
    return sign_checkpoint(Checkpoint(origin=ORIGIN, size=3, root=b"\x05" * 32),
                           public_key=bytes(LOG.verify_key), sign=lambda m: LOG.sign(m).signature)


def cosigned(*ns: int, at: int = 1_700_000_000) -> str:
    text = note()[: note().index("\n\n") + 1]
    return note() + "".join(cosign(text, name=key(n).name, public_key=key(n).public_key, timestamp=at,
                                   sign=lambda m, n=n: WITNESSES[n].sign(m).signature) for n in ns)


LOG_KEYS = [NoteVerifier(name=ORIGIN, public_key=bytes(LOG.verify_key))]


def test_a_quorum_of_trusted_cosignatures() -> None:
    policy = WitnessPolicy(witnesses=(key(0), key(1), key(2)), quorum=2)
    signed, valid = verify_witnessed(cosigned(0, 2), LOG_KEYS, origin=ORIGIN, policy=policy)
    assert signed.size == 3 and sorted(c.name for c in valid) == ["w0.test", "w2.test"]
    with pytest.raises(QuorumNotMet):
        verify_witnessed(cosigned(1), LOG_KEYS, origin=ORIGIN, policy=policy)
    with pytest.raises(QuorumNotMet):  # the same witness twice counts once
        verify_witnessed(cosigned(1, 1), LOG_KEYS, origin=ORIGIN, policy=policy)


def test_untrusted_cosignatures_are_ignored_and_a_bad_trusted_one_rejects() -> None:
    assert cosignatures(cosigned(0, 1), [key(1)])[0].name == "w1.test"
    line = cosigned(0).splitlines()[-1]
    name, blob = line.removeprefix("\u2014 ").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    tampered = note() + f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(InvalidCheckpoint, match="does not verify"):
        cosignatures(tampered, [key(0)])


def test_a_log_key_is_not_a_witness_key() -> None:
    """The key IDs differ by type (0x01 / 0x04): the log's own signature never counts as a cosignature."""
    as_witness = CosignerKey(name=ORIGIN, public_key=bytes(LOG.verify_key))
    assert cosignatures(note(), [as_witness]) == []
    with pytest.raises(InvalidCheckpoint, match="0x04"):
        CosignerKey.from_vkey(LOG_KEYS[0].vkey)
    assert CosignerKey.from_vkey(key(0).vkey) == key(0)


@pytest.mark.parametrize(("keys", "quorum"), [((), 1), ((0,), 2), ((0,), -1)])
def test_a_policy_needs_as_many_keys_as_its_quorum(keys: tuple[int, ...], quorum: int) -> None:
    with pytest.raises(ValueError):
        WitnessPolicy(witnesses=tuple(key(n) for n in keys), quorum=quorum)


def test_the_signed_receipt_in_the_envelope_header() -> None:
    receipt = SignedReceipt.sign(index=9, leaf_hash=b"\x06" * 32, time=1_800_000_000, log=ORIGIN,
                                 sign=lambda m: LOG.sign(m).signature)
    audit = AuditReceipt(index=9, leaf_hash=b64url(receipt.leaf_hash), time=receipt.time, log=receipt.log,
                         sig=b64url(receipt.sig))
    header = EnvelopeHeader(sender="exchange", skid=b64url(b"\x0a" * 32), recipient="border",
                            rkid=b64url(b"\x0b" * 32), msg_id=b64url(b"\x0c" * 16),
                            iat=1, exp=2, method="GET", target="/v1/x", reply_to="r", request_hash=b64url(b"\x0d" * 32),
                            audit=audit)
    assert header.to_bytes() == dumps_json(header.to_dict())
    assert EnvelopeHeader.parse(header.to_bytes()).audit == audit
    legacy = AuditReceipt(index=9, leaf_hash=audit.leaf_hash)
    assert EnvelopeHeader.parse(EnvelopeHeader(**{**header.__dict__, "audit": legacy}).to_bytes()).audit == legacy
    partial = header.to_bytes().replace(b',"sig":"' + audit.sig.encode() + b'"', b"")  # type: ignore[union-attr]
    with pytest.raises(EnvelopeMalformed):
        EnvelopeHeader.parse(partial)
    with pytest.raises(VerificationError):
        SignedReceipt(index=10, leaf_hash=receipt.leaf_hash, time=receipt.time, log=ORIGIN,
                      sig=receipt.sig).verify([bytes(LOG.verify_key)])
    with pytest.raises(VerificationError):
        receipt.verify([bytes(LOG.verify_key)], log="another/log")
    assert receipt.verify([bytes(LOG.verify_key)]) is receipt
