"""The audit log: its checkpoints and cosignatures, entries, searches and proofs, and exports.

Entries are written by the sequencer (`exchange.audit.sequencing`, see there for how), in the format of
`exchange.audit.entries`.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, and_, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from exchange.audit.models import (
    AuditCheckpoint,
    AuditCosignature,
    AuditEntry,
    AuditHead,
    AuditNode,
    AuditQueued,
)
from exchange.audit.sequencing import INTEGRATE_BATCH, Sequencing, _entries, _nodes, _records
from exchange.db import utcnow
from exchange.protocol import merkle
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.protocol.checkpoint import Checkpoint, sign_checkpoint
from exchange.protocol.encoding import b64url
from exchange.protocol.errors import ValidationFailed
from exchange.protocol.merkle import ConsistencyProof, Frontier, InclusionProof

MAX_PAGE = 1000
_PG_ENTRIES = """
SELECT e.idx, e.leaf, n.hash FROM audit_entries e LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = e.idx
WHERE e.idx >= %s AND e.idx < %s ORDER BY e.idx LIMIT %s
"""
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


@dataclass(frozen=True, kw_only=True)
class PublishedCheckpoint:
    """A checkpoint as served: its size, and its signed note with the witnesses' cosignature lines."""

    size: int
    note: str
    witnessed: bool = True  # False: witnesses are awaited and this checkpoint does not carry their number yet


class Signer(Protocol):
    """The checkpoint key (the key store's `audit` key, `exchange.keys.store.ExchangeKey`)."""

    @property
    def public_bytes(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...
class AuditLog(Sequencing):
    """The log in one session. Writes (`append`, `checkpoint`) flush and lock; the caller commits."""

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

    # ---- witnesses (witness.md §3) ----------------------------------------------------------------------------------

    def add_cosignature(self, *, size: int, witness: str, line: str, cosigned_at: int) -> None:
        """Keep a witness's (verified) cosignature of the checkpoint of `size`; a second one by the same witness for
        the same checkpoint is ignored."""
        insert_ = sqlite_insert if self._dialect == "sqlite" else postgresql_insert
        self.session.execute(insert_(AuditCosignature).values(
            checkpoint_size=size, witness=witness, line=line, cosigned_at=cosigned_at).on_conflict_do_nothing())

    def cosignature_lines(self, size: int) -> list[str]:
        return list(self.session.scalars(select(AuditCosignature.line).where(AuditCosignature.checkpoint_size == size)
                                         .order_by(AuditCosignature.witness)))

    def witnessed_size(self, witness: str) -> int:
        """The largest checkpoint `witness` cosigned for us (0: none)."""
        return self.session.scalar(select(func.max(AuditCosignature.checkpoint_size))
                                   .where(AuditCosignature.witness == witness)) or 0

    def witnessed_note(self, row: AuditCheckpoint) -> str:
        """The checkpoint's note with the cosignatures collected for it appended (C2SP: more signature lines)."""
        return row.note + "".join(self.cosignature_lines(row.size))

    def latest_witnessed(self, count: int) -> AuditCheckpoint | None:
        """The newest checkpoint with at least `count` cosignatures."""
        sizes = (select(AuditCosignature.checkpoint_size).group_by(AuditCosignature.checkpoint_size)
                 .having(func.count() >= count))
        return self.session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.size.in_(sizes))
                                    .order_by(AuditCheckpoint.size.desc()).limit(1)).first()

    def published(self, *, signer: Signer, origin: str, cosignatures: int = 0) -> PublishedCheckpoint:
        """The checkpoint to serve (`/v1/audit/checkpoint`, exports, receipts' proofs), with its cosignatures.

        Without witnesses (`cosignatures` 0) the latest, signed first if the log grew. With witnesses, the newest
        checkpoint that carries at least `cosignatures` of them (the service signs and submits in the background);
        until one does, the latest as above, with what it has."""
        if cosignatures > 0:
            witnessed = self.latest_witnessed(cosignatures)
            if witnessed is not None:
                return PublishedCheckpoint(size=witnessed.size, note=self.witnessed_note(witnessed))
        row = self.checkpoint(signer=signer, origin=origin)
        return PublishedCheckpoint(size=row.size, note=self.witnessed_note(row), witnessed=cosignatures == 0)

    # ---- reading ---------------------------------------------------------------------------------------------------
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
