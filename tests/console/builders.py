"""Audit exports built in the test process: entries made by the audit package's own `Event` and `encode_entry`, a
checkpoint signed with a key of the test's own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nacl.signing

from exchange.audit.entries import Event, encode_entry
from exchange.audit.services import EXPORT_FORMAT
from exchange.protocol import merkle
from exchange.protocol.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from exchange.protocol.encoding import b64url

ORIGIN = "exchange.test/audit"


class LogKey:
    def __init__(self, seed: bytes = b"\x07" * 32, origin: str = ORIGIN) -> None:
        self.signing = nacl.signing.SigningKey(seed)
        self.origin = origin
        self.public = bytes(self.signing.verify_key)

    @property
    def vkey(self) -> str:
        return NoteVerifier(name=self.origin, public_key=self.public).vkey

    def sign(self, size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(origin=self.origin, size=size, root=root), public_key=self.public,
                               sign=lambda m: self.signing.sign(m).signature)


def leaves_of(events: Sequence[Event]) -> list[bytes]:
    return [encode_entry(e.members(index=i, prev_checkpoint_size=0)) for i, e in enumerate(events)]


def write_export(path: Path, leaves: Sequence[bytes], key: LogKey, *, note: str | None = None) -> str:
    """An export of `leaves` with a checkpoint over all of them; returns the note."""
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    note = note or key.sign(len(leaves), merkle.root_of(hashes))
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"format": EXPORT_FORMAT, "checkpoint": note, "start": 0, "end": len(leaves)},
                           separators=(",", ":")) + "\n")
        for i, (leaf, h) in enumerate(zip(leaves, hashes, strict=True)):
            f.write(json.dumps({"index": i, "leaf": b64url(leaf), "leaf_hash": b64url(h)}, separators=(",", ":"))
                    + "\n")
    return note
