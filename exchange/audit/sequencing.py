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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol, cast

from psycopg.rows import namedtuple_row
from sqlalchemy import Table, and_, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exchange.audit.entries import Event, fill_leaf, queue_leaf
from exchange.audit.models import (
    AuditEntry,
    AuditEntryRecord,
    AuditHead,
    AuditNode,
    AuditQueued,
)
from exchange.protocol import merkle
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.protocol.merkle import Frontier

_entries = cast(Table, AuditEntry.__table__)
_records = cast(Table, AuditEntryRecord.__table__)
_nodes = cast(Table, AuditNode.__table__)
_head = cast(Table, AuditHead.__table__)
_queue = cast(Table, AuditQueued.__table__)
# The columns of a queued row, as the statements that take it return them (`_Item.taken` reads them by name).
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
RETURNING id, COALESCE((SELECT size FROM audit_head WHERE id = 1), 0) AS floor
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
# The statements of an append (SQLite's all, PostgreSQL's synchronous `append`), built once and run as Core on the
# session's connection: building a statement, and the ORM's execution path, cost more than running one here.
_HEAD_COLUMNS = (_head.c.size, _head.c.frontier, _head.c.checkpoint_size)
_READ_HEAD = select(*_HEAD_COLUMNS).where(_head.c.id == 1)
_PG_LOCK_HEAD = _READ_HEAD.with_for_update()
_PG_CREATE_HEAD = postgresql_insert(_head).values(id=1, size=0, frontier=b"", checkpoint_size=0).on_conflict_do_nothing(
    index_elements=[_head.c.id])
_SQLITE_CREATE_HEAD = sqlite_insert(_head).values(id=1, size=0, frontier=b"", checkpoint_size=0).on_conflict_do_nothing(
    index_elements=[_head.c.id])
# SQLite: a SELECT takes no lock, a write takes the database write lock: touch the head and read it in one statement.
_SQLITE_LOCK_HEAD = update(_head).where(_head.c.id == 1).values(size=_head.c.size).returning(*_HEAD_COLUMNS)
# SQLite: take the oldest queue rows in one statement (RETURNING's order is not defined: the caller sorts).
_SQLITE_TAKE = delete(_queue).where(_queue.c.id.in_(
    select(_queue.c.id).order_by(_queue.c.id).limit(bindparam("limit")).scalar_subquery()
)).returning(*(_queue.c[name] for name in _QUEUED))
_INSERT_ENTRIES, _INSERT_RECORDS, _INSERT_NODES = insert(_entries), insert(_records), insert(_nodes)
_MOVE_HEAD = update(_head).where(_head.c.id == 1).values(size=bindparam("new_size"),
                                                        frontier=bindparam("new_frontier"))
def _connection(session: Session) -> Connection:
    """The session's connection in its transaction, for Core statements, after writing what the session holds (as
    the ORM's autoflush did before the log's first statement): the log's lock is taken last in a transaction."""
    session.flush()
    return session.connection()


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
    def taken(cls, row: Any) -> _Item:
        """From a queue row with the `_QUEUED` columns, read by name (a SQLAlchemy row or a psycopg named tuple)."""
        return cls(queue_id=row.id, leaf=row.leaf, time=row.time, action=row.action, outcome=row.outcome,
                   agency=row.agency, client_id=row.client_id, purpose=row.purpose, record_ids=row.record_ids)


@dataclass(frozen=True, kw_only=True)
class AppendedEntry:
    index: int
    leaf_hash: bytes
@dataclass(frozen=True, kw_only=True)
class _Head:
    size: int
    frontier: bytes
    checkpoint_size: int




_Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[AppendedEntry]]


class Sequencer(Protocol):
    """What sequencing does differently on each database, in the log's session (`Sequencing` does the rest)."""

    def enqueue(self, row: dict[str, Any]) -> tuple[int, int]:
        """Insert a queue row in the caller's transaction: its id, and the log's size then."""
        ...

    def settle_round(self, queued: QueuedEntry) -> tuple[bool, AppendedEntry | None]:
        """One integration in a transaction of its own: (whether it sequenced anything, the entry if known)."""
        ...

    def lock_head(self) -> _Head:
        """Lock the head row for the rest of the transaction (creating it in an empty log) and read it."""
        ...

    def take_queued(self, limit: int) -> list[_Item]:
        """Remove up to `limit` committed queue rows, oldest first, under the head lock, and return them."""
        ...

    def write(self, entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
              *, size: int, frontier: bytes) -> None:
        """Write the rows and move the head in as few round trips as possible while the lock is held."""
        ...


class Sequencing:
    """The log's writing half (queue, settle, integrate, append) under the head lock; `AuditLog` is one."""

    def __init__(self, *, session: Session) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    @cached_property
    def _sequencer(self) -> Sequencer:
        return PostgresSequencer(self) if self._dialect == "postgresql" else SqliteSequencer(self)

    # ---- writing ---------------------------------------------------------------------------------------------------

    def enqueue(self, events: Sequence[Event]) -> list[QueuedEntry]:
        """Queue the events' entries in the caller's transaction (no lock): once it commits they are stored, and
        `settle` or any later integration sequences them. Raise `AuditUnavailable` if that fails (the caller's
        transaction must then roll back)."""
        try:
            queued: list[QueuedEntry] = []
            for event in events:
                queue_id, floor = self._sequencer.enqueue(_queue_row(event))
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
                done, mine = self._sequencer.settle_round(queued)
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

    def _take_queued(self, limit: int) -> list[_Item]:
        """Remove up to `limit` committed queue rows, oldest first, under the head lock, and return them."""
        return self._sequencer.take_queued(limit)

    def _write(self, entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
               *, size: int, frontier: bytes) -> None:
        """Write the rows and move the head in as few round trips as possible while the lock is held."""
        self._sequencer.write(entries, records, nodes, size=size, frontier=frontier)

    def _lock_head(self) -> _Head:
        """Lock the head row for the rest of the transaction (creating it in an empty log) and read it."""
        return self._sequencer.lock_head()

    def _read_head(self) -> _Head:
        row = self.session.connection().execute(_READ_HEAD).one()
        return _Head(size=row.size, frontier=row.frontier, checkpoint_size=row.checkpoint_size)

    def size(self) -> int:
        return self.session.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0


class PostgresSequencer:
    """PostgreSQL: `SELECT ... FOR UPDATE` on the head, `SKIP LOCKED` takes, and the hot statements straight to the
    driver (psycopg) on the session's connection."""

    def __init__(self, log: Sequencing) -> None:
        self.log = log
        self.session = log.session

    def enqueue(self, row: dict[str, Any]) -> tuple[int, int]:
        driver = self.session.connection().connection.driver_connection  # in the session's transaction
        queued = driver.cursor(row_factory=namedtuple_row).execute(_RAW_ENQUEUE, row).fetchone()  # type: ignore[union-attr]
        if queued is None:
            raise AuditUnavailable("The queue row was not returned.")
        return queued.id, queued.floor

    def settle_round(self, queued: QueuedEntry) -> tuple[bool, AppendedEntry | None]:
        """One integration through the driver (psycopg) on the session's connection, in as few statements as it takes:
        `_RAW_SETTLE` (take the queued rows, then lock the head if it took any); if the call's own row was not among
        them, another call took it and has committed (the take waited for it), so look it up; then write and commit,
        or roll back. A call whose row another call took holds no lock and waits only for that commit. (psycopg's
        pipeline mode would save round trips but costs more CPU than it saves on a small machine.)"""
        driver, own = self._driver()
        try:
            cursor = driver.cursor(row_factory=namedtuple_row)
            rows = cursor.execute(_RAW_SETTLE, {"limit": INTEGRATE_BATCH}).fetchall()
            mine = None
            if not any(row.id == queued.queue_id for row in rows):
                found = cursor.execute(_RAW_FIND, {"floor": queued.floor, "queue_id": queued.queue_id}).fetchone()
                mine = None if found is None else AppendedEntry(index=found.idx, leaf_hash=found.hash)
            if not rows:
                driver.rollback()
            elif rows[0].size is None:  # an empty log without its head row: create it, then take the rows again
                driver.rollback()
                self._end(own)
                self.lock_head()
                self.session.commit()
                return True, mine
            else:
                items = sorted((_Item.taken(r) for r in rows), key=lambda item: item.queue_id or 0)
                first = rows[0]  # every taken row carries the head's columns (LEFT JOIN head)
                head = _Head(size=first.size, frontier=first.frontier, checkpoint_size=first.checkpoint_size)
                (entry_rows, record_rows, node_rows, appended), size, frontier = Sequencing._rows(head, items)
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

    def lock_head(self) -> _Head:
        connection = _connection(self.session)
        locked = connection.execute(_PG_LOCK_HEAD).one_or_none()
        if locked is None:  # an empty log: create the head, or wait for whoever is creating it, and lock it
            connection.execute(_PG_CREATE_HEAD)
            locked = connection.execute(_PG_LOCK_HEAD).one()
        return _Head(size=locked.size, frontier=locked.frontier, checkpoint_size=locked.checkpoint_size)

    def take_queued(self, limit: int) -> list[_Item]:
        rows = self.session.connection().execute(_PG_TAKE, {"limit": limit}).all()
        return sorted((_Item.taken(r) for r in rows), key=lambda item: item.queue_id or 0)

    def write(self, entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
              *, size: int, frontier: bytes) -> None:
        # One statement, compiled once for any batch size: each table's rows as arrays, unnested by a
        # data-modifying WITH query (those run exactly once, whether or not the main statement reads them).
        self.session.execute(_PG_WRITE, _write_parameters(entries, records, nodes, size=size, frontier=frontier))


class SqliteSequencer:
    """SQLite: the head lock is the database's write lock (one writer at a time), plain SQLAlchemy statements."""

    def __init__(self, log: Sequencing) -> None:
        self.log = log
        self.session = log.session

    def enqueue(self, row: dict[str, Any]) -> tuple[int, int]:
        queue_id = self.session.execute(insert(_queue).values(row).returning(_queue.c.id)).scalar_one()
        return queue_id, self.log.size()

    def settle_round(self, queued: QueuedEntry) -> tuple[bool, AppendedEntry | None]:
        """One integration in a transaction of its own: (whether it sequenced anything, the entry if known)."""
        integrated = self.log.integrate()
        if integrated:
            self.session.commit()
        else:
            self.session.rollback()  # release the lock before looking: whoever took the row has committed
        return bool(integrated), integrated.get(queued.queue_id) or self.log.find(queued)

    def lock_head(self) -> _Head:
        # A SELECT takes no lock on SQLite: the head is written (to itself) and read in one statement, which takes
        # the database write lock; every other appender then waits for our commit, as FOR UPDATE makes it wait.
        connection = _connection(self.session)
        row = connection.execute(_SQLITE_LOCK_HEAD).one_or_none()
        if row is None:  # an empty log: create the head (under the write lock, which that takes)
            connection.execute(_SQLITE_CREATE_HEAD)
            row = connection.execute(_READ_HEAD).one()
        return _Head(size=row.size, frontier=row.frontier, checkpoint_size=row.checkpoint_size)

    def take_queued(self, limit: int) -> list[_Item]:
        # The head lock is the database write lock, so no other transaction can be adding rows.
        rows = self.session.connection().execute(_SQLITE_TAKE, {"limit": limit}).all()
        return sorted((_Item.taken(r) for r in rows), key=lambda item: item.queue_id or 0)

    def write(self, entries: list[dict[str, Any]], records: list[dict[str, Any]], nodes: list[dict[str, Any]],
              *, size: int, frontier: bytes) -> None:
        connection = self.session.connection()
        for statement, rows in ((_INSERT_ENTRIES, entries), (_INSERT_RECORDS, records), (_INSERT_NODES, nodes)):
            if rows:
                connection.execute(statement, rows)
        connection.execute(_MOVE_HEAD, {"new_size": size, "new_frontier": frontier})
