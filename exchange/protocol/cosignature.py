"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), Ed25519 type, and the verifier's quorum (witness.md §4).

A cosignature is a signed-note signature line `— <witness name> base64(key ID || timestamp || signature)`:

- key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4] (0x04: the Ed25519 cosignature type, so that a
  witness key can never be mistaken for a log key, whose type is 0x01);
- timestamp: the POSIX time of the cosignature, 8 bytes big-endian (`timestamped_signature`), at most 2^63 - 1;
- signature: Ed25519 over `cosignature/v1\\n` `time <timestamp>\\n` and the checkpoint's whole note text (origin,
  size, root and any extension lines, with the final newline, without signature lines).

Semantics (the C2SP text): as of that time, the consistent tree head with the largest size the witness has observed
for that origin has that root. A verifier that requires K such cosignatures from witnesses it trusts itself cannot be
shown a checkpoint that K honest witnesses did not also see: a split view needs K of them to lie.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from exchange.protocol.audit_errors import InvalidCheckpoint
from exchange.protocol.checkpoint import (
    SIGNATURE_PREFIX,
    NoteVerifier,
    SignedCheckpoint,
    b64std,
    b64std_decode,
    parse_vkey,
    verify_checkpoint,
)

COSIGNATURE_V1 = 0x04  # the Ed25519 cosignature/v1 type byte
MAX_TIMESTAMP = 2**63 - 1
_BLOB = 4 + 8 + 64  # key ID, timestamp, signature


class QuorumNotMet(InvalidCheckpoint):
    """The checkpoint does not carry K valid cosignatures from the witnesses this verifier trusts."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_V1]) + public_key).digest()[:4]


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosigner signs: the header line, the time line, then the checkpoint's note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("a cosignature timestamp is 0..2^63-1")
    if not text.endswith("\n"):
        raise ValueError("a note text ends with a newline")
    return b"cosignature/v1\ntime %d\n" % timestamp + text.encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class Cosignature:
    """One verified cosignature: who, and when they said it."""

    name: str
    timestamp: int
    line: str  # the signature line as received, with its newline


@dataclass(frozen=True, kw_only=True)
class CosignerKey:
    """A witness's Ed25519 public key under its name (what a verifier trusts, from its own configuration)."""

    name: str
    public_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        NoteVerifier(name=self.name, public_key=self.public_key)  # the same rules for names and key sizes

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key: `<name>+<key ID hex>+<base64(0x04 || public key)>`."""
        return f"{self.name}+{self.key_id.hex()}+{b64std(bytes([COSIGNATURE_V1]) + self.public_key)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignerKey:
        name, public_key, key_hash = parse_vkey(
            vkey, key_type=COSIGNATURE_V1, wrong_type="a witness key is an Ed25519 cosignature key (type 0x04)")
        try:
            key = cls(name=name, public_key=public_key)
        except ValueError as e:
            raise InvalidCheckpoint(str(e)) from e
        if key.key_id.hex() != key_hash:
            raise InvalidCheckpoint("the verifier key's ID does not match its name and key")
        return key

    def verify(self, text: str, blob: bytes) -> Cosignature:
        """Check `blob` (key ID || timestamp || signature) over the note `text`; raise `InvalidCheckpoint`."""
        if len(blob) != _BLOB or blob[:4] != self.key_id:
            raise InvalidCheckpoint(f"not a cosignature by {self.name}")
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        if timestamp > MAX_TIMESTAMP:
            raise InvalidCheckpoint("a cosignature's timestamp exceeds 2^63-1")
        try:
            nacl.signing.VerifyKey(self.public_key).verify(cosigned_message(text, timestamp), blob[12:])
        except nacl.exceptions.BadSignatureError as e:
            raise InvalidCheckpoint(f"the cosignature of {self.name} does not verify") from e
        return Cosignature(name=self.name, timestamp=timestamp,
                           line=f"{SIGNATURE_PREFIX}{self.name} {b64std(blob)}\n")


def cosign(text: str, *, name: str, public_key: bytes, timestamp: int, sign: Callable[[bytes], bytes]) -> str:
    """The cosignature line of a witness over the checkpoint note `text` (with its newline)."""
    signature = sign(cosigned_message(text, timestamp))
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    blob = cosigner_key_id(name, public_key) + struct.pack(">Q", timestamp) + signature
    return f"{SIGNATURE_PREFIX}{name} {b64std(blob)}\n"


def split_note(note: str) -> tuple[str, list[str]]:
    """A signed note's text (with its final newline) and its signature lines (each without its newline)."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise InvalidCheckpoint("not a signed note: no blank line before the signatures")
    return note[: split + 1], note[split + 2 :].splitlines()


def cosignatures(note: str, witnesses: Sequence[CosignerKey]) -> list[Cosignature]:
    """The valid cosignatures of trusted `witnesses` on `note`, one per witness. Lines of keys not trusted are
    skipped (C2SP: clients ignore cosignatures from unknown keys); a line that names a trusted witness and its key ID
    but does not verify rejects the note, as a bad signature by a known key does in a signed note."""
    text, lines = split_note(note)
    trusted = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, Cosignature] = {}
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise InvalidCheckpoint("a signature line starts with an em dash and a space")
        name, sep, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep:
            raise InvalidCheckpoint("a signature line is '— <key name> <base64>'")
        blob = b64std_decode(encoded)
        witness = trusted.get((name, blob[:4]))
        if witness is None:
            continue
        found.setdefault(witness.name, witness.verify(text, blob))
    return list(found.values())


@dataclass(frozen=True, kw_only=True)
class WitnessPolicy:
    """A verifier's own trust in witnesses (witness.md §4): K of these keys must have cosigned. K = 0 with no keys
    is the explicit choice of no witnesses (the exchange's signature alone); anything else needs K keys or more."""

    witnesses: tuple[CosignerKey, ...]
    quorum: int

    def __post_init__(self) -> None:
        if self.quorum < 0:
            raise ValueError("a quorum is 0 or more")
        if self.quorum > len(self.witnesses):
            raise ValueError(f"a quorum of {self.quorum} needs at least as many trusted witness keys "
                             f"({len(self.witnesses)} given)")
        if len({w.name for w in self.witnesses}) != len(self.witnesses):
            raise ValueError("one key per witness name")

    @classmethod
    def none(cls) -> WitnessPolicy:
        return cls(witnesses=(), quorum=0)

    @classmethod
    def parse(cls, vkeys: Sequence[str], quorum: int | None) -> WitnessPolicy:
        """From configuration: witness verifier keys and K (default: all of them)."""
        keys = tuple(CosignerKey.from_vkey(v) for v in vkeys)
        return cls(witnesses=keys, quorum=len(keys) if quorum is None else quorum)


def verify_witnessed(note: str, verifiers: Sequence[NoteVerifier], *, origin: str,
                     policy: WitnessPolicy) -> tuple[SignedCheckpoint, list[Cosignature]]:
    """The checkpoint signed by the log (`verify_checkpoint`) and cosigned by at least `policy.quorum` of the
    witnesses the verifier trusts; raise `InvalidCheckpoint` (`QuorumNotMet` for too few cosignatures)."""
    # 1. The log's own signature, over a checkpoint of the expected log.
    signed = verify_checkpoint(note, verifiers, origin=origin)
    # 2. Cosignatures by keys this verifier trusts (the server's list of witnesses is not consulted).
    valid = cosignatures(note, policy.witnesses)
    # 3. At least K of them.
    if len(valid) < policy.quorum:
        raise QuorumNotMet(f"the checkpoint of size {signed.size} has {len(valid)} valid cosignature(s) from trusted "
                           f"witnesses; {policy.quorum} are required")
    return signed, valid
