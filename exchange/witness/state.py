"""The witness's state: one SQLite file of its own (WAL, `synchronous=FULL`: an answered cosignature is on disk).

- `logs`: each log the witness knows (its origin and the log's C2SP verifier key), with the latest checkpoint it
  cosigned (size, root, the note as received); never a smaller tree.
- `evidence`: every checkpoint it refused because it contradicts what it cosigned before (a consistency proof that
  does not verify, the same size with another root): the request as received, when, and why. A signed checkpoint
  that contradicts an earlier one is proof that the log showed two views; the witness keeps it for anyone to see.

`advance` checks and moves a log's state in one `BEGIN IMMEDIATE` transaction (SQLite's write lock), so two
submissions can never both pass the check against the same old size (C2SP tlog-witness: the rollback race).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    vkey TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    root BLOB,
    checkpoint TEXT,
    updated_at INTEGER
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    witnessed_size INTEGER NOT NULL,
    request BLOB NOT NULL
);
"""
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class LogState:
    origin: str
    vkey: str
    size: int
    root: bytes | None
    checkpoint: str | None
    updated_at: int | None


@dataclass(frozen=True, kw_only=True)
class Evidence:
    id: int
    received_at: int
    origin: str
    reason: str
    witnessed_size: int
    request: bytes


class WitnessState:
    """The witness's SQLite file. One connection per call (the HTTP server answers on several threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as connection:
            connection.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def add_log(self, *, origin: str, vkey: str) -> None:
        """Know the log `origin` by its verifier key (replacing the key keeps what was cosigned)."""
        with self._transaction() as connection:
            connection.execute("INSERT INTO logs (origin, vkey) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET "
                               "vkey = excluded.vkey", (origin, vkey))

    def logs(self) -> list[LogState]:
        with self._transaction() as connection:
            rows = connection.execute("SELECT origin, vkey, size, root, checkpoint, updated_at FROM logs "
                                      "ORDER BY origin").fetchall()
        return [LogState(origin=r[0], vkey=r[1], size=r[2], root=r[3], checkpoint=r[4], updated_at=r[5])
                for r in rows]

    def log(self, origin: str) -> LogState | None:
        return next((state for state in self.logs() if state.origin == origin), None)

    def advance(self, origin: str, decide: Callable[[LogState], T]) -> T:
        """Under the write lock: read the log's state, let `decide` check the submission against it (it returns the
        new state to persist as a `LogState`, or anything else to persist nothing), persist, commit, return."""
        with self._transaction() as connection:
            row = connection.execute("SELECT origin, vkey, size, root, checkpoint, updated_at FROM logs "
                                     "WHERE origin = ?", (origin,)).fetchone()
            if row is None:
                raise KeyError(origin)
            current = LogState(origin=row[0], vkey=row[1], size=row[2], root=row[3], checkpoint=row[4],
                               updated_at=row[5])
            decision = decide(current)
            if isinstance(decision, LogState):
                if decision.size < current.size:
                    raise AssertionError("a witness never goes back to a smaller tree")
                connection.execute("UPDATE logs SET size = ?, root = ?, checkpoint = ?, updated_at = ? "
                                   "WHERE origin = ?", (decision.size, decision.root, decision.checkpoint,
                                                        decision.updated_at, origin))
            return decision

    def keep_evidence(self, *, origin: str, reason: str, witnessed_size: int, request: bytes) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT INTO evidence (received_at, origin, reason, witnessed_size, request) "
                               "VALUES (?, ?, ?, ?, ?)", (int(time.time()), origin, reason, witnessed_size, request))

    def evidence(self) -> list[Evidence]:
        with self._transaction() as connection:
            rows = connection.execute("SELECT id, received_at, origin, reason, witnessed_size, request "
                                      "FROM evidence ORDER BY id").fetchall()
        return [Evidence(id=r[0], received_at=r[1], origin=r[2], reason=r[3], witnessed_size=r[4], request=r[5])
                for r in rows]
