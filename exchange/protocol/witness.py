"""C2SP tlog-witness (https://c2sp.org/tlog-witness): the `add-checkpoint` request and response bodies.

Request (`POST <prefix>/add-checkpoint`): `old <size>\\n`, zero to 63 consistency proof lines (one standard-base64
hash each), an empty line, then the signed checkpoint note. Answers:

| status | when | body |
|---|---|---|
| 200 | cosigned | one or more cosignature lines (`text/x.tlog.cosignature` is not named by C2SP; we send text/plain) |
| 400 | malformed, or old size > checkpoint size | a line of text |
| 403 | no signature by a log key the witness trusts for that origin | a line of text |
| 404 | an origin the witness does not know | a line of text |
| 409 | old size is not the witness's size, or same size with another root | `<witness's size>\\n`, `text/x.tlog.size` |
| 422 | the consistency proof does not verify | a line of text |

(witness.md §3 names 403 for "a log or key it does not know"; C2SP answers an unknown origin with 404 and, where
they differ on wire details, the C2SP text wins.)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from exchange.protocol.checkpoint import b64std
from exchange.protocol.merkle import HASH_SIZE

ADD_CHECKPOINT_PATH = "/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024  # a checkpoint with 100 signatures and a full proof is far smaller


class WitnessRequestError(ValueError):
    """The add-checkpoint body is malformed (400)."""


def _decimal(text: str) -> int:
    if not text.isascii() or not text.isdigit() or (text != "0" and text.startswith("0")):
        raise WitnessRequestError("a size is an ASCII decimal without leading zeros")
    return int(text)


@dataclass(frozen=True, kw_only=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the submitter believes the witness has, the consistency proof from it,
    and the signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, as sent

    def __post_init__(self) -> None:
        if self.old_size < 0 or len(self.proof) > MAX_PROOF_LINES or any(len(h) != HASH_SIZE for h in self.proof):
            raise WitnessRequestError("an old size >= 0 and at most 63 hashes of 32 bytes")

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}\n", *(f"{b64std(h)}\n" for h in self.proof), "\n", self.checkpoint]
        return "".join(lines).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body; raise `WitnessRequestError` (400) on anything malformed."""
        if len(body) > MAX_BODY_BYTES:
            raise WitnessRequestError("the request body is too large")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WitnessRequestError("the request body is not UTF-8") from e
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise WitnessRequestError("no empty line before the checkpoint")
        lines = head.split("\n")
        if not lines[0].startswith("old "):
            raise WitnessRequestError("the first line is 'old <size>'")
        old_size = _decimal(lines[0][4:])
        proof = []
        for line in lines[1:]:
            try:
                raw = base64.b64decode(line.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as e:
                raise WitnessRequestError("a proof line is one standard base64 hash") from e
            if len(raw) != HASH_SIZE or b64std(raw) != line:
                raise WitnessRequestError("a proof line is one standard base64 hash")
            proof.append(raw)
        if len(proof) > MAX_PROOF_LINES:
            raise WitnessRequestError("at most 63 proof lines")
        if not note:
            raise WitnessRequestError("no checkpoint")
        return cls(old_size=old_size, proof=tuple(proof), checkpoint=note)


def size_body(size: int) -> bytes:
    """The 409 body: the witness's latest cosigned size."""
    return b"%d\n" % size


def parse_size_body(body: bytes) -> int:
    text = body.decode("ascii", errors="replace")
    if not text.endswith("\n") or "\n" in text[:-1]:
        raise WitnessRequestError("a size body is one decimal line")
    return _decimal(text[:-1])


def cosignature_body(lines: Sequence[str]) -> bytes:
    """The 200 body: the witness's cosignature lines, each ending in a newline."""
    if not lines or any(not line.startswith("\u2014 ") or not line.endswith("\n") for line in lines):
        raise ValueError("a cosignature body is one or more signature lines")
    return "".join(lines).encode("utf-8")


def parse_cosignature_body(body: bytes) -> list[str]:
    """The signature lines of a 200 body (with their newlines); raise `WitnessRequestError` if it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WitnessRequestError("not UTF-8") from e
    if not text.endswith("\n"):
        raise WitnessRequestError("each signature line ends with a newline")
    lines = [line + "\n" for line in text[:-1].split("\n")]
    if any(not line.startswith("\u2014 ") for line in lines):
        raise WitnessRequestError("a cosignature body is signature lines")
    return lines
