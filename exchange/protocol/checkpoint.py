"""C2SP signed notes (https://c2sp.org/signed-note) and checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is the note text `<origin>\\n<size>\\n<base64 root>\\n`, then a blank line, then one signature line per
signer: `— <key name> <base64(key ID || Ed25519 signature)>\\n` (U+2014 EM DASH, a space). The key ID is the first
four bytes of SHA-256(key name || 0x0A || 0x01 || public key), 0x01 being the Ed25519 signature type. The exchange
signs with its `audit` key under the key name = the origin, so that any C2SP verifier (Go `golang.org/x/mod/sumdb/
note`, transparency-dev witnesses) can check it with the verifier key `<origin>+<key ID hex>+<base64(0x01 || pub)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from exchange.protocol.audit_errors import InvalidCheckpoint
from exchange.protocol.merkle import HASH_SIZE

ED25519 = 0x01  # signed-note signature type
SIGNATURE_PREFIX = "\u2014 "  # "— "
MAX_SIGNATURES = 100  # C2SP: verifiers may refuse notes with more


def b64std(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str) -> bytes:
    """Standard base64, canonical only (signed notes and C2SP keys); `InvalidCheckpoint` otherwise."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise InvalidCheckpoint("not standard base64") from e
    if b64std(data) != text:
        raise InvalidCheckpoint("not canonical base64")
    return data


def parse_vkey(vkey: str, *, key_type: int, wrong_type: str) -> tuple[str, bytes, str]:
    """A C2SP verifier key `<name>+<key ID hex>+<base64(type || Ed25519 public key)>` of `key_type`: its name,
    public key and key ID (hex, for the caller to check against its own key ID rule)."""
    name, sep, rest = vkey.partition("+")
    key_hash, sep2, encoded = rest.partition("+")  # the base64 part may itself contain '+'
    if not (sep and sep2) or len(key_hash) != 8:
        raise InvalidCheckpoint("a verifier key is <name>+<8 hex digits>+<base64 key>")
    raw = b64std_decode(encoded)
    if len(raw) != 33 or raw[0] != key_type:
        raise InvalidCheckpoint(wrong_type)
    return name, raw[1:], key_hash


def _check_key_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise ValueError(f"a key name is non-empty printable text without spaces or '+': {name!r}")


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, kw_only=True)
class NoteVerifier:
    """One trusted Ed25519 key under its key name."""

    name: str
    public_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if len(self.public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The C2SP verifier key: `<name>+<key ID hex>+<base64(0x01 || public key)>`."""
        return f"{self.name}+{self.key_id.hex()}+{b64std(bytes([ED25519]) + self.public_key)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        name, public_key, key_hash = parse_vkey(vkey, key_type=ED25519,
                                                wrong_type="only Ed25519 verifier keys (type 0x01) are supported")
        try:
            verifier = cls(name=name, public_key=public_key)
        except ValueError as e:
            raise InvalidCheckpoint(str(e)) from e
        if verifier.key_id.hex() != key_hash:
            raise InvalidCheckpoint("the verifier key's ID does not match its name and key")
        return verifier

    def verify(self, text: bytes, signature: bytes) -> None:
        try:
            nacl.signing.VerifyKey(self.public_key).verify(text, signature)
        except nacl.exceptions.BadSignatureError as e:
            raise InvalidCheckpoint(f"the signature of {self.name} does not verify") from e


def sign_note(text: str, *, name: str, public_key: bytes, sign: Callable[[bytes], bytes]) -> str:
    """The note `text` signed by the Ed25519 key `sign` (a function returning the 64-byte signature)."""
    _check_key_name(name)
    _check_text(text)
    signature = sign(text.encode("utf-8"))
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return f"{text}\n{SIGNATURE_PREFIX}{name} {b64std(key_id(name, public_key) + signature)}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n") or any(c != "\n" and (ord(c) < 0x20 or ord(c) == 0x7F) for c in text):
        raise InvalidCheckpoint("a note's text ends with a newline and holds no other control characters")


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> tuple[str, NoteVerifier]:
    """Return the note's text and the trusted key that signed it; raise `InvalidCheckpoint` otherwise.

    Signatures by keys we do not know are skipped (C2SP: a note may carry cosignatures); one by a known key name
    and key ID that does not verify rejects the note.
    """
    if not verifiers:
        raise InvalidCheckpoint("no trusted key to verify the note with")  # refuse an empty trust set
    # 1. The text ends at the last blank line; everything after it is signature lines.
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise InvalidCheckpoint("not a signed note: no blank line before the signatures")
    text, lines = note[: split + 1], note[split + 2 :].splitlines()
    _check_text(text)
    if not lines or len(lines) > MAX_SIGNATURES:
        raise InvalidCheckpoint("a signed note carries between 1 and 100 signatures")
    trusted = {(v.name, v.key_id): v for v in verifiers}
    verified: NoteVerifier | None = None
    for line in lines:
        # 2. Each line is "— <name> <base64(key ID || signature)>".
        if not line.startswith(SIGNATURE_PREFIX):
            raise InvalidCheckpoint("a signature line starts with an em dash and a space")
        name, sep, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or not name or " " in blob:
            raise InvalidCheckpoint("a signature line is '— <key name> <base64>'")
        raw = b64std_decode(blob)
        if len(raw) < 5:
            raise InvalidCheckpoint("a signature is a 4-byte key ID and the signature")
        # 3. Skip unknown keys; a known key's signature must verify.
        verifier = trusted.get((name, raw[:4]))
        if verifier is None:
            continue
        verifier.verify(text.encode("utf-8"), raw[4:])
        verified = verified or verifier
    # 4. At least one trusted key signed.
    if verified is None:
        raise InvalidCheckpoint("the note is not signed by any trusted key")
    return text, verified


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A tlog-checkpoint: the log `origin` had `size` entries with Merkle root `root`."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or self.size < 0 or len(self.root) != HASH_SIZE:
            raise ValueError("a checkpoint has an origin line, a size >= 0 and a 32-byte root")

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64std(self.root)}\n"


@dataclass(frozen=True, kw_only=True)
class SignedCheckpoint:
    """A checkpoint with the signed note it was read from (what a verifier keeps and compares later)."""

    checkpoint: Checkpoint
    note: str

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


def sign_checkpoint(checkpoint: Checkpoint, *, public_key: bytes, sign: Callable[[bytes], bytes]) -> str:
    return sign_note(checkpoint.text(), name=checkpoint.origin, public_key=public_key, sign=sign)


def verify_checkpoint(note: str, verifiers: Sequence[NoteVerifier], *, origin: str) -> SignedCheckpoint:
    """Open the note with the trusted keys named `origin` and parse it as a checkpoint of that log."""
    text, _ = open_note(note, verifiers)
    # 1. Origin, size and root lines (extension lines may follow; we write none and read none).
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise InvalidCheckpoint("a checkpoint has an origin, a size and a root line")
    origin_line, size_line, root_line = lines[:3]
    # 2. The origin is the log we expect: a note of another log signed by the same key proves nothing here.
    if origin_line != origin:
        raise InvalidCheckpoint(f"the checkpoint is for {origin_line!r}, not {origin!r}")
    # 3. The size is a decimal without leading zeros.
    if not size_line.isascii() or not size_line.isdigit() or (size_line != "0" and size_line.startswith("0")):
        raise InvalidCheckpoint("the checkpoint's size is not a decimal number")
    root = b64std_decode(root_line)
    if len(root) != HASH_SIZE:
        raise InvalidCheckpoint("the checkpoint's root is not a SHA-256 hash")
    return SignedCheckpoint(checkpoint=Checkpoint(origin=origin_line, size=int(size_line), root=root), note=note)
