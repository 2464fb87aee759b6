"""Test vectors of the witnessed log (witness.md), derived from the C2SP texts: `schemas/test-vectors/witness/`.

`python -m exchange.protocol.witness_vectors` rewrites `witness-v1.json`; `tests/protocol/test_witness_vectors.py`
fails when the file differs from what this produces, and checks every vector with nacl and hashlib alone, as the
folder's README tells an implementer in another language to.

Everything is deterministic: keys from fixed seeds, Ed25519 signatures (deterministic by RFC 8032), fixed times.
The witness answers are produced by the real witness (`exchange.witness` is above this floor, so the generator takes
it as a function: see `build_vectors(answer=...)`); the request and cosignature bytes by the wire code here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import nacl.signing

from exchange.protocol import merkle
from exchange.protocol.checkpoint import Checkpoint, NoteVerifier, b64std, sign_checkpoint
from exchange.protocol.cosignature import CosignerKey, cosign, cosigned_message
from exchange.protocol.encoding import b64url
from exchange.protocol.merkle import ConsistencyProof
from exchange.protocol.receipts import receipt_message
from exchange.protocol.witness import AddCheckpoint

ORIGIN = "exchange.example/audit"
WITNESS_NAME = "witness.border.example/w1"
TIMES = (1679315147, 1679315207)  # the first is the timestamp of C2SP tlog-cosignature's example
# An answer of the witness to a request body, at a time: (status, content type, body).
Answer = Callable[[bytes, int], tuple[int, str, bytes]]


def seed(label: str) -> bytes:
    return hashlib.sha256(f"exchange-witness/v1 test vectors: {label}".encode()).digest()


def log_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed("log"))


def witness_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed("witness"))


def leaves() -> list[bytes]:
    return [f'{{"entry":{i}}}'.encode() for i in range(7)]


def _note(size: int, key: nacl.signing.SigningKey | None = None) -> str:
    key = key or log_key()
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves()[:size]]
    return sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=merkle.root_of(hashes)),
                           public_key=bytes(key.verify_key), sign=lambda m: key.sign(m).signature)


def consistency(old: int, new: int) -> tuple[bytes, ...]:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves()[:new]]
    ranges = merkle.consistency_ranges(old, new)
    nodes = {(level, index): merkle.root_of(hashes[index << level:(index + 1) << level])
             for level, index in merkle.nodes_for(ranges)}
    return ConsistencyProof(old=old, new=new, hashes=merkle.proof_hashes(ranges, nodes)).hashes


def _request(name: str, description: str, body: bytes, at: int, answer: Answer) -> dict[str, Any]:
    status, content_type, response = answer(body, at)
    return {"name": name, "description": description, "time": at, "request": body.decode("utf-8"),
            "status": status, "content_type": content_type, "response": response.decode("utf-8")}


def build_vectors(answer: Answer) -> dict[str, Any]:
    """The vectors, with the witness's answers given by `answer` (a fresh witness knowing the log, in order)."""
    log, witness = log_key(), witness_key()
    log_verifier = NoteVerifier(name=ORIGIN, public_key=bytes(log.verify_key))
    cosigner = CosignerKey(name=WITNESS_NAME, public_key=bytes(witness.verify_key))
    note4, note7 = _note(4), _note(7)
    text4, text7 = note4[: note4.index("\n\n") + 1], note7[: note7.index("\n\n") + 1]
    first = AddCheckpoint(old_size=0, proof=(), checkpoint=note4).to_bytes()
    second = AddCheckpoint(old_size=4, proof=consistency(4, 7), checkpoint=note7).to_bytes()
    stranger = nacl.signing.SigningKey(seed("another log key"))
    bad_proof = AddCheckpoint(old_size=7, proof=(b"\x00" * 32,), checkpoint=_note(7)).to_bytes()
    requests = [
        _request("first", "old size 0, no proof: cosigned", first, TIMES[0], answer),
        _request("extend", "old size 4, the consistency proof to 7: cosigned", second, TIMES[1], answer),
        _request("stale_old_size", "old size 4 again: 409 with the witness's size", second, TIMES[1], answer),
        _request("same_size_same_root", "old size 7, the same checkpoint: cosigned again", AddCheckpoint(
            old_size=7, proof=(), checkpoint=note7).to_bytes(), TIMES[1], answer),
        _request("proof_with_same_size", "old size 7, the same checkpoint, but a proof line (RFC 6962: the proof "
                 "between equal sizes is empty): 422", bad_proof, TIMES[1], answer),
        _request("unknown_key", "signed by another key under the same origin: 403", AddCheckpoint(
            old_size=7, proof=(), checkpoint=_note(7, stranger)).to_bytes(), TIMES[1], answer),
        _request("unknown_origin", "a checkpoint of another origin: 404", AddCheckpoint(
            old_size=0, proof=(), checkpoint=_note(7).replace(ORIGIN, "other.example/log", 1)).to_bytes(),
            TIMES[1], answer),
        _request("old_size_too_large", "old size 8 > checkpoint size 7: 400",
                 b"old 8\n\n" + note7.encode(), TIMES[1], answer),
        _request("malformed", "no 'old' line: 400", b"7\n\n" + note7.encode(), TIMES[1], answer),
    ]
    fork = [merkle.leaf_hash(leaf) for leaf in [*leaves()[:6], b'{"entry":"forged"}']]
    forked_note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=7, root=merkle.root_of(fork)),
                                  public_key=bytes(log.verify_key), sign=lambda m: log.sign(m).signature)
    requests.append(_request("split_view", "the same size with another root, signed by the log's key: 409, kept "
                             "as evidence", AddCheckpoint(old_size=7, proof=(), checkpoint=forked_note).to_bytes(),
                             TIMES[1], answer))
    leaf_hash = merkle.leaf_hash(leaves()[3])
    message = receipt_message(index=3, leaf_hash=leaf_hash, log=ORIGIN, time=TIMES[0])
    return {
        "format": "exchange-witness-vectors/v1",
        "specifications": ["https://c2sp.org/signed-note", "https://c2sp.org/tlog-checkpoint",
                           "https://c2sp.org/tlog-cosignature", "https://c2sp.org/tlog-witness"],
        "keys": {
            "log": {"name": ORIGIN, "seed": b64std(seed("log")), "public": b64std(bytes(log.verify_key)),
                    "key_id": log_verifier.key_id.hex(), "vkey": log_verifier.vkey},
            "witness": {"name": WITNESS_NAME, "seed": b64std(seed("witness")),
                        "public": b64std(bytes(witness.verify_key)), "key_id": cosigner.key_id.hex(),
                        "vkey": cosigner.vkey},
        },
        "leaves": [leaf.decode() for leaf in leaves()],
        "checkpoints": {"4": note4, "7": note7},
        "consistency_4_7": [b64std(h) for h in consistency(4, 7)],
        "cosignatures": [
            {"checkpoint": "4", "time": TIMES[0], "message": cosigned_message(text4, TIMES[0]).decode(),
             "line": cosign(text4, name=WITNESS_NAME, public_key=bytes(witness.verify_key), timestamp=TIMES[0],
                            sign=lambda m: witness.sign(m).signature)},
            {"checkpoint": "7", "time": TIMES[1], "message": cosigned_message(text7, TIMES[1]).decode(),
             "line": cosign(text7, name=WITNESS_NAME, public_key=bytes(witness.verify_key), timestamp=TIMES[1],
                            sign=lambda m: witness.sign(m).signature)},
        ],
        "requests": requests,
        "receipt": {"index": 3, "leaf_hash": b64url(leaf_hash), "log": ORIGIN, "time": TIMES[0],
                    "message_b64": b64url(message), "sig": b64url(log.sign(message).signature)},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
