"""The audit log's tables.

- `audit_entries`: the leaves, verbatim (RFC 8785 bytes), keyed by their index; beside each leaf, copies of the
  fields auditors search by, indexed. The copies are conveniences: the leaf is the record, and a search result is
  always the leaf itself.
- `audit_entry_records`: which record ids each entry touched (one row per id), for `record_id` searches.
- `audit_nodes`: the hash of every complete subtree `(level, index)` of the Merkle tree, level 0 being the leaf
  hashes, written once when the subtree completes. Proofs read O(log n) of them; the verifier compares each leaf
  with the leaf hash stored here when it was appended.
- `audit_head`: one row: the size of the log, its frontier (the hashes of the complete subtrees making up the tree,
  largest first) and the size of the latest checkpoint. Locking this row serialises appends.
- `audit_checkpoints`: every signed checkpoint published, by size.
- `audit_queue`: entries committed with their call but not yet given an index (deferred sequencing, see
  `exchange.audit.sequencing`): the leaf with its `index` and `prev_checkpoint_size` still to be filled in, and the
  columns its entry will have. No index but the key: a call only inserts here, and the sequencer takes rows in key
  order and deletes them in the transaction that writes their entries. `audit_entries.queue_id` names the queue row
  an entry came from, so the call that queued it can find its index (searched from the log's size when it queued).

No foreign keys: the log is append-only and each table is written in the same transaction as the others.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base


class AuditHead(Base):
    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)


class _SearchColumns:
    """What auditors search by, copied out of the leaf: the same columns on a queued and a sequenced entry."""

    time: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(8))
    agency: Mapped[str | None] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(128))
    purpose: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(_SearchColumns, Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_agency_idx", "agency", "idx"),
        Index("ix_audit_entries_client_id_idx", "client_id", "idx"),
        Index("ix_audit_entries_action_idx", "action", "idx"),
        Index("ix_audit_entries_outcome_idx", "outcome", "idx"),
        Index("ix_audit_entries_purpose_idx", "purpose", "idx"),
        Index("ix_audit_entries_time", "time"),
    )

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    queue_id: Mapped[int | None] = mapped_column(BigInteger)  # the `audit_queue` row it was sequenced from


class AuditQueued(_SearchColumns, Base):
    __tablename__ = "audit_queue"
    # AUTOINCREMENT on SQLite: a key is never given twice, even after the queue was emptied.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)  # RFC 8785, with "index":-1 and "prev_checkpoint_size":-1
    record_ids: Mapped[str] = mapped_column(Text)  # a JSON array of the record ids, once each


class AuditEntryRecord(Base):
    __tablename__ = "audit_entry_records"

    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class AuditNode(Base):
    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(200))
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class AuditCosignature(Base):
    """A witness's cosignature line on the checkpoint of `checkpoint_size` (witness.md §3), verified with the
    witness's key from `EXCHANGE_WITNESSES` before it was stored; served appended to the checkpoint's note."""

    __tablename__ = "audit_cosignatures"

    checkpoint_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(200), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[int] = mapped_column(BigInteger)  # the cosignature's own timestamp (Unix seconds)


class AuditSigner(Base):
    """The checkpoint signer's lease (one row): the worker named `holder` signs checkpoints and submits them to the
    witnesses until `until`; it renews the lease while it runs, and another worker takes it once it has lapsed."""

    __tablename__ = "audit_signer"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime]
