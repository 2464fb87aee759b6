"""C2SP signed notes and checkpoints.

The note format is anchored to an independent implementation: the example of Go's `golang.org/x/mod/sumdb/note`
(package documentation and `note_test.go`), whose key pair and signed note are published. Ed25519 is deterministic,
so signing the same text with the same key must reproduce the published note byte for byte.
"""

from __future__ import annotations

import base64

import nacl.signing
import pytest

from exchange.keys.store import ExchangeKey
from exchange.protocol.audit_errors import InvalidCheckpoint
from exchange.protocol.checkpoint import (
    Checkpoint,
    NoteVerifier,
    key_id,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from exchange.protocol.merkle import EMPTY_ROOT

GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann "
           "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def go_signing_key() -> nacl.signing.SigningKey:
    encoded = GO_SIGNER_KEY.split("+", 4)[4]  # PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01
    return nacl.signing.SigningKey(raw[1:])


def test_signing_reproduces_the_go_sumdb_note_example() -> None:
    key = go_signing_key()
    note = sign_note(GO_TEXT, name="PeterNeumann", public_key=bytes(key.verify_key),
                     sign=lambda m: key.sign(m).signature)
    assert note == GO_NOTE


def test_verifier_key_and_key_id_match_the_go_example() -> None:
    verifier = NoteVerifier.from_vkey(GO_VERIFIER_KEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.public_key == bytes(go_signing_key().verify_key)
    assert key_id("PeterNeumann", verifier.public_key).hex() == "c74f20a3"
    assert verifier.vkey == GO_VERIFIER_KEY
    assert open_note(GO_NOTE, [verifier]) == (GO_TEXT, verifier)


@pytest.mark.parametrize(
    "note",
    [
        GO_NOTE.replace("cryptography", "cryptographY"),  # text changed
        GO_NOTE.replace("x08go", "x08gp"),  # signature changed
        GO_NOTE.replace("\u2014", "-"),  # not an em dash
        GO_TEXT + "\u2014 PeterNeumann x08go\n",  # no blank line before the signatures
        GO_TEXT + "\n",  # no signature at all
        GO_NOTE.rstrip("\n"),  # no final newline
        GO_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08"),  # two spaces
    ],
)
def test_tampered_notes_are_rejected(note: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        open_note(note, [NoteVerifier.from_vkey(GO_VERIFIER_KEY)])


def test_unknown_signers_are_skipped_but_one_trusted_signature_is_required() -> None:
    other = nacl.signing.SigningKey.generate()
    cosigned = sign_note(GO_TEXT, name="Witness", public_key=bytes(other.verify_key),
                         sign=lambda m: other.sign(m).signature)
    both = GO_NOTE + cosigned.split("\n\n", 1)[1]
    assert open_note(both, [NoteVerifier.from_vkey(GO_VERIFIER_KEY)])[0] == GO_TEXT
    with pytest.raises(InvalidCheckpoint, match="not signed by any trusted key"):
        open_note(cosigned, [NoteVerifier.from_vkey(GO_VERIFIER_KEY)])
    with pytest.raises(InvalidCheckpoint, match="no trusted key"):
        open_note(GO_NOTE, [])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+c74f20a3+AhpwdnBqOAQxUbm/aVFMhQTR4gYMPgHuapNHHI/+/ReX",  # not type 0x01
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        NoteVerifier.from_vkey(vkey)


def _audit_key() -> ExchangeKey:
    return ExchangeKey(purpose="audit", created_at=0, signing_key=nacl.signing.SigningKey(bytes(range(32))))


def test_checkpoint_round_trip_in_the_c2sp_layout() -> None:
    key = _audit_key()
    checkpoint = Checkpoint(origin="exchange.local/audit", size=7, root=bytes(range(32)))
    note = sign_checkpoint(checkpoint, public_key=key.public_bytes, sign=key.sign)
    body, signature_line = note.split("\n\n")
    assert body == "exchange.local/audit\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert signature_line.startswith("\u2014 exchange.local/audit ") and signature_line.endswith("\n")
    blob = base64.b64decode(signature_line.split(" ")[2])
    assert blob[:4] == key_id("exchange.local/audit", key.public_bytes) and len(blob) == 68
    verifier = NoteVerifier(name="exchange.local/audit", public_key=key.public_bytes)
    signed = verify_checkpoint(note, [verifier], origin="exchange.local/audit")
    assert signed.checkpoint == checkpoint and signed.note == note
    assert NoteVerifier.from_vkey(verifier.vkey) == verifier


def test_checkpoint_of_another_log_or_with_a_bad_body_is_refused() -> None:
    key = _audit_key()
    verifier = NoteVerifier(name="other.example/log", public_key=key.public_bytes)

    def signed(text: str) -> str:
        return sign_note(text, name="other.example/log", public_key=key.public_bytes, sign=key.sign)

    good = signed(Checkpoint(origin="other.example/log", size=0, root=EMPTY_ROOT).text())
    assert verify_checkpoint(good, [verifier], origin="other.example/log").size == 0
    with pytest.raises(InvalidCheckpoint, match="not 'exchange.local/audit'"):
        verify_checkpoint(good, [verifier], origin="exchange.local/audit")
    for body, message in [
        ("other.example/log\n007\nAAAA\n", "size"),
        ("other.example/log\n-1\nAAAA\n", "size"),
        ("other.example/log\n1\n" + base64.b64encode(b"short").decode() + "\n", "root"),
        ("other.example/log\n1\n", "origin, a size and a root"),
    ]:
        with pytest.raises(InvalidCheckpoint, match=message):
            verify_checkpoint(signed(body), [verifier], origin="other.example/log")
