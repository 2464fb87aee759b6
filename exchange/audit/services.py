"""The audit log: sequence entries under one lock, serve entries, proofs and searches, and sign checkpoints.

Deferred sequencing (as Certificate Transparency logs and Trillian do it). A call's entry is made durable in two
steps:

1. `enqueue`, in the call's own transaction: one INSERT into `audit_queue` of the entry's leaf with its `index` and
   `prev_checkpoint_size` left open, and the columns it will be searched by. It takes no lock, so calls commit side
   by side. The committed queue row *is* the durable entry: it commits with the call's data or not at all (fail
   closed), and an acknowledged call always has it.
2. `settle`, after that commit, in a transaction of its own: lock the single `audit_head` row (PostgreSQL
   `SELECT ... FOR UPDATE`; SQLite: the database write lock, taken by a write to the head), take every committed
   queue row in key order (`integrate`), give them the indices `size, size + 1, ...`, fill in their leaves, write
   them with the tree nodes they complete, delete them from the queue, move the head, commit. One transaction
   sequences however many entries were queued meanwhile: the calls of other workers and machines that committed
   while the lock was held are batched into the next integration. The call then learns its entry's index and leaf
   hash, from its own integration or, if another worker's integration took its row, from the log
   (`audit_entries.queue_id`, searched from the log's size when the row was queued).

The lock is in the database, so any number of processes and machines sharing it sequence without gaps, duplicates
or forks: the head, the entries, their nodes and the deletion of their queue rows commit or roll back together, and
a queue row is taken by exactly one integration. A row whose call crashed (or whose integration failed) after its
commit stays queued until the next integration by anyone: the next call, `checkpoint` (`exchange audit checkpoint
--every`), or a synchronous `append`. Readers (entries, proofs, exports, the verifier) see sequenced entries only.

`append` is the synchronous form, for callers that need the index inside their transaction (tokens, the command
line): it locks the head in the caller's transaction, integrates what is queued, then appends its own events, and
holds the lock until the caller commits. Call it last in a transaction.

Batching. Each integration writes all its entries, their record ids and tree nodes, and moves the head in one
statement on PostgreSQL (one per table on SQLite); the leaves are built before the lock is taken (only the two
numbers are spliced in under it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import Select, Table, and_, bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exchange.audit.models import AuditCheckpoint, AuditEntry, AuditEntryRecord, AuditHead, AuditNode, AuditQueued
from exchange.db import utcnow
from exchange.protocol import merkle
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.protocol.checkpoint import Checkpoint, sign_checkpoint
from exchange.protocol.encoding import b64url
from exchange.protocol.errors import ValidationFailed
from exchange.protocol.merkle import ConsistencyProof, Frontier, InclusionProof

ENTRY_VERSION = 1
# The members of an entry, exactly (audit.md "Entry"); every entry has all of them, null where not applicable.
ENTRY_MEMBERS = frozenset({
    "v", "index", "time", "request_id", "action", "outcome", "status", "reason", "agency", "client_id", "officer",
    "purpose", "case_ref", "method", "path", "record_ids", "recipient", "source_ip", "token_jti", "dpop_jti",
    "envelope", "prev_checkpoint_size",
})
ACTIONS = frozenset({"collect", "alter", "consult", "disclose", "erase", "token.issue", "token.deny", "audit.read",
                     "deny"})
ACTION_FAMILIES = ("client.", "key.")  # client.register, key.rotate, ...
OUTCOMES = ("success", "failure")
MAX_PAGE = 1000

_ACTION = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)?$")
_entries = cast(Table, AuditEntry.__table__)
_records = cast(Table, AuditEntryRecord.__table__)
_nodes = cast(Table, AuditNode.__table__)
_head = cast(Table, AuditHead.__table__)
_queue = cast(Table, AuditQueued.__table__)
# A queued row as the statements that take it return it (`_Item.taken` reads it in this order).
_QUEUED = ("id", "leaf", "time", "action", "outcome", "agency", "client_id", "purpose", "record_ids")
INTEGRATE_BATCH = 5000  # queue rows sequenced per transaction at most (a backlog is worked off in several)
# Every row of an integration in one JSON parameter (bytes in hex), unpacked by data-modifying WITH queries (those
# run exactly once, whether or not the main statement reads them): one statement, compiled once for any batch size,
# and one parameter for the driver to pass on (arrays of every column cost more to adapt than the rest of the work).
_PG_WRITE = text("""
WITH batch AS (SELECT CAST(:rows AS jsonb) AS rows), entries AS (
    INSERT INTO audit_entries (idx, leaf, time, action, outcome, agency, client_id, purpose, queue_id)
    SELECT e.idx, decode(e.leaf, 'hex'), e.time, e.action, e.outcome, e.agency, e.client_id, e.purpose, e.queue_id
    FROM batch, jsonb_to_recordset(batch.rows -> 'entries') AS e(idx bigint, leaf text, time timestamptz,
        action varchar, outcome varchar, agency varchar, client_id varchar, purpose varchar, queue_id bigint)
), records AS (
    INSERT INTO audit_entry_records (record_id, idx)
    SELECT r.record_id, r.idx
    FROM batch, jsonb_to_recordset(batch.rows -> 'records') AS r(record_id varchar, idx bigint)
), nodes AS (
    INSERT INTO audit_nodes (level, idx, hash)
    SELECT n.level, n.idx, decode(n.hash, 'hex')
    FROM batch, jsonb_to_recordset(batch.rows -> 'nodes') AS n(level smallint, idx bigint, hash text)
)
UPDATE audit_head SET size = :size, frontier = :frontier WHERE id = 1
""")
# Queue an entry and read the log's size in the same statement: the entry's index will be at least that size.
_RAW_ENQUEUE = """
INSERT INTO audit_queue (leaf, time, action, outcome, agency, client_id, purpose, record_ids)
VALUES (%(leaf)s, %(time)s, %(action)s, %(outcome)s, %(agency)s, %(client_id)s, %(purpose)s, %(record_ids)s)
RETURNING id, COALESCE((SELECT size FROM audit_head WHERE id = 1), 0)
"""
# Under the head lock (`append`, `checkpoint`): take the oldest committed queue rows, skipping rows that a settling
# call has taken and not committed yet (it waits for this lock next; waiting for its rows here would deadlock).
_PG_TAKE = text("""
DELETE FROM audit_queue WHERE id IN (SELECT id FROM audit_queue ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
RETURNING id, leaf, time, action, outcome, agency, client_id, purpose, record_ids
""")
# `settle` on PostgreSQL, one statement: take the oldest committed queue rows, then lock and read the head only if
# it took any. Rows are locked in key order, so two settling calls never wait for each other in a cycle; a row that
# another settling call took is waited for (until that call commits its entry) and skipped. The head is locked
# after the rows and read as it is once locked (READ COMMITTED: the latest committed version), and whoever holds it
# waits for no row, so nothing waits in a cycle. A call whose row another call took holds no lock at all.
_RAW_SETTLE = """
WITH taken AS (
    DELETE FROM audit_queue WHERE id IN (SELECT id FROM audit_queue ORDER BY id LIMIT %(limit)s FOR UPDATE)
    RETURNING id, leaf, time, action, outcome, agency, client_id, purpose, record_ids
), head AS (
    SELECT size, frontier, checkpoint_size FROM audit_head WHERE id = 1 AND EXISTS (SELECT FROM taken) FOR UPDATE
)
SELECT taken.*, head.size, head.frontier, head.checkpoint_size FROM taken LEFT JOIN head ON true
"""
_RAW_WRITE = re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", _PG_WRITE.text)
_RAW_FIND = """
SELECT e.idx, n.hash FROM audit_entries e JOIN audit_nodes n ON n.level = 0 AND n.idx = e.idx
WHERE e.idx >= %(floor)s AND e.queue_id = %(queue_id)s
"""
_PG_ENTRIES = """
SELECT e.idx, e.leaf, n.hash FROM audit_entries e LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = e.idx
WHERE e.idx >= %s AND e.idx < %s ORDER BY e.idx LIMIT %s
"""


# The SQLite and shared statements of the sequencing, built once (building one costs more than running it).
_HEAD = select(_head.c.size, _head.c.frontier, _head.c.checkpoint_size).where(_head.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_CREATE_HEAD = {
    name: insert_(_head).values(id=1, size=0, frontier=b"", checkpoint_size=0).on_conflict_do_nothing(
        index_elements=[_head.c.id])
    for name, insert_ in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))
}
_SQLITE_QUEUED = select(*(_queue.c[name] for name in _QUEUED)).order_by(_queue.c.id).limit(bindparam("limit"))
_SQLITE_UNQUEUE = delete(_queue).where(_queue.c.id <= bindparam("last"))
_INSERT_ENTRIES, _INSERT_RECORDS, _INSERT_NODES = insert(_entries), insert(_records), insert(_nodes)
_MOVE_HEAD = update(_head).where(_head.c.id == 1).values(size=bindparam("size"), frontier=bindparam("frontier"))


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, microseconds: 2026-11-25T03:28:14.706092Z."""
    if moment.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """Evidence of an accepted request envelope (protocol.md §4), all b64."""

    msg_id: str
    protected_hash: str
    sig: str
    plaintext_hash: str


def _short(value: str | None, limit: int, name: str) -> None:
    if value is not None and not 0 < len(value) <= limit:
        raise ValueError(f"audit member {name} must be 1..{limit} characters")


@dataclass(frozen=True, kw_only=True)
class Event:
    """What happened, as audit.md lists it; `AuditLog.append` adds the index and `prev_checkpoint_size`."""

    time: datetime
    request_id: str
    action: str
    outcome: str
    status: int
    method: str
    path: str
    reason: str | None = None
    agency: str | None = None
    client_id: str | None = None
    officer: str | None = None
    purpose: str | None = None
    case_ref: str | None = None
    record_ids: tuple[str, ...] = ()
    recipient: str | None = None
    source_ip: str | None = None
    token_jti: str | None = None
    dpop_jti: str | None = None
    envelope: Envelope | None = field(default=None)

    def __post_init__(self) -> None:
        family = any(self.action.startswith(f) and len(self.action) > len(f) for f in ACTION_FAMILIES)
        if not _ACTION.match(self.action) or not (self.action in ACTIONS or family):
            raise ValueError(f"unknown audit action {self.action!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {self.outcome!r}")
        if self.outcome == "failure" and not self.reason:
            raise ValueError("a failure names its reason (the stable error code)")
        if not 100 <= self.status <= 599:
            raise ValueError("status is an HTTP status")
        for name, limit in [("agency", 16), ("client_id", 128), ("purpose", 64), ("action", 32)]:
            _short(getattr(self, name), limit, name)
        if any(not 0 < len(r) <= 64 for r in self.record_ids):
            raise ValueError("record ids are 1..64 characters")
        format_time(self.time)

    def members(self, *, index: int, prev_checkpoint_size: int) -> dict[str, Any]:
        envelope = None
        if self.envelope is not None:
            envelope = {"msg_id": self.envelope.msg_id, "protected_hash": self.envelope.protected_hash,
                        "sig": self.envelope.sig, "plaintext_hash": self.envelope.plaintext_hash}
        return {
            "v": ENTRY_VERSION, "index": index, "time": format_time(self.time), "request_id": self.request_id,
            "action": self.action, "outcome": self.outcome, "status": self.status, "reason": self.reason,
            "agency": self.agency, "client_id": self.client_id, "officer": self.officer, "purpose": self.purpose,
            "case_ref": self.case_ref, "method": self.method, "path": self.path,
            "record_ids": list(dict.fromkeys(self.record_ids)), "recipient": self.recipient,
            "source_ip": self.source_ip, "token_jti": self.token_jti, "dpop_jti": self.dpop_jti,
            "envelope": envelope, "prev_checkpoint_size": prev_checkpoint_size,
        }


def encode_entry(members: Mapping[str, Any]) -> bytes:
    """The leaf: the entry's RFC 8785 (JSON Canonicalization Scheme) encoding.

    For what an entry holds (strings, null, integers within +-(2**53 - 1), arrays of strings, an object of strings,
    member names in ASCII) RFC 8785 is exactly Python's own JSON encoder with sorted keys, no whitespace and no
    ASCII escaping: the same escapes (quote, backslash, b f n r t, and u00xx in lower case for the other control
    characters), everything else as UTF-8, integers in plain decimal, names sorted by code point (UTF-16
    order for ASCII). That encoder is written in C, about six times faster than `rfc8785.dumps`; anything else (a
    float, a big integer, an unexpected type) is refused rather than encoded differently. Tests compare the two.
    """
    if set(members) != ENTRY_MEMBERS:
        raise ValueError("an entry has exactly the members of audit.md")
    for value in members.values():
        kind = type(value)
        if kind is int:
            if not _JS_SAFE >= value >= -_JS_SAFE:
                raise ValueError("an integer beyond RFC 8785's range")
        elif kind is list:
            if any(type(item) is not str for item in value):
                raise ValueError("entry arrays hold strings")
        elif kind is dict:
            if any(type(k) is not str or not k.isascii() or type(v) is not str for k, v in value.items()):
                raise ValueError("entry objects map ASCII names to strings")
        elif value is not None and kind is not str:
            raise ValueError(f"an entry member cannot be a {kind.__name__}")
    return _ENCODER.encode(members).encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates


_JS_SAFE = 2**53 - 1
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


# The two members only the sequencer knows, as they stand in a queued leaf. RFC 8785 writes the members sorted and
# integers in plain decimal, both are followed by another member ("method", "purpose"), and a `"` inside a string is
# always escaped, so each of these byte strings occurs exactly once in a queued leaf, at the top level.
_INDEX_MARK = b'"index":-1,'
_PREV_MARK = b'"prev_checkpoint_size":-1,'


def queue_leaf(event: Event) -> bytes:
    """The event's leaf with `index` and `prev_checkpoint_size` still open (-1)."""
    leaf = encode_entry(event.members(index=-1, prev_checkpoint_size=-1))
    if leaf.count(_INDEX_MARK) != 1 or leaf.count(_PREV_MARK) != 1:
        raise ValueError("a queued leaf names its index and checkpoint size once")
    return leaf


def fill_leaf(queued: bytes, *, index: int, prev_checkpoint_size: int) -> bytes:
    """The leaf of a queued entry given its index: the RFC 8785 encoding of the same members with the two numbers
    (byte for byte what `encode_entry` makes of them)."""
    before, mark, rest = queued.partition(_INDEX_MARK)
    middle, mark2, after = rest.partition(_PREV_MARK)
    if not mark or not mark2 or index < 0 or prev_checkpoint_size < 0:
        raise ValueError("not a queued leaf")
    return b"".join((before, b'"index":%d,' % index, middle, b'"prev_checkpoint_size":%d,' % prev_checkpoint_size,
                     after))


def _queue_row(event: Event) -> dict[str, Any]:
    return {"leaf": queue_leaf(event), "time": event.time, "action": event.action, "outcome": event.outcome,
            "agency": event.agency, "client_id": event.client_id, "purpose": event.purpose,
            "record_ids": json.dumps(list(dict.fromkeys(event.record_ids)))}


@dataclass(frozen=True, kw_only=True)
class QueuedEntry:
    """An entry queued in a transaction: its queue row, and the log's size then (its index will be at least that)."""

    queue_id: int
    floor: int


def _write_parameters(entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
                      *, size: int, frontier: bytes) -> dict[str, Any]:
    """The parameters of `_PG_WRITE`: the rows as one JSON document, bytes in hex, times in ISO 8601."""
    rows = {
        "entries": [{**row, "leaf": row["leaf"].hex(), "time": row["time"].isoformat()} for row in entries],
        "records": records,
        "nodes": [{**row, "hash": row["hash"].hex()} for row in nodes],
    }
    return {"rows": json.dumps(rows, separators=(",", ":")), "size": size, "frontier": frontier}


@dataclass(frozen=True, kw_only=True, slots=True)
class _Item:
    """An entry about to be sequenced: its queued leaf and the columns it is searched by (None: not from the queue)."""

    queue_id: int | None
    leaf: bytes
    time: datetime
    action: str
    outcome: str
    agency: str | None
    client_id: str | None
    purpose: str | None
    record_ids: str

    @classmethod
    def taken(cls, row: Sequence[Any]) -> _Item:
        """From a queue row read in `_QUEUED` order (id, leaf, time, action, outcome, agency, client_id, purpose,
        record_ids), as every statement that takes queued rows returns them."""
        return cls(queue_id=row[0], leaf=row[1], time=row[2], action=row[3], outcome=row[4], agency=row[5],
                   client_id=row[6], purpose=row[7], record_ids=row[8])


@dataclass(frozen=True, kw_only=True)
class AppendedEntry:
    index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A leaf as stored, with the leaf hash written beside it in the tree when it was appended (None if missing).

    Positional and slotted: the verifier makes a million of them.
    """

    index: int
    leaf: bytes
    stored_leaf_hash: bytes | None


@dataclass(frozen=True, kw_only=True)
class SearchFilters:
    agency: str | None = None
    client_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    purpose: str | None = None
    record_id: str | None = None
    time_from: datetime | None = None  # inclusive
    time_to: datetime | None = None  # exclusive


class Signer(Protocol):
    """The checkpoint key (the key store's `audit` key, `exchange.keys.store.ExchangeKey`)."""

    @property
    def public_bytes(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, kw_only=True)
class _Head:
    size: int
    frontier: bytes
    checkpoint_size: int


_Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[AppendedEntry]]


class AuditLog:
    """The log in one session. Writes (`append`, `checkpoint`) flush and lock; the caller commits."""

    def __init__(self, *, session: Session) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # ---- writing ---------------------------------------------------------------------------------------------------

    def enqueue(self, events: Sequence[Event]) -> list[QueuedEntry]:
        """Queue the events' entries in the caller's transaction (no lock): once it commits they are stored, and
        `settle` or any later integration sequences them. Raise `AuditUnavailable` if that fails (the caller's
        transaction must then roll back)."""
        try:
            queued: list[QueuedEntry] = []
            for event in events:
                row = _queue_row(event)
                if self._dialect == "postgresql":  # straight to the driver, in the session's transaction
                    driver = self.session.connection().connection.driver_connection
                    queue_id, floor = driver.execute(_RAW_ENQUEUE, row).fetchone()  # type: ignore[union-attr]
                else:
                    queue_id = self.session.execute(insert(_queue).values(row).returning(_queue.c.id)).scalar_one()
                    floor = self.size()
                queued.append(QueuedEntry(queue_id=queue_id, floor=floor))
        except (SQLAlchemyError, ValueError) as e:
            raise AuditUnavailable() from e
        return queued

    def integrate(self, *, limit: int = INTEGRATE_BATCH) -> dict[int, AppendedEntry]:
        """Sequence the committed queue rows (at most `limit`, oldest first) in the caller's transaction, holding
        the head lock until it ends; return each row's entry by queue id ({} if nothing was queued)."""
        try:
            head = self._lock_head()
            items = self._take_queued(limit)
            if not items:
                return {}
            appended = self._sequence(head, items)
        except (SQLAlchemyError, ValueError) as e:
            raise AuditUnavailable() from e
        return {item.queue_id: entry for item, entry in zip(items, appended, strict=True) if item.queue_id is not None}

    def find(self, queued: QueuedEntry) -> AppendedEntry | None:
        """The entry sequenced from a queue row (None while it is still queued)."""
        row = self.session.execute(
            select(_entries.c.idx, _nodes.c.hash)
            .join(_nodes, and_(_nodes.c.level == 0, _nodes.c.idx == _entries.c.idx))
            .where(_entries.c.idx >= queued.floor, _entries.c.queue_id == queued.queue_id)
        ).first()
        return None if row is None else AppendedEntry(index=row.idx, leaf_hash=row.hash)

    def settle(self, queued: QueuedEntry, *, attempts: int = 3) -> AppendedEntry:
        """After the commit of the transaction that queued an entry: sequence it (with everything else queued, in
        transactions of their own) and return its index and leaf hash. A round that fails (a deadlock the database
        broke, a lost connection) is retried, `attempts` times in all; then `AuditUnavailable` is raised. The entry
        stays queued (it is stored) and the next integration sequences it.

        Call it between transactions (it commits its own): an open transaction's work would be committed with it."""
        if self.session.in_transaction():
            raise RuntimeError("settle runs after the commit of the transaction that queued the entry")
        failures = 0
        while True:
            try:
                if self._dialect == "postgresql":
                    done, mine = self._settle_round_postgresql(queued)
                else:
                    done, mine = self._settle_round(queued)
            except Exception as e:  # SQLAlchemy's errors, and the driver's own on the PostgreSQL path
                self.session.rollback()
                failures += 1
                if failures >= attempts:
                    raise AuditUnavailable() from e
                continue
            if mine is not None:
                return mine
            if not done:  # neither queued nor sequenced: the row was removed behind the log's back
                raise AuditUnavailable("The audit entry is neither queued nor in the log.")

    def _settle_round(self, queued: QueuedEntry) -> tuple[bool, AppendedEntry | None]:
        """One integration in a transaction of its own: (whether it sequenced anything, the entry if known)."""
        integrated = self.integrate()
        if integrated:
            self.session.commit()
        else:
            self.session.rollback()  # release the lock before looking: whoever took the row has committed
        return bool(integrated), integrated.get(queued.queue_id) or self.find(queued)

    def _settle_round_postgresql(self, queued: QueuedEntry) -> tuple[bool, AppendedEntry | None]:
        """`_settle_round` through the driver (psycopg) on the session's connection, in as few statements as it
        takes: `_RAW_SETTLE` (take the queued rows, then lock the head if it took any); if the call's own row was not
        among them, another call took it and has committed (the take waited for it), so look it up; then write and
        commit, or roll back. A call whose row another call took holds no lock and waits only for that commit.
        (psycopg's pipeline mode would save round trips but costs more CPU than it saves on a small machine.)"""
        driver, own = self._driver()
        try:
            rows = driver.execute(_RAW_SETTLE, {"limit": INTEGRATE_BATCH}).fetchall()
            mine = None
            if not any(row[0] == queued.queue_id for row in rows):
                found = driver.execute(_RAW_FIND, {"floor": queued.floor, "queue_id": queued.queue_id}).fetchone()
                mine = None if found is None else AppendedEntry(index=found[0], leaf_hash=found[1])
            if not rows:
                driver.rollback()
            elif rows[0][9] is None:  # an empty log without its head row: create it, then take the rows again
                driver.rollback()
                self._end(own)
                self._lock_head()
                self.session.commit()
                return True, mine
            else:
                items = sorted((_Item.taken(r) for r in rows), key=lambda item: item.queue_id or 0)
                head = _Head(size=rows[0][9], frontier=rows[0][10], checkpoint_size=rows[0][11])
                (entry_rows, record_rows, node_rows, appended), size, frontier = self._rows(head, items)
                parameters = _write_parameters(entry_rows, record_rows, node_rows, size=size, frontier=frontier)
                with driver.pipeline():  # the write and the COMMIT in one round trip: the head is locked meanwhile
                    driver.execute(_RAW_WRITE, parameters)
                    driver.commit()
                for item, entry in zip(items, appended, strict=True):
                    if item.queue_id == queued.queue_id:
                        mine = entry
        except BaseException:
            driver.rollback()
            raise
        finally:
            self._end(own)
        return bool(rows), mine

    def _driver(self) -> tuple[Any, bool]:
        """The session's psycopg connection, and whether it is used outside any SQLAlchemy transaction (a session
        bound to a connection, as a request's is, between transactions: SQLAlchemy's bookkeeping is skipped)."""
        bind = self.session.get_bind()
        if isinstance(bind, Connection) and not self.session.in_transaction() and not bind.in_transaction():
            return bind.connection.driver_connection, True
        return self.session.connection().connection.driver_connection, False

    def _end(self, own: bool) -> None:
        """End the session's transaction after the driver ended its own (nothing is sent then)."""
        if not own:
            self.session.rollback()

    def append(self, events: Sequence[Event]) -> list[AppendedEntry]:
        """Synchronously: sequence what is queued, then give the events the next indices and write them, their tree
        nodes and the new head, in the caller's transaction (holding the head lock until it ends); raise
        `AuditUnavailable` if any of it fails (the caller's transaction must then roll back)."""
        if not events:
            return []
        try:
            own = [_Item(queue_id=None, **_queue_row(event)) for event in events]
            head = self._lock_head()
            queued = self._take_queued(INTEGRATE_BATCH)
            appended = self._sequence(head, [*queued, *own])
        except (SQLAlchemyError, ValueError) as e:
            raise AuditUnavailable() from e
        return appended[len(queued):]

    def _take_queued(self, limit: int) -> list[_Item]:
        """Remove up to `limit` committed queue rows, oldest first, under the head lock, and return them."""
        if self._dialect == "postgresql":
            rows = self.session.execute(_PG_TAKE, {"limit": limit}).all()
            return sorted((_Item.taken(r) for r in rows), key=lambda item: item.queue_id or 0)
        # SQLite: the head lock is the database write lock, so no other transaction can be adding rows.
        connection = self.session.connection()
        rows = connection.execute(_SQLITE_QUEUED, {"limit": limit}).all()
        if rows:
            connection.execute(_SQLITE_UNQUEUE, {"last": rows[-1].id})
        return [_Item.taken(r) for r in rows]

    def _sequence(self, head: _Head, items: Sequence[_Item]) -> list[AppendedEntry]:
        """Give the items the indices after `head`, and write them, their tree nodes and the new head (locked)."""
        (entry_rows, record_rows, node_rows, appended), size, frontier = self._rows(head, items)
        if items:
            self._write(entry_rows, record_rows, node_rows, size=size, frontier=frontier)
        return appended

    @staticmethod
    def _rows(head: _Head, items: Sequence[_Item]) -> tuple[_Rows, int, bytes]:
        """The rows sequencing the items after `head` writes, the new size and the new frontier."""
        frontier = Frontier.decode(head.size, head.frontier)
        entry_rows: list[dict[str, Any]] = []
        record_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        appended: list[AppendedEntry] = []
        for item in items:
            index = frontier.size
            leaf = fill_leaf(item.leaf, index=index, prev_checkpoint_size=head.checkpoint_size)
            leaf_hash = merkle.leaf_hash(leaf)
            node_rows += [{"level": level, "idx": i, "hash": h} for (level, i), h in frontier.append(leaf_hash)]
            entry_rows.append({"idx": index, "leaf": leaf, "time": item.time, "action": item.action,
                               "outcome": item.outcome, "agency": item.agency, "client_id": item.client_id,
                               "purpose": item.purpose, "queue_id": item.queue_id})
            record_rows += [{"record_id": r, "idx": index} for r in json.loads(item.record_ids)]
            appended.append(AppendedEntry(index=index, leaf_hash=leaf_hash))
        return (entry_rows, record_rows, node_rows, appended), frontier.size, frontier.encode()

    def _write(self, entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
               *, size: int, frontier: bytes) -> None:
        """Write the rows and move the head in as few round trips as possible while the lock is held."""
        if self._dialect == "postgresql":
            # One statement, compiled once for any batch size: each table's rows as arrays, unnested by a
            # data-modifying WITH query (those run exactly once, whether or not the main statement reads them).
            self.session.execute(_PG_WRITE, _write_parameters(entries, records, nodes, size=size, frontier=frontier))
            return
        connection = self.session.connection()  # Core: the ORM's bulk-insert path costs more than the rows
        for statement, rows in ((_INSERT_ENTRIES, entries), (_INSERT_RECORDS, records), (_INSERT_NODES, nodes)):
            if rows:
                connection.execute(statement, rows)
        connection.execute(_MOVE_HEAD, {"size": size, "frontier": frontier})

    def _lock_head(self) -> _Head:
        """Lock the head row for the rest of the transaction (creating it in an empty log) and read it."""
        # Core on the session's connection (its transaction), statements built once: no ORM work per call. The
        # session's pending changes are written first, as the ORM's autoflush did.
        self.session.flush()
        connection = self.session.connection()
        if self._dialect == "sqlite":
            # A SELECT takes no lock on SQLite: write first (creating the head if needed), which takes the
            # database write lock; every other appender then waits for our commit, as FOR UPDATE makes it wait.
            connection.execute(_CREATE_HEAD["sqlite"])
            row = connection.execute(_HEAD).one()
        else:
            locked = connection.execute(_HEAD_FOR_UPDATE).one_or_none()
            if locked is None:  # an empty log: create the head, or wait for whoever is creating it, and lock it
                connection.execute(_CREATE_HEAD["postgresql"])
                locked = connection.execute(_HEAD_FOR_UPDATE).one()
            row = locked
        return _Head(size=row.size, frontier=row.frontier, checkpoint_size=row.checkpoint_size)

    def _read_head(self) -> _Head:
        row = self.session.execute(select(AuditHead.size, AuditHead.frontier, AuditHead.checkpoint_size)
                                   .where(AuditHead.id == 1)).one()
        return _Head(size=row.size, frontier=row.frontier, checkpoint_size=row.checkpoint_size)

    def checkpoint(self, *, signer: Signer, origin: str, now: datetime | None = None) -> AuditCheckpoint:
        """The latest checkpoint, after sequencing what is queued and signing a new one if the log grew since it
        (holds the head lock until the caller's transaction ends)."""
        try:
            head = self._lock_head()
            while queued := self._take_queued(INTEGRATE_BATCH):
                self._sequence(head, queued)
                head = self._read_head()
            latest = self.latest_checkpoint()
            if latest is not None and latest.size == head.size:
                return latest
            if latest is not None and latest.size > head.size:
                raise AuditUnavailable("The audit log is shorter than its latest checkpoint; refusing to sign.")
            root = Frontier.decode(head.size, head.frontier).root()
            checkpoint = Checkpoint(origin=origin, size=head.size, root=root)
            row = AuditCheckpoint(size=head.size, origin=origin, root=root, created_at=now or utcnow(),
                                  note=sign_checkpoint(checkpoint, public_key=signer.public_bytes, sign=signer.sign))
            self.session.add(row)
            self.session.flush()
            self.session.execute(update(AuditHead).where(AuditHead.id == 1).values(checkpoint_size=head.size))
        except (SQLAlchemyError, ValueError) as e:
            raise AuditUnavailable() from e
        return row

    # ---- reading ---------------------------------------------------------------------------------------------------

    def size(self) -> int:
        return self.session.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0

    def queued(self) -> int:
        """Entries committed with their calls but not sequenced yet (the next sequencing takes them)."""
        return self.session.scalar(select(func.count()).select_from(AuditQueued)) or 0

    def client_of(self, index: int) -> str | None:
        """The client whose call entry `index` records (None if there is no such entry or no client)."""
        client_id: str | None = self.session.scalar(select(AuditEntry.client_id).where(AuditEntry.idx == index))
        return client_id

    def latest_checkpoint(self) -> AuditCheckpoint | None:
        return self.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)).first()

    def checkpoint_sizes(self) -> list[int]:
        return list(self.session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)))

    def checkpoint_note(self, size: int) -> str | None:
        return self.session.scalar(select(AuditCheckpoint.note).where(AuditCheckpoint.size == size))

    def _within(self, size: int, *, smaller: tuple[str, int], larger: tuple[str, int], strict: bool = False) -> None:
        """Refuse ranges the log cannot answer: `larger` must not pass the log's size, nor `smaller` pass `larger`."""
        (small_name, small), (large_name, large) = smaller, larger
        if large > size:
            raise ValidationFailed(errors={large_name: [f"The log has {size} entries."]})
        if small > large or (strict and small == large):
            raise ValidationFailed(errors={small_name: [f"Must be {'less than' if strict else 'at most'} "
                                                        f"{large_name}."]})

    @staticmethod
    def _select_entries() -> Select[int, bytes, bytes]:
        """Entries with the leaf hash stored in the tree (Core columns: plain rows, no ORM loading)."""
        return select(_entries.c.idx, _entries.c.leaf, _nodes.c.hash).outerjoin(
            _nodes, and_(_nodes.c.level == 0, _nodes.c.idx == _entries.c.idx)
        )

    def _stored(self, stmt: Select[int, bytes, bytes]) -> list[StoredEntry]:
        return [StoredEntry(*row) for row in self.session.execute(stmt).all()]  # all(): one fetchall, not per row

    def entries(self, start: int, end: int | None = None, *, limit: int = MAX_PAGE) -> list[StoredEntry]:
        """Entries [start, end), at most `limit` (end defaults to the size of the log)."""
        size = self.size()
        end = size if end is None else end
        self._within(size, smaller=("start", start), larger=("end", end))
        end = min(end, start + limit)
        stmt = self._select_entries().where(_entries.c.idx >= start, _entries.c.idx < end).order_by(_entries.c.idx)
        return self._stored(stmt)

    def iter_entries(self, start: int, end: int, *, batch: int = 10_000) -> Iterator[StoredEntry]:
        """Every stored row with start <= index < end, in index order, as they are (gaps and all), read in batches
        (keyset paging on the primary key: each batch is one index range scan)."""
        fetch = self._fetch_binary if self._dialect == "postgresql" else self._fetch
        cursor = start
        while cursor < end:
            rows = fetch(cursor, end, batch)
            if not rows:
                return
            yield from rows
            cursor = rows[-1].index + 1

    def _fetch(self, start: int, end: int, limit: int) -> list[StoredEntry]:
        return self._stored(self._select_entries().where(_entries.c.idx >= start, _entries.c.idx < end)
                            .order_by(_entries.c.idx).limit(limit))

    def _fetch_binary(self, start: int, end: int, limit: int) -> list[StoredEntry]:
        """`_fetch` through a psycopg cursor in binary format: bytea in the text format is hex-escaped, which makes
        a full scan of the log three times slower to read and decode."""
        connection = self.session.connection().connection.driver_connection
        with connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            cursor.execute(_PG_ENTRIES, (start, end, limit))
            return [StoredEntry(*row) for row in cursor.fetchall()]

    def last(self, count: int) -> list[StoredEntry]:
        stmt = self._select_entries().order_by(_entries.c.idx.desc()).limit(count)
        return self._stored(stmt)[::-1]

    def search(self, filters: SearchFilters, *, after: int | None = None, limit: int = 100) -> list[StoredEntry]:
        """Entries matching every given filter, in index order, after the index `after` (keyset paging)."""
        stmt = self._select_entries()
        columns = _entries.c
        for column, value in [(columns.agency, filters.agency), (columns.client_id, filters.client_id),
                              (columns.action, filters.action), (columns.outcome, filters.outcome),
                              (columns.purpose, filters.purpose)]:
            if value is not None:
                stmt = stmt.where(column == value)
        if filters.record_id is not None:
            stmt = stmt.where(columns.idx.in_(
                select(_records.c.idx).where(_records.c.record_id == filters.record_id)
            ))
        if filters.time_from is not None:
            stmt = stmt.where(columns.time >= filters.time_from)
        if filters.time_to is not None:
            stmt = stmt.where(columns.time < filters.time_to)
        if after is not None:
            stmt = stmt.where(columns.idx > after)
        return self._stored(stmt.order_by(_entries.c.idx).limit(min(limit, MAX_PAGE)))

    # ---- proofs: O(log n) node reads --------------------------------------------------------------------------------

    def _nodes(self, wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
        if not wanted:
            return {}
        rows = self.session.execute(
            select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(
                tuple_(AuditNode.level, AuditNode.idx).in_(sorted(wanted))
            )
        )
        found = {(row.level, row.idx): row.hash for row in rows}
        if wanted - found.keys():
            raise AuditUnavailable("The audit log's tree is missing nodes; it needs to be verified.")
        return found

    def inclusion_proof(self, index: int, size: int) -> tuple[InclusionProof, bytes]:
        """The proof that entry `index` is in the tree of `size` entries, and the entry's leaf hash."""
        self._within(self.size(), smaller=("index", index), larger=("size", size), strict=True)
        ranges = merkle.inclusion_ranges(index, size)
        nodes = self._nodes(merkle.nodes_for(ranges) | {(0, index)})
        return InclusionProof(index=index, size=size, hashes=merkle.proof_hashes(ranges, nodes)), nodes[(0, index)]

    def consistency_proof(self, old: int, new: int) -> ConsistencyProof:
        self._within(self.size(), smaller=("old", old), larger=("new", new))
        ranges = merkle.consistency_ranges(old, new)
        return ConsistencyProof(old=old, new=new, hashes=merkle.proof_hashes(ranges, self._nodes(
            merkle.nodes_for(ranges))))


def new_request_id() -> str:
    return uuid.uuid4().hex


# ---- the wire form of entries and exports ---------------------------------------------------------------------------

EXPORT_FORMAT = "exchange-audit-export/v1"


def entry_json(entry: StoredEntry) -> dict[str, Any]:
    """`{"index", "leaf", "leaf_hash"}` with the bytes in b64 (base64url without padding)."""
    stored = entry.stored_leaf_hash
    return {"index": entry.index, "leaf": b64url(entry.leaf), "leaf_hash": b64url(stored) if stored else None}


def export_lines(log: AuditLog, *, note: str, start: int, end: int) -> Iterator[str]:
    """JSON Lines: a header `{"format", "checkpoint", "start", "end"}` with the signed checkpoint the export is
    verified against, then one `entry_json` per line for the entries [start, end)."""
    header = {"format": EXPORT_FORMAT, "checkpoint": note, "start": start, "end": end}
    yield json.dumps(header, separators=(",", ":")) + "\n"
    for entry in log.iter_entries(start, end):
        yield json.dumps(entry_json(entry), separators=(",", ":")) + "\n"
