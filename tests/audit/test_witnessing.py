"""witness.md: checkpoints by the service (one signer at a time), signed receipts, witnesses, verifiers' quorum.

Against the released app (tokens, DPoP, envelopes) over `httpx.WSGITransport`, with three in-process witnesses
(`exchange.witness`, each with its own key and state) reached through a WSGI transport routed by host name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from exchange.audit import recorder
from exchange.audit.models import AuditCheckpoint, AuditCosignature, AuditEntry, AuditHead, AuditNode
from exchange.audit.services import AuditLog
from exchange.audit.witnessing import Checkpointer, WitnessConfig, make_checkpointer, parse_witnesses, wait_for
from exchange.cli import main
from exchange.clients.services import ClientService
from exchange.db import utcnow
from exchange.partner.api import ExchangeClient
from exchange.partner.envelopes import PartnerKeys
from exchange.partner.errors import ResponseVerificationError
from exchange.protocol import merkle
from exchange.protocol.cosignature import QuorumNotMet, WitnessPolicy, verify_witnessed
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from exchange.protocol.receipts import SignedReceipt, read_receipts
from exchange.witness.http import make_wsgi_app
from exchange.witness.services import Witness, init_folder
from exchange.witness.state import WitnessState
from tests.audit.conftest import engine_of, fill
from tests.conftest import returnee_body

ISSUER = "http://localhost"
AGENCIES = ("interior", "border", "prosecutor")


class Witnesses:
    """One witness per agency, each in its own folder, served in-process; `down` ones refuse to connect."""

    def __init__(self, root: Path, log_vkey: str) -> None:
        self.witnesses: dict[str, Witness] = {}
        self.down: set[str] = set()
        for agency in AGENCIES:
            folder = root / f"witness-{agency}"
            identity = init_folder(folder, name=f"witness.{agency}.test/w1")
            WitnessState(folder / "state.db").add_log(origin=log_vkey.split("+", 1)[0], vkey=log_vkey)
            self.witnesses[agency] = Witness.open(folder)
            assert identity.public == self.witnesses[agency].identity.public
        self.apps = {f"{agency}.witness.test": make_wsgi_app(w) for agency, w in self.witnesses.items()}

    def config(self) -> str:
        return json.dumps([{"name": w.identity.name, "url": f"http://{agency}.witness.test",
                            "vkey": w.identity.public.vkey} for agency, w in self.witnesses.items()])

    def policy(self, quorum: int) -> WitnessPolicy:
        return WitnessPolicy(witnesses=tuple(w.identity.public for w in self.witnesses.values()), quorum=quorum)

    def transport(self) -> httpx.BaseTransport:
        witnesses = self

        class Routed(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                host = request.url.host
                if host.split(".")[0] in witnesses.down:
                    raise httpx.ConnectError("connection refused", request=request)
                return httpx.WSGITransport(app=witnesses.apps[host]).handle_request(request)

        return Routed()


@pytest.fixture
def log_vkey(file_keys: Any, make_app: Callable[..., Flask]) -> str:
    probe = make_app(KEYSTORE=file_keys, KEYS_DIR=str(file_keys.directory))
    key = recorder.verifiers(probe)[0]
    return key.vkey


@pytest.fixture
def witnesses(tmp_path: Path, log_vkey: str) -> Witnesses:
    return Witnesses(tmp_path, log_vkey)


@pytest.fixture
def app(make_app: Callable[..., Flask], file_keys: Any, witnesses: Witnesses) -> Flask:
    return make_app(KEYSTORE=file_keys, KEYS_DIR=str(file_keys.directory), AUTHENTICATOR=None, ISSUER=ISSUER,
                    UNSAFE_PLAIN_JSON_BODIES=False, WITNESSES=witnesses.config(), AUDIT_CHECKPOINT_SECONDS=10)


@pytest.fixture
def checkpointer(app: Flask, witnesses: Witnesses) -> Checkpointer:
    return make_checkpointer(app, transport=witnesses.transport())


@pytest.fixture
def connect(app: Flask) -> Iterator[Callable[..., ExchangeClient]]:
    clients: list[ExchangeClient] = []

    def make(agency: str, **options: Any) -> ExchangeClient:
        keys = PartnerKeys.generate()
        client_id = f"{agency}-{len(clients) + 1}"
        with Session(engine_of(app)) as session:
            ClientService(session=session).register(
                {"client_id": client_id, "agency": agency, "name": f"{agency} test",
                 "scopes": sorted(AGENCY_SCOPES[agency]), "keys": keys.registration()}, officer="TJ-SEC-1")
            session.commit()
        client = ExchangeClient(ISSUER, client_id=client_id, agency=agency, keys=keys,
                                purpose=min(PURPOSES[agency]), transport=httpx.WSGITransport(app=app), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def witness_round(checkpointer: Checkpointer, witnesses: Witnesses, *, later: float = 0) -> AuditCheckpoint | None:
    """One round of the background thread, done in the test's own thread: sign if due, then submit to each."""
    row = checkpointer.tick(utcnow() + timedelta(seconds=later))
    with httpx.Client(transport=witnesses.transport()) as http:
        for witness in checkpointer.witnesses:
            checkpointer.submit_quietly(witness, http)
    return row


def rebuild_tree(app: Flask, *, index: int, leaf: bytes) -> None:
    """What an operator with write access to the database can do: replace an entry and recompute every stored
    hash (nodes and head), no key needed."""
    with Session(engine_of(app)) as session:
        session.execute(update(AuditEntry).where(AuditEntry.idx == index).values(leaf=leaf))
        leaves = list(session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx)))
        frontier = merkle.Frontier()
        nodes = [node for stored in leaves for node in frontier.append(merkle.leaf_hash(stored))]
        session.execute(delete(AuditNode))
        session.execute(AuditNode.__table__.insert(), [{"level": level, "idx": i, "hash": h}
                                                       for (level, i), h in nodes])
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(size=frontier.size,
                                                                        frontier=frontier.encode()))
        session.commit()


def forged(leaf: bytes) -> bytes:
    entry = json.loads(leaf)
    entry["officer"] = "SOMEONE-ELSE"
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_at(app: Flask, index: int) -> bytes:
    with Session(engine_of(app)) as session:
        leaf: bytes = session.scalars(select(AuditEntry.leaf).where(AuditEntry.idx == index)).one()
        return leaf


# ---- §2 signed receipts ---------------------------------------------------------------------------------------------


def test_every_response_carries_a_signed_receipt_the_client_verifies_and_keeps(
        app: Flask, connect: Callable[..., ExchangeClient], tmp_path: Path) -> None:
    interior = connect("interior", receipts=tmp_path / "receipts").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    audit = created.audit
    assert audit is not None and audit.sig is not None and audit.log == "exchange.local/audit"
    kept = read_receipts(tmp_path / "receipts")
    assert [r.index for _, r in kept] == [audit.index]
    receipt = kept[0][1]
    assert receipt.leaf_hash == b64url_decode(audit.leaf_hash) and receipt.time == audit.time
    keys = [v.public_key for v in recorder.verifiers(app)]
    assert receipt.verify(keys) is receipt
    forged_receipt = SignedReceipt(index=receipt.index + 1, leaf_hash=receipt.leaf_hash, time=receipt.time,
                                   log=receipt.log, sig=receipt.sig)
    with pytest.raises(Exception, match="not signed by a trusted audit key"):
        forged_receipt.verify(keys)


def test_the_audit_headers_carry_the_signed_receipt(app: Flask) -> None:
    with app.test_client() as client:
        response = client.get("/v1/returnees")  # unauthenticated: a deny entry, recorded and receipted
    assert response.status_code == 401
    receipt = SignedReceipt.from_headers(response.headers)
    assert receipt.verify([v.public_key for v in recorder.verifiers(app)]).index == int(response.headers["Audit-Index"])


def test_an_edit_of_the_newest_entry_after_its_receipt_is_detected_from_the_receipt(
        app: Flask, connect: Callable[..., ExchangeClient], checkpointer: Checkpointer, witnesses: Witnesses,
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    interior = connect("interior", receipts=tmp_path / "receipts").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    index = created.audit.index
    # The operator rewrites the entry (the newest) and recomputes the tree; the service signs the forgery, and the
    # witnesses, who never saw the honest version, cosign it: neither the log nor they can tell.
    rebuild_tree(app, index=index, leaf=forged(leaf_at(app, index)))
    assert witness_round(checkpointer, witnesses) is not None
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_OFFICER", "TJ-AUD-007")
    runner = CliRunner()
    state = str(tmp_path / "state.json")
    plain = runner.invoke(main, ["audit", "verify", "--state", state], catch_exceptions=False)
    assert plain.exit_code == 0, plain.output  # the threat: the log alone verifies
    # The receipt the partner kept contradicts it, and names itself.
    checked = runner.invoke(main, ["audit", "verify", "--state", str(tmp_path / "other.json"), "--receipts",
                                   str(tmp_path / "receipts")], catch_exceptions=False)
    assert checked.exit_code == 1, checked.output
    name = read_receipts(tmp_path / "receipts")[0][0].name
    assert name in checked.output and "contradicts" in checked.output and f"entry {index}" in checked.output
    # The partner library, checking its receipt online, finds it too.
    with pytest.raises(ResponseVerificationError) as caught:
        interior.audit.verify(created.audit)
    assert caught.value.code == "audit_proof_invalid"


def test_kept_receipts_that_match_the_log_pass(
        app: Flask, connect: Callable[..., ExchangeClient], checkpointer: Checkpointer, witnesses: Witnesses,
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    interior = connect("interior", receipts=tmp_path / "receipts").using(purpose="register-maintenance")
    interior.returnees.create(returnee_body())
    witness_round(checkpointer, witnesses)
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_OFFICER", "TJ-AUD-007")
    vkeys = [w.identity.public.vkey for w in witnesses.witnesses.values()]
    result = CliRunner().invoke(main, ["audit", "verify", "--state", str(tmp_path / "s.json"), "--receipts",
                                       str(tmp_path / "receipts"), "--quorum", "2",
                                       *[arg for v in vkeys for arg in ("--witness", v)]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 kept receipt(s) match the log" in result.output and "witnessed by 3" in result.output


# ---- §3 witnesses, §4 quorum ----------------------------------------------------------------------------------------


def test_the_service_collects_cosignatures_and_serves_them(
        app: Flask, connect: Callable[..., ExchangeClient], checkpointer: Checkpointer, witnesses: Witnesses) -> None:
    interior = connect("interior", witnesses=witnesses.policy(3)).using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    row = witness_round(checkpointer, witnesses)
    assert row is not None and row.size > created.audit.index  # type: ignore[union-attr]
    with Session(engine_of(app)) as session:
        assert len(AuditLog(session=session).cosignature_lines(row.size)) == 3
    auditor = connect("auditor")
    note = auditor.audit.checkpoint()
    signed, cosigned = verify_witnessed(note, recorder.verifiers(app), origin="exchange.local/audit",
                                        policy=witnesses.policy(3))
    assert signed.size == row.size and {c.name for c in cosigned} == {
        f"witness.{a}.test/w1" for a in AGENCIES}
    assert interior.audit.verify(created.audit).size == row.size  # type: ignore[arg-type]
    for witness in witnesses.witnesses.values():
        assert witness.state.log("exchange.local/audit").size == row.size  # type: ignore[union-attr]


def test_a_split_view_is_refused_by_the_witnesses_and_by_a_verifier_requiring_a_quorum(
        app: Flask, connect: Callable[..., ExchangeClient], checkpointer: Checkpointer, witnesses: Witnesses) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    interior.returnees.create(returnee_body())
    witnessed = witness_round(checkpointer, witnesses)
    assert witnessed is not None
    # The exchange now signs another history for someone: an already witnessed entry rewritten, the tree recomputed.
    rebuild_tree(app, index=1, leaf=forged(leaf_at(app, 1)))
    fill(app, 2, start=100)
    other = witness_round(checkpointer, witnesses, later=10)
    assert other is not None and other.size > witnessed.size
    for witness in witnesses.witnesses.values():  # each refused it and keeps it as evidence
        evidence = witness.state.evidence()
        assert [(e.reason, e.witnessed_size) for e in evidence] == [
            ("the consistency proof does not verify", witnessed.size)]
        assert other.note.encode() in evidence[0].request
        assert witness.state.log("exchange.local/audit").size == witnessed.size  # type: ignore[union-attr]
    with Session(engine_of(app)) as session:
        assert AuditLog(session=session).cosignature_lines(other.size) == []
    with pytest.raises(QuorumNotMet):
        verify_witnessed(other.note, recorder.verifiers(app), origin="exchange.local/audit",
                         policy=witnesses.policy(2))
    # what the exchange serves is still the witnessed checkpoint
    note = connect("auditor").audit.checkpoint()
    assert verify_witnessed(note, recorder.verifiers(app), origin="exchange.local/audit",
                            policy=witnesses.policy(3))[0].size == witnessed.size


def test_a_witness_that_is_down_costs_nothing_but_its_cosignature(
        app: Flask, connect: Callable[..., ExchangeClient], checkpointer: Checkpointer, witnesses: Witnesses) -> None:
    witnesses.down.add("border")
    interior = connect("interior", witnesses=witnesses.policy(2)).using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    row = witness_round(checkpointer, witnesses)
    assert row is not None
    with Session(engine_of(app)) as session:
        lines = AuditLog(session=session).cosignature_lines(row.size)
    assert len(lines) == 2 and not any("witness.border.test" in line for line in lines)
    assert interior.audit.verify(created.audit).size == row.size  # type: ignore[arg-type]
    strict = connect("border", witnesses=witnesses.policy(3))
    read = strict.returnees.get(created.data["id"])
    witness_round(checkpointer, witnesses, later=10)
    with pytest.raises(ResponseVerificationError) as caught:
        strict.audit.verify(read.audit)  # type: ignore[arg-type]
    assert caught.value.code == "audit_proof_invalid"
    witnesses.down.clear()  # back: it catches up from size 0 (a 409 tells the exchange its size first)
    witness_round(checkpointer, witnesses, later=10)
    with Session(engine_of(app)) as session:
        latest = AuditLog(session=session).latest_checkpoint()
        assert latest is not None and len(AuditLog(session=session).cosignature_lines(latest.size)) == 3


def test_the_background_thread_signs_while_every_witness_is_down(
        make_app: Callable[..., Flask], file_keys: Any, witnesses: Witnesses) -> None:
    """Calls answer as usual while the checkpointer thread runs against witnesses that do not answer at all."""
    dead = json.dumps([{"url": "http://127.0.0.1:9", "vkey": w.identity.public.vkey}
                       for w in witnesses.witnesses.values()])
    app = make_app(KEYSTORE=file_keys, KEYS_DIR=str(file_keys.directory), WITNESSES=dead, AUDIT_BACKGROUND=True,
                   AUDIT_CHECKPOINT_SECONDS=1, WITNESS_TIMEOUT=1)
    try:
        with app.test_client() as client:
            statuses = [client.get("/v1/returnees").status_code for _ in range(5)]
        assert statuses == [401] * 5  # recorded and answered: no witness on the way
        with Session(engine_of(app)) as session:
            size = AuditLog(session=session).size()

        def signed() -> bool:
            with Session(engine_of(app)) as session:
                latest = AuditLog(session=session).latest_checkpoint()
                return latest is not None and latest.size >= size

        assert wait_for(signed, timeout=30)
    finally:
        app.extensions["exchange.checkpointer.stop"].set()
        app.extensions["exchange.checkpointer.thread"].join()


# ---- §1 one signer at a time ----------------------------------------------------------------------------------------


def test_one_signer_at_a_time_and_a_checkpoint_every_interval(app: Flask) -> None:
    """Four workers share the database (on PostgreSQL, truly in parallel); the clock is the test's."""
    workers = [make_checkpointer(app, witnesses=(), holder=f"worker-{n}") for n in range(4)]
    now = utcnow()
    signers: list[set[str]] = []

    def round_(active: list[Checkpointer], at: Any) -> set[str]:
        signed: set[str] = set()
        lock = threading.Lock()

        def work(worker: Checkpointer) -> None:
            if worker.tick(at) is not None:
                with lock:
                    signed.add(worker.holder)

        threads = [threading.Thread(target=work, args=(w,)) for w in active]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return signed

    for step in range(6):
        fill(app, 3, start=step * 3)
        now += timedelta(seconds=5)  # half the interval: every round is due
        signers.append(round_(workers, now))
        with Session(engine_of(app)) as session:
            log_ = AuditLog(session=session)
            latest = log_.latest_checkpoint()
            assert latest is not None and latest.size == log_.size() == (step + 1) * 3
    assert all(len(s) == 1 for s in signers) and len(set().union(*signers)) == 1  # one holder, renewing
    leader = next(iter(signers[0]))
    survivors = [w for w in workers if w.holder != leader]  # the leader's process dies
    fill(app, 3, start=100)
    assert round_(survivors, now + timedelta(seconds=5)) == set()  # its lease still runs
    took_over = round_(survivors, now + timedelta(seconds=10))  # lapsed: exactly one other worker takes over
    assert len(took_over) == 1 and leader not in took_over
    with Session(engine_of(app)) as session:
        sizes = [s for s in session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size))]
        assert sizes == [3, 6, 9, 12, 15, 18, 21]
        assert session.scalar(select(AuditCosignature.checkpoint_size)) is None


def test_witnesses_configuration_is_checked() -> None:
    assert parse_witnesses(None) == []
    for bad in ("{}", "[1]", '[{"url": "http://w", "vkey": "x+00000000+AAAA"}]',
                '[{"url": "ftp://w", "vkey": "' + "n+00000000+" + "A" * 44 + '"}]'):
        with pytest.raises(RuntimeError):
            parse_witnesses(bad)
    assert WitnessConfig  # the parsed form
