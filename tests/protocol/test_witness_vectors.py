"""The witness vectors (`schemas/test-vectors/witness/witness-v1.json`): reproduced exactly by the code (the wire and
the real witness), then checked by the README with nacl, hashlib and base64 alone, as another implementation would."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from typing import Any

import nacl.signing
import pytest

from exchange.protocol import witness_vectors
from exchange.witness.vectors import PATH, build

DOC: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))
EM_DASH = "\u2014 "


def test_the_published_file_is_exactly_what_the_code_produces() -> None:
    assert witness_vectors.render(build()) == PATH.read_text(encoding="utf-8"), (
        "schemas/test-vectors/witness/witness-v1.json is stale: run `python -m exchange.witness.vectors`")


def _key(entry: dict[str, Any], label: str, kind: int) -> nacl.signing.VerifyKey:
    assert base64.b64decode(entry["seed"]) == hashlib.sha256(
        f"exchange-witness/v1 test vectors: {label}".encode()).digest()
    public = base64.b64decode(entry["public"])
    assert bytes(nacl.signing.SigningKey(base64.b64decode(entry["seed"])).verify_key) == public
    key_id = hashlib.sha256(entry["name"].encode() + b"\n" + bytes([kind]) + public).digest()[:4]
    assert entry["key_id"] == key_id.hex()
    assert entry["vkey"] == f"{entry['name']}+{key_id.hex()}+{base64.b64encode(bytes([kind]) + public).decode()}"
    return nacl.signing.VerifyKey(public)


LOG = _key(DOC["keys"]["log"], "log", 0x01)
WITNESS = _key(DOC["keys"]["witness"], "witness", 0x04)


def _mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:split]) + _mth(hashes[split:])).digest()


def _text_and_lines(note: str) -> tuple[str, list[str]]:
    text, _, sigs = note.partition("\n\n")
    return text + "\n", sigs.splitlines()


@pytest.mark.parametrize("size", ["4", "7"])
def test_checkpoints_are_signed_notes_of_the_tree(size: str) -> None:
    text, lines = _text_and_lines(DOC["checkpoints"][size])
    hashes = [hashlib.sha256(b"\x00" + leaf.encode()).digest() for leaf in DOC["leaves"][: int(size)]]
    assert text == f"{DOC['keys']['log']['name']}\n{size}\n{base64.b64encode(_mth(hashes)).decode()}\n"
    (line,) = lines
    name, blob = line.removeprefix(EM_DASH).split(" ")
    raw = base64.b64decode(blob)
    assert name == DOC["keys"]["log"]["name"] and raw[:4].hex() == DOC["keys"]["log"]["key_id"]
    LOG.verify(text.encode(), raw[4:])


@pytest.mark.parametrize("cosignature", DOC["cosignatures"], ids=lambda c: c["checkpoint"])
def test_cosignatures_by_the_c2sp_text(cosignature: dict[str, Any]) -> None:
    text, _ = _text_and_lines(DOC["checkpoints"][cosignature["checkpoint"]])
    assert cosignature["message"] == f"cosignature/v1\ntime {cosignature['time']}\n{text}"
    name, blob = cosignature["line"].removeprefix(EM_DASH).removesuffix("\n").split(" ")
    raw = base64.b64decode(blob)
    assert name == DOC["keys"]["witness"]["name"] and len(raw) == 4 + 8 + 64
    assert raw[:4].hex() == DOC["keys"]["witness"]["key_id"]
    assert struct.unpack(">Q", raw[4:12])[0] == cosignature["time"]
    WITNESS.verify(cosignature["message"].encode(), raw[12:])


def test_the_c2sp_example_cosignature_carries_its_example_time() -> None:
    """tlog-cosignature's example line and the time line of its example message agree: our layout is theirs."""
    example = "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    assert struct.unpack(">Q", base64.b64decode(example)[4:12])[0] == 1679315147 == DOC["cosignatures"][0]["time"]


def test_requests_and_answers_by_the_c2sp_text() -> None:
    seen = {}
    for vector in DOC["requests"]:
        seen[vector["name"]] = vector
        head, _, note = vector["request"].partition("\n\n")
        assert head.split("\n")[0].startswith("old ") or vector["name"] == "malformed"
        if vector["status"] == 200:
            text, _ = _text_and_lines(note)
            for line in vector["response"].splitlines():
                raw = base64.b64decode(line.removeprefix(EM_DASH).split(" ")[1])
                timestamp = struct.unpack(">Q", raw[4:12])[0]
                assert timestamp == vector["time"]
                WITNESS.verify(f"cosignature/v1\ntime {timestamp}\n{text}".encode(), raw[12:])
        elif vector["status"] == 409:
            assert vector["content_type"] == "text/x.tlog.size" and vector["response"] == "7\n"
    assert [seen[n]["status"] for n in ("first", "extend", "stale_old_size", "same_size_same_root",
                                        "proof_with_same_size", "unknown_key", "unknown_origin",
                                        "old_size_too_large", "malformed", "split_view")] == [
        200, 200, 409, 200, 422, 403, 404, 400, 400, 409]
    proof = seen["extend"]["request"].partition("\n\n")[0].split("\n")[1:]
    assert proof == DOC["consistency_4_7"]


def test_the_receipt_by_witness_md() -> None:
    receipt = DOC["receipt"]
    leaf_hash = hashlib.sha256(b"\x00" + DOC["leaves"][receipt["index"]].encode()).digest()
    b64 = base64.urlsafe_b64encode(leaf_hash).rstrip(b"=").decode()
    assert receipt["leaf_hash"] == b64
    members = json.dumps({"index": receipt["index"], "leaf_hash": b64, "log": receipt["log"],
                          "time": receipt["time"]}, sort_keys=True, separators=(",", ":"))
    message = b"exchange-receipt/v1\x00" + members.encode()
    assert base64.urlsafe_b64decode(receipt["message_b64"] + "==") == message
    LOG.verify(message, base64.urlsafe_b64decode(receipt["sig"] + "=="))
