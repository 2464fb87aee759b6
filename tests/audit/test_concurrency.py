"""Four processes append to one PostgreSQL log at once, as four gunicorn workers (or four machines) would: entries
queued and sequenced after their commit as every API call does it (some left queued, as by a worker that crashed
after its commit), synchronous single entries and batches, each in its own transaction, with checkpoints signed in
between. The log ends gap-free, every index given once, and its root equals a recomputation from the leaves."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter

import nacl.signing
import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.audit.recorder import record_event
from exchange.audit.sequencing import QueuedEntry
from exchange.audit.services import AuditLog
from exchange.audit.verify import DatabaseSource, verify_log
from exchange.db import make_engine
from exchange.identity import Caller
from exchange.keys.store import ExchangeKey
from exchange.protocol import merkle
from exchange.protocol.checkpoint import NoteVerifier
from tests.audit.conftest import engine_of, event, stored_entries, stored_leaves, stored_nodes

WORKERS = 4
ROUNDS = 150  # per worker: two queued entries, one single entry and a batch of four per round -> 1050 per worker
PER_ROUND = 7
ORIGIN = "exchange.test/audit"
SEED = bytes(range(32))

pytestmark = [
    pytest.mark.concurrency,
    pytest.mark.skipif(not os.environ.get("EXCHANGE_TEST_DATABASE_URL"),
                       reason="needs PostgreSQL (EXCHANGE_TEST_DATABASE_URL): SQLite has a single writer per file"),
]


def audit_key() -> ExchangeKey:
    return ExchangeKey(purpose="audit", created_at=0, signing_key=nacl.signing.SigningKey(SEED))


def append_worker(url: str, worker: int) -> list[int]:
    """One process: ROUNDS x (two entries queued and sequenced as an API call does, a single entry through
    record_event, then a batch of four), a transaction each; every 10th round one queued entry is left unsequenced
    (a crash after its commit: any later integration takes it) and looked for at the end; worker 0 also signs a
    checkpoint every 25 rounds."""
    engine = make_engine(url)
    indices: list[int] = []
    orphans: list[QueuedEntry] = []
    caller = Caller(agency="border", client_id=f"worker-{worker}", purpose="border-screening")
    try:
        with Session(engine) as session:
            log = AuditLog(session=session)
            for round_ in range(ROUNDS):
                for call in range(2):
                    [queued] = log.enqueue([event(worker * 100_000 + round_ * 10 + call)])
                    session.commit()
                    if call == 1 and round_ % 10 == 9:
                        orphans.append(queued)  # "crashed" between its commit and its sequencing
                        continue
                    indices.append(log.settle(queued).index)
                entry = record_event(session, action="consult", outcome="success", status=200, caller=caller,
                                     request_id=f"{worker}-{round_}", method="GET", path="/v1/returnees")
                session.commit()
                batch = log.append([event(worker * 100_000 + round_ * 10 + 2 + n) for n in range(4)])
                session.commit()
                indices += [entry.index, *(e.index for e in batch)]
                assert [e.index for e in batch] == list(range(batch[0].index, batch[0].index + 4))
                if worker == 0 and round_ % 25 == 24:
                    log.checkpoint(signer=audit_key(), origin=ORIGIN)
                    session.commit()
            for orphan in orphans:  # sequenced meanwhile by any call, append or checkpoint, or now
                indices.append(log.settle(orphan).index)
    finally:
        engine.dispose()
    return indices


def test_four_processes_append_without_gaps_duplicates_or_forks(app: Flask, database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        results = pool.starmap(append_worker, [(database_url, w) for w in range(WORKERS)])
    total = WORKERS * ROUNDS * PER_ROUND
    given = Counter(i for indices in results for i in indices)
    assert sorted(given) == list(range(total)) and set(given.values()) == {1}, "every index exactly once"
    entries = stored_entries(app)
    assert [e["index"] for e in entries] == list(range(total)), "gap-free"
    # Worker 0 signed ROUNDS // 25 checkpoints; each entry names the last one signed before it (0 before any). The
    # last checkpoint may come after every other entry, so count the signed ones, not the sizes entries name.
    with Session(engine_of(app)) as session:
        signed = set(AuditLog(session=session).checkpoint_sizes())
    previous = [e["prev_checkpoint_size"] for e in entries]
    assert len(signed) == ROUNDS // 25 and set(previous) <= signed | {0}
    assert previous == sorted(previous), "each entry names the checkpoint signed last before it"
    assert all(e["prev_checkpoint_size"] <= e["index"] for e in entries)

    leaves = stored_leaves(app)
    frontier = merkle.Frontier()
    expected_nodes: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        expected_nodes.update(frontier.append(merkle.leaf_hash(leaf)))
    assert stored_nodes(app) == expected_nodes, "no fork: every stored subtree hash matches the recomputation"
    with Session(engine_of(app)) as session:
        log = AuditLog(session=session)
        final = log.checkpoint(signer=audit_key(), origin=ORIGIN)
        session.commit()
        assert (final.size, final.root) == (total, frontier.root())
        verified = verify_log(DatabaseSource(session), origin=ORIGIN,
                              verifiers=[NoteVerifier(name=ORIGIN, public_key=audit_key().public_bytes)])
    assert verified.checkpoint.size == total
