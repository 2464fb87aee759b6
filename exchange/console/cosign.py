"""The other signatures a checkpoint carries: witnesses' cosignatures (C2SP tlog-cosignature), once they exist.

The log's own signature is checked by the verifier; this module only counts and checks the *other* signature lines
of a verified note, against the witness keys the auditor trusts (`--witness VKEY`). A note without any is fine: the
badge says "none carried". Two kinds of witness keys are understood:

- type 0x01 (plain Ed25519 signed-note): the signature is over the note's text;
- type 0x04 (cosignature/v1): the signature blob is key ID || 8-byte big-endian timestamp || Ed25519 signature over
  `cosignature/v1\\ntime <timestamp>\\n` followed by the note's text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing

from exchange.protocol.checkpoint import SIGNATURE_PREFIX

ED25519 = 0x01
COSIGNATURE_V1 = 0x04


@dataclass(frozen=True, kw_only=True)
class WitnessKey:
    name: str
    kind: int
    public_key: bytes = field(repr=False)

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode("utf-8") + b"\n" + bytes([self.kind]) + self.public_key).digest()[:4]

    @classmethod
    def from_vkey(cls, vkey: str) -> WitnessKey:
        name, _, rest = vkey.partition("+")
        key_hash, _, encoded = rest.partition("+")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as e:
            raise ValueError(f"not a verifier key: {vkey!r}") from e
        if not name or len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise ValueError(f"a witness key is <name>+<id>+<base64(0x01 or 0x04 || Ed25519 key)>: {vkey!r}")
        key = cls(name=name, kind=raw[0], public_key=raw[1:])
        if key.key_id.hex() != key_hash:
            raise ValueError(f"the witness key's ID does not match its name and key: {vkey!r}")
        return key

    def check(self, text: str, blob: bytes) -> int | None:
        """Verify the signature blob (key ID stripped); return the cosignature's timestamp (None for type 0x01)."""
        verify = nacl.signing.VerifyKey(self.public_key).verify
        if self.kind == COSIGNATURE_V1:
            if len(blob) != 72:
                raise ValueError("a cosignature/v1 is a timestamp and a signature")
            timestamp = int.from_bytes(blob[:8], "big")
            verify(f"cosignature/v1\ntime {timestamp}\n{text}".encode(), blob[8:])
            return timestamp
        verify(text.encode("utf-8"), blob)
        return None


def cosignatures(note: str, *, log_key_name: str, log_key_id: bytes, witnesses: list[WitnessKey]) -> dict[str, Any]:
    """What the note carries besides the log's signature: `found` lines, which `verified` with a trusted witness key,
    which `failed`, and which are by keys the auditor does not know (`unknown`)."""
    split = note.rfind("\n\n")
    text, lines = note[: split + 1], note[split + 2:].splitlines()
    trusted = {(w.name, w.key_id): w for w in witnesses}
    found = 0
    verified: list[dict[str, Any]] = []
    failed: list[str] = []
    unknown: list[str] = []
    for line in lines:
        name, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            failed.append(name)
            continue
        if name == log_key_name and raw[:4] == log_key_id:
            continue
        found += 1
        witness = trusted.get((name, raw[:4]))
        if witness is None:
            unknown.append(name)
            continue
        try:
            timestamp = witness.check(text, raw[4:])
        except (ValueError, nacl.exceptions.BadSignatureError):
            failed.append(name)
            continue
        verified.append({"name": name, "timestamp": timestamp})
    return {"found": found, "verified": verified, "failed": failed, "unknown": unknown,
            "trusted_witnesses": sorted(w.name for w in witnesses)}
