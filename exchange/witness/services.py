"""The witness: C2SP tlog-witness `add-checkpoint`, checked in the order of the text, then a tlog-cosignature.

Its key is its own (an Ed25519 seed in `witness.key`, mode 0600, in its folder), its state its own (`state.db`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from exchange.files import atomic_write
from exchange.protocol.audit_errors import InvalidCheckpoint, InvalidProof
from exchange.protocol.checkpoint import NoteVerifier, verify_checkpoint
from exchange.protocol.cosignature import CosignerKey, cosign, split_note
from exchange.protocol.merkle import ConsistencyProof, verify_consistency
from exchange.protocol.witness import AddCheckpoint, WitnessRequestError
from exchange.witness.errors import (
    BadSubmission,
    InconsistentCheckpoint,
    SizeConflict,
    UnknownLog,
    UntrustedCheckpoint,
)
from exchange.witness.state import LogState, WitnessState

KEY_FILE = "witness.key"
CONFIG_FILE = "witness.json"
STATE_FILE = "state.db"


@dataclass(frozen=True, kw_only=True)
class WitnessIdentity:
    """The witness's name and signing key."""

    name: str
    signing_key: nacl.signing.SigningKey

    @property
    def public(self) -> CosignerKey:
        return CosignerKey(name=self.name, public_key=bytes(self.signing_key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def init_folder(folder: Path, *, name: str) -> WitnessIdentity:
    """Make a new witness in `folder` (mode 0700): a fresh key, its name, an empty state. Refuse to overwrite."""
    CosignerKey(name=name, public_key=b"\0" * 32)  # the name's rules (ValueError)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (folder / KEY_FILE).exists():
        raise FileExistsError(f"{folder / KEY_FILE} exists: this folder already holds a witness")
    key = nacl.signing.SigningKey.generate()
    atomic_write(folder / KEY_FILE, base64.b64encode(bytes(key)) + b"\n", prefix=".witness-key-")
    atomic_write(folder / CONFIG_FILE, json.dumps({"name": name}).encode("utf-8") + b"\n", prefix=".witness-")
    WitnessState(folder / STATE_FILE)
    return WitnessIdentity(name=name, signing_key=key)


def load_identity(folder: Path) -> WitnessIdentity:
    try:
        name = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))["name"]
        seed = base64.b64decode((folder / KEY_FILE).read_bytes().strip(), validate=True)
    except (OSError, ValueError, KeyError, binascii.Error) as e:
        raise FileNotFoundError(f"{folder} holds no witness (exchange witness init): {e}") from e
    return WitnessIdentity(name=name, signing_key=nacl.signing.SigningKey(seed))


class Witness:
    """One witness: its identity, its state, its clock."""

    def __init__(self, *, identity: WitnessIdentity, state: WitnessState,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.state = state
        self.clock = clock

    @classmethod
    def open(cls, folder: Path, **options: Callable[[], float]) -> Witness:
        return cls(identity=load_identity(folder), state=WitnessState(folder / STATE_FILE), **options)

    def add_checkpoint(self, body: bytes) -> bytes:
        """Answer a C2SP add-checkpoint request: the cosignature lines (200), or raise a `WitnessError`."""
        # 1. The body: old size, proof lines, an empty line, the checkpoint (else 400).
        try:
            request = AddCheckpoint.parse(body)
        except WitnessRequestError as e:
            raise BadSubmission(str(e)) from e
        # 2. The origin is one this witness knows (else 404).
        origin = request.checkpoint.split("\n", 1)[0]
        known = self.state.log(origin)
        if known is None:
            raise UnknownLog()
        # 3. Signed by the log's key this witness trusts; unknown keys' signatures ignored (else 403).
        try:
            signed = verify_checkpoint(request.checkpoint, [NoteVerifier.from_vkey(known.vkey)], origin=origin)
        except InvalidCheckpoint as e:
            raise UntrustedCheckpoint(f"{UntrustedCheckpoint.default_message} ({e})") from e
        # 4. The old size is at most the checkpoint's (else 400).
        if request.old_size > signed.size:
            raise BadSubmission("The old size is larger than the checkpoint's size.")
        now = int(self.clock())
        text, _ = split_note(request.checkpoint)
        refused: list[tuple[str, int]] = []

        def decide(current: LogState) -> LogState | SizeConflict | InconsistentCheckpoint:
            # 5. The old size is the size this witness last cosigned (else 409 with its size).
            if request.old_size != current.size:
                return SizeConflict(current.size)
            # 6. The same size again: the same root (else 409, and the checkpoint is evidence of a split view).
            if signed.size == current.size and current.root is not None:
                if request.proof:  # RFC 6962: the proof between equal sizes is empty
                    return InconsistentCheckpoint("The consistency proof between equal sizes is empty.")
                if signed.root != current.root:
                    refused.append(("same size, another root", current.size))
                    return SizeConflict(current.size, "The witness cosigned another root for this size.")
                return LogState(origin=origin, vkey=current.vkey, size=current.size, root=current.root,
                                checkpoint=current.checkpoint, updated_at=current.updated_at)
            # 7. The consistency proof from the cosigned tree to this one (RFC 6962 §2.1.2; empty from 0).
            if current.size == 0 or current.root is None:
                if request.proof:
                    return InconsistentCheckpoint("The proof from an old size of 0 must be empty.")
            else:
                try:
                    verify_consistency(ConsistencyProof(old=current.size, new=signed.size, hashes=request.proof),
                                       old_root=current.root, new_root=signed.root)
                except InvalidProof:
                    refused.append(("the consistency proof does not verify", current.size))
                    return InconsistentCheckpoint()
            # 8. Persist the new state before answering (atomically with the check: `advance`).
            return LogState(origin=origin, vkey=current.vkey, size=signed.size, root=signed.root,
                            checkpoint=request.checkpoint, updated_at=now)

        decision = self.state.advance(origin, decide)
        for reason, witnessed_size in refused:  # a signed checkpoint that contradicts the cosigned one: kept
            self.state.keep_evidence(origin=origin, reason=reason, witnessed_size=witnessed_size, request=body)
        if not isinstance(decision, LogState):
            raise decision
        # 9. The cosignature (tlog-cosignature, Ed25519 type 0x04), timestamped now.
        return cosign(text, name=self.identity.name, public_key=self.identity.public.public_key, timestamp=now,
                      sign=self.identity.sign).encode("utf-8")
