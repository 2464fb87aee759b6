"""The witness (witness.md §3, C2SP tlog-witness): each answer of add-checkpoint, its state, its evidence."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from exchange.cli import main
from exchange.protocol import merkle
from exchange.protocol.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from exchange.protocol.cosignature import CosignerKey, QuorumNotMet, WitnessPolicy, cosignatures, verify_witnessed
from exchange.protocol.merkle import ConsistencyProof
from exchange.protocol.witness import AddCheckpoint, parse_cosignature_body
from exchange.witness.errors import (
    BadSubmission,
    InconsistentCheckpoint,
    SizeConflict,
    UnknownLog,
    UntrustedCheckpoint,
)
from exchange.witness.http import make_wsgi_app
from exchange.witness.services import Witness, init_folder
from exchange.witness.state import WitnessState

ORIGIN = "exchange.test/audit"
NOW = 1_800_000_000


class Log:
    """A log in memory, signed by its own key: what the exchange publishes, or a forger holding its key."""

    def __init__(self, key: nacl.signing.SigningKey, leaves: list[bytes] | None = None) -> None:
        self.key = key
        self.leaves = list(leaves or [])

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(name=ORIGIN, public_key=bytes(self.key.verify_key))

    def grow(self, count: int, prefix: bytes = b"entry") -> Log:
        self.leaves += [b"%s-%d" % (prefix, len(self.leaves) + i) for i in range(count)]
        return self

    def hashes(self, size: int | None = None) -> list[bytes]:
        return [merkle.leaf_hash(leaf) for leaf in self.leaves[:size]]

    def note(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        checkpoint = Checkpoint(origin=ORIGIN, size=size, root=merkle.root_of(self.hashes(size)))
        return sign_checkpoint(checkpoint, public_key=bytes(self.key.verify_key),
                               sign=lambda m: self.key.sign(m).signature)

    def proof(self, old: int, new: int | None = None) -> tuple[bytes, ...]:
        new = len(self.leaves) if new is None else new
        if old == 0:
            return ()
        return _consistency(self.hashes(new), old)

    def request(self, old: int, size: int | None = None) -> bytes:
        return AddCheckpoint(old_size=old, proof=self.proof(old, size), checkpoint=self.note(size)).to_bytes()


def _consistency(hashes: list[bytes], old: int) -> tuple[bytes, ...]:
    """RFC 6962 consistency proof from the nodes of a tree held in memory (the exchange reads stored nodes)."""
    ranges = merkle.consistency_ranges(old, len(hashes))
    nodes: dict[merkle.Node, bytes] = {}
    for level, index in merkle.nodes_for(ranges):
        start, end = index << level, (index + 1) << level
        nodes[(level, index)] = merkle.root_of(hashes[start:end])
    proof = ConsistencyProof(old=old, new=len(hashes), hashes=merkle.proof_hashes(ranges, nodes))
    return proof.hashes


@pytest.fixture
def log() -> Log:
    return Log(nacl.signing.SigningKey(b"\x07" * 32))


@pytest.fixture
def folder(tmp_path: Path, log: Log) -> Path:
    folder = tmp_path / "witness"
    init_folder(folder, name="witness.border.test/w1")
    WitnessState(folder / "state.db").add_log(origin=ORIGIN, vkey=log.verifier.vkey)
    return folder


@pytest.fixture
def witness(folder: Path) -> Witness:
    return Witness.open(folder, clock=lambda: NOW)


def cosigned(witness: Witness, log: Log, body: bytes, size: int | None = None) -> str:
    """The note with the witness's cosignature appended, after checking it verifies."""
    lines = parse_cosignature_body(witness.add_checkpoint(body))
    note = log.note(size) + "".join(lines)
    policy = WitnessPolicy(witnesses=(witness.identity.public,), quorum=1)
    _, valid = verify_witnessed(note, [log.verifier], origin=ORIGIN, policy=policy)
    assert [c.timestamp for c in valid] == [NOW]
    return note


def test_the_first_checkpoint_is_cosigned_and_then_only_its_extensions(witness: Witness, log: Log) -> None:
    cosigned(witness, log.grow(5), log.request(0))
    assert witness.state.log(ORIGIN).size == 5  # type: ignore[union-attr]
    cosigned(witness, log.grow(3), log.request(5))
    state = witness.state.log(ORIGIN)
    assert state is not None and state.size == 8 and state.root == merkle.root_of(log.hashes())
    assert witness.state.evidence() == []


def test_a_wrong_old_size_is_409_with_the_witness_size(witness: Witness, log: Log) -> None:
    cosigned(witness, log.grow(4), log.request(0))
    log.grow(2)
    with pytest.raises(SizeConflict) as caught:
        witness.add_checkpoint(log.request(0))
    assert (caught.value.status, caught.value.body, caught.value.content_type) == (409, b"4\n", "text/x.tlog.size")
    cosigned(witness, log, log.request(4))  # the submitter retries from the size it was told


def test_never_a_smaller_tree(witness: Witness, log: Log) -> None:
    cosigned(witness, log.grow(6), log.request(0))
    with pytest.raises(BadSubmission) as caught:  # old size 6 > checkpoint size 3
        witness.add_checkpoint(AddCheckpoint(old_size=6, proof=(), checkpoint=log.note(3)).to_bytes())
    assert caught.value.status == 400
    with pytest.raises(SizeConflict):
        witness.add_checkpoint(log.request(0, 3))
    assert witness.state.log(ORIGIN).size == 6  # type: ignore[union-attr]


def test_a_split_view_is_refused_and_kept_as_evidence(witness: Witness, log: Log) -> None:
    """The exchange (its key) signs two trees that do not extend each other: the honest witness cosigns the first
    it sees and refuses the other, keeping the signed checkpoint; a verifier requiring its cosignature rejects it."""
    honest = log.grow(5)
    cosigned(witness, honest, honest.request(0))
    other = Log(log.key, honest.leaves[:4]).grow(3, prefix=b"forged")  # entry 4 rewritten, then grown
    body = AddCheckpoint(old_size=5, proof=_consistency(other.hashes(), 5), checkpoint=other.note()).to_bytes()
    with pytest.raises(InconsistentCheckpoint) as caught:
        witness.add_checkpoint(body)
    assert (caught.value.status, caught.value.code) == (422, "inconsistent_checkpoint")
    same_size = Log(log.key, honest.leaves[:4]).grow(1, prefix=b"forged")
    with pytest.raises(SizeConflict):
        witness.add_checkpoint(AddCheckpoint(old_size=5, proof=(), checkpoint=same_size.note()).to_bytes())
    evidence = witness.state.evidence()
    assert [(e.reason, e.witnessed_size) for e in evidence] == [
        ("the consistency proof does not verify", 5), ("same size, another root", 5)]
    assert evidence[0].request == body
    assert witness.state.log(ORIGIN).root == merkle.root_of(honest.hashes())  # type: ignore[union-attr]
    policy = WitnessPolicy(witnesses=(witness.identity.public,), quorum=1)
    with pytest.raises(QuorumNotMet):
        verify_witnessed(other.note(), [log.verifier], origin=ORIGIN, policy=policy)


def test_unknown_logs_and_keys(witness: Witness, log: Log) -> None:
    stranger = Log(nacl.signing.SigningKey(b"\x09" * 32)).grow(2)
    with pytest.raises(UntrustedCheckpoint) as caught:
        witness.add_checkpoint(stranger.request(0))
    assert (caught.value.status, caught.value.code) == (403, "untrusted_checkpoint")
    other_origin = log.grow(2).note().replace(ORIGIN, "other.test/log", 1)
    with pytest.raises(UnknownLog) as unknown:
        witness.add_checkpoint(AddCheckpoint(old_size=0, proof=(), checkpoint=other_origin).to_bytes())
    assert unknown.value.status == 404


@pytest.mark.parametrize("body", [b"", b"old 01\n\n", b"new 0\n\nx", b"old 0\nnot-base64\n\nx", b"old 0\n",
                                  b"\xff\xfe", b"old 0\n\n"])
def test_malformed_requests_are_400(witness: Witness, body: bytes) -> None:
    with pytest.raises(BadSubmission):
        witness.add_checkpoint(body)
    assert witness.state.log(ORIGIN).size == 0  # type: ignore[union-attr]


def test_a_bad_proof_from_zero_is_422(witness: Witness, log: Log) -> None:
    log.grow(4)
    with pytest.raises(InconsistentCheckpoint):
        witness.add_checkpoint(AddCheckpoint(old_size=0, proof=(b"\0" * 32,), checkpoint=log.note()).to_bytes())


def test_a_restarted_witness_keeps_its_state_and_key(folder: Path, log: Log) -> None:
    first = Witness.open(folder, clock=lambda: NOW)
    cosigned(first, log.grow(7), log.request(0))
    again = Witness.open(folder, clock=lambda: NOW)  # a new process: the same key, the same state
    assert again.identity.public == first.identity.public
    with pytest.raises(SizeConflict) as caught:
        again.add_checkpoint(log.grow(1).request(0))
    assert caught.value.size == 7
    cosigned(again, log, log.request(7))


def test_over_http(witness: Witness, log: Log) -> None:
    client = Client(make_wsgi_app(witness))
    response = client.post("/add-checkpoint", data=log.grow(3).request(0))
    assert response.status_code == 200
    found = cosignatures(log.note() + response.get_data(as_text=True), [witness.identity.public])
    assert [c.name for c in found] == ["witness.border.test/w1"]
    conflict = client.post("/add-checkpoint", data=log.request(0))
    assert (conflict.status_code, conflict.headers["Content-Type"], conflict.data) == (409, "text/x.tlog.size",
                                                                                        b"3\n")
    assert client.get("/add-checkpoint").status_code == 405
    assert client.post("/add-checkpoint", data=b"old 0\n").status_code == 400
    assert client.get("/").get_data(as_text=True).strip() == witness.identity.public.vkey


def test_the_cli(tmp_path: Path, log: Log) -> None:
    runner = CliRunner()
    folder = tmp_path / "w"
    result = runner.invoke(main, ["witness", "init", "--dir", str(folder), "--name", "witness.test/w2",
                                  "--log", log.verifier.vkey])
    assert result.exit_code == 0, result.output
    vkey = result.output.strip()
    assert CosignerKey.from_vkey(vkey).name == "witness.test/w2"
    again = runner.invoke(main, ["witness", "init", "--dir", str(folder), "--name", "witness.test/w2"])
    assert again.exit_code == 2 and "already holds a witness" in again.output
    Witness.open(folder).add_checkpoint(log.grow(2).request(0))
    status = runner.invoke(main, ["witness", "status", "--dir", str(folder)])
    assert status.exit_code == 0
    assert vkey in status.output and f"log {ORIGIN}: cosigned size 2" in status.output
    assert "evidence kept: 0" in status.output
    rotated = Log(nacl.signing.SigningKey(b"\x08" * 32), log.leaves)
    added = runner.invoke(main, ["witness", "add-log", "--dir", str(folder), "--log", rotated.verifier.vkey])
    assert added.exit_code == 0, added.output
    Witness.open(folder).add_checkpoint(rotated.grow(1).request(2))  # the new key, the state kept
