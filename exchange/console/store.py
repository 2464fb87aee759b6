"""The console's local index: a SQLite file holding the verified entries, the Merkle nodes for inclusion proofs, the
chart aggregates and the anomaly flags; and the auditor's review notes (a second, persistent file).

Written by one loader thread (`Indexer`), read by the web threads, each with its own connection.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from exchange.audit.services import StoredEntry
from exchange.files import secure_sqlite_files
from exchange.protocol import merkle

# Stored Merkle nodes: every node from this level up; the lower ones are recomputed from the leaf hashes (at most
# 2**NODE_LEVEL of them per node), so the index holds size / 2**NODE_LEVEL nodes instead of 2 * size.
NODE_LEVEL = 6
NODE_MASK = (1 << NODE_LEVEL) - 1
PAGE = 50
SORT_THREADS = 2  # SQLite's worker threads for the sorts that build the indexes (besides the loader's own)
MAX_PAGE = 500
# what a search answers of each entry (read from its leaf); the searchable ones are also columns of `entries`
COLUMNS = ("time", "action", "outcome", "status", "reason", "agency", "client_id", "officer", "purpose", "case_ref",
           "method", "path", "recipient", "source_ip")
SEARCHABLE = ("agency", "client_id", "officer", "purpose", "action", "outcome", "case_ref")
DATA_ACTIONS = frozenset({"collect", "alter", "consult", "disclose", "erase"})

LAYOUT = "3"  # of the tables below: an index in another layout is rebuilt (it is a cache of the verified log)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- the searched columns only, narrow (their indexes are built by scanning them); the leaves beside them
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, ts INTEGER, agency TEXT, client_id TEXT, officer TEXT, purpose TEXT, action TEXT,
    outcome TEXT, case_ref TEXT);
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (record_id TEXT NOT NULL, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_agency_day (day TEXT, agency TEXT, n INTEGER, PRIMARY KEY (day, agency));
CREATE TABLE IF NOT EXISTS agg_denials_day (day TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE IF NOT EXISTS agg_purpose (purpose TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE IF NOT EXISTS agg_heat (dow INTEGER, hour INTEGER, n INTEGER, PRIMARY KEY (dow, hour));
CREATE TABLE IF NOT EXISTS flags (
    key TEXT PRIMARY KEY, rule TEXT, subject TEXT, start_ts INTEGER, end_ts INTEGER, count INTEGER,
    explanation TEXT, search TEXT);
CREATE TABLE IF NOT EXISTS flag_entries (flag_key TEXT, idx INTEGER);
"""
INDEXES = [f"CREATE INDEX IF NOT EXISTS entries_{c} ON entries ({c}, idx)" for c in SEARCHABLE] + [
    "CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts)",
    "CREATE INDEX IF NOT EXISTS records_id ON records (record_id, idx)",
    "CREATE INDEX IF NOT EXISTS flag_entries_key ON flag_entries (flag_key, idx)",
    "CREATE INDEX IF NOT EXISTS flags_rule ON flags (rule, start_ts)",
]


def connect(path: Path) -> sqlite3.Connection:
    secure_sqlite_files(str(path))  # the verified log: who consulted whom (owner-only, as the exchange's own files)
    connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def parse_time(text: str) -> int:
    """Seconds since the epoch of an entry's RFC 3339 UTC time."""
    return int(datetime.fromisoformat(text).timestamp())


def day_of(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


# ---- writing ------------------------------------------------------------------------------------------------------


class Indexer:
    """Takes the entries the verifier accepted, in order, and writes them in batches (one transaction each)."""

    def __init__(self, path: Path, *, batch: int = 20_000) -> None:
        self.path = path
        self.db = connect(path)
        # the index is rebuilt from a verified source whenever it is not marked complete: no need to sync it
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)
        self._days: dict[int, str] = {}
        self._batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self._writer: threading.Thread | None = None
        self._failure: sqlite3.Error | None = None
        self.batch = batch
        self._leaves: list[tuple[int, int, bytes, bytes]] = []
        self._nodes: list[tuple[int, int, bytes]] = []
        self.frontier = merkle.Frontier()
        self.size = 0
        self.agency_day: Counter[tuple[str, str]] = Counter()
        self.denials_day: Counter[str] = Counter()
        self.purposes: Counter[str] = Counter()

    def reusable(self, origin: str) -> bool:
        """Whether this file holds a complete index of `origin` in this version's layout (else it is rebuilt)."""
        return (self.meta("origin") == origin and self.meta("complete") == "1"
                and self.meta("layout") == LAYOUT)

    def resume(self) -> int:
        """Continue an index kept from an earlier run (server mode): how many entries it holds. They are read back
        (`kept_entries`) and verified again with the new ones; only the new ones are written."""
        return int(self.meta("size") or 0)

    def kept_entries(self, end: int) -> Iterator[StoredEntry]:
        cursor = self.db.execute("SELECT idx, leaf, leaf_hash FROM leaves WHERE idx < ? ORDER BY idx", (end,))
        while rows := cursor.fetchmany(10_000):
            for idx, leaf, leaf_hash in rows:
                yield StoredEntry(idx, bytes(leaf), bytes(leaf_hash))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    def add(self, index: int, leaf: bytes, entry: dict[str, Any], ts: int, *, store: bool = True,
            leaf_hash: bytes | None = None) -> None:
        """Count the entry into the tree and the aggregates; with `store`, also write it (not if already kept).
        `leaf_hash`: the entry's leaf hash if the caller verified it already."""
        leaf_hash = leaf_hash or merkle.leaf_hash(leaf)
        get = entry.get
        if store:
            if index & NODE_MASK == NODE_MASK:  # the leaf completes a node of NODE_LEVEL (and maybe more)
                for (level, node_index), value in self.frontier.append(leaf_hash):
                    if level >= NODE_LEVEL:
                        self._nodes.append((level, node_index, value))
            else:
                self.frontier.push(leaf_hash)
            self._leaves.append((index, ts, leaf_hash, leaf))  # the columns are read from the leaf by SQLite
        else:
            self.frontier.push(leaf_hash)
        day = self._days.get(ts // 86400)
        if day is None:
            day = self._days[ts // 86400] = day_of(ts)
        self.agency_day[(day, get("agency") or "-")] += 1
        if get("outcome") == "failure" and get("status") in (401, 403):
            self.denials_day[day] += 1
        self.purposes[get("purpose") or "-"] += 1
        self.size = index + 1
        if len(self._leaves) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Hand the batch to the writer thread. It binds four values per entry and SQLite does the rest (the columns
        read from the leaf's JSON, the inserts) without the GIL: on another core, beside the verifying and parsing of
        the next batch."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="console-index-writer", daemon=True)
            self._writer.start()
        self._check_writer()
        self._batches.put((self._leaves, self._nodes))
        self._leaves, self._nodes = [], []

    def _write(self) -> None:
        with closing(connect(self.path)) as db:
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("PRAGMA secure_delete=OFF")  # the staging rows are the verified log's: nothing to scrub
            db.execute("CREATE TEMP TABLE staged (idx INTEGER PRIMARY KEY, ts INTEGER, leaf_hash BLOB, leaf BLOB)")
            while (batch := self._batches.get()) is not None:
                if self._failure is not None:
                    continue  # drain: the loader is told at its next flush or at finish
                leaves, nodes = batch
                try:
                    with db:
                        db.executemany("INSERT INTO staged VALUES (?, ?, ?, ?)", leaves)
                        for statement in _FROM_STAGED:
                            db.execute(statement)
                        db.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)", nodes)
                except sqlite3.Error as e:
                    self._failure = e

    def _check_writer(self) -> None:
        if self._failure is not None:
            raise self._failure

    def drain(self) -> None:
        """Wait until every batch handed over is written."""
        if self._writer is not None:
            self._batches.put(None)
            self._writer.join()
            self._writer = None
        self._check_writer()

    def finish(self, heat: Counter[tuple[int, int]], flags: Sequence[Flag]) -> None:
        """Write what is left, the aggregates, the flags, the indexes (built once, after the bulk insert)."""
        self.flush()
        self.drain()
        with self.db:
            self.db.execute("DELETE FROM agg_agency_day")
            self.db.executemany("INSERT INTO agg_agency_day VALUES (?, ?, ?)",
                                [(d, a, n) for (d, a), n in self.agency_day.items()])
            self.db.execute("DELETE FROM agg_denials_day")
            self.db.executemany("INSERT INTO agg_denials_day VALUES (?, ?)", self.denials_day.items())
            self.db.execute("DELETE FROM agg_purpose")
            self.db.executemany("INSERT INTO agg_purpose VALUES (?, ?)", self.purposes.items())
            self.db.execute("DELETE FROM agg_heat")
            self.db.executemany("INSERT INTO agg_heat VALUES (?, ?, ?)", [(d, h, n) for (d, h), n in heat.items()])
            self.db.execute("DELETE FROM flags")
            self.db.execute("DELETE FROM flag_entries")
            self.db.executemany("INSERT INTO flags VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                [(f.key, f.rule, f.subject, f.start_ts, f.end_ts, f.count, f.explanation,
                                  json.dumps(f.search)) for f in flags])
            self.db.executemany("INSERT INTO flag_entries VALUES (?, ?)",
                                [(f.key, i) for f in flags for i in f.entries])
            self.db.execute(f"PRAGMA threads={SORT_THREADS}")  # each index is a sort of the table: in parallel
            for statement in INDEXES:
                self.db.execute(statement)
            self.db.execute("ANALYZE")
        self.set_meta({"size": str(self.size)})

    def close(self) -> None:
        self.drain()
        self.db.close()


_Batch = tuple[list[tuple[int, int, bytes, bytes]], list[tuple[int, int, bytes]]]
# A batch goes from the staging table to the index: the searched columns are the leaf's members (json_extract: SQL
# NULL for a JSON null or a missing member, as `dict.get`), the records one row per element of `record_ids`.
_LEAF = "CAST(leaf AS TEXT)"
_FROM_STAGED = (
    "INSERT INTO leaves SELECT idx, leaf_hash, leaf FROM staged",
    f"INSERT INTO entries (idx, ts, {', '.join(SEARCHABLE)}) SELECT idx, ts, "  # noqa: S608 (column names only)
    + ", ".join(f"json_extract({_LEAF}, '$.{c}')" for c in SEARCHABLE) + " FROM staged",
    "INSERT INTO records SELECT CAST(r.value AS TEXT), s.idx FROM staged s, json_each(CAST(s.leaf AS TEXT), "
    "'$.record_ids') r WHERE json_type(CAST(s.leaf AS TEXT), '$.record_ids') = 'array'",
    "DELETE FROM staged",
)


@dataclass(kw_only=True)
class Flag:
    key: str  # stable across runs: a review note stays attached to it
    rule: str
    subject: str
    start_ts: int
    end_ts: int
    count: int
    explanation: str
    search: dict[str, str]  # the search that lists every entry of the flag
    entries: list[int]


# ---- reading ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Query:
    filters: dict[str, str]
    record_id: str | None = None
    time_from: int | None = None
    time_to: int | None = None
    action_prefix: str | None = None
    before: int | None = None  # paging: entries with a smaller index
    limit: int = PAGE


class Index:
    """Read access to the index, one connection per call (the web server is threaded)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            yield db

    def size(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'size'").fetchone()
            return int(row[0]) if row else 0

    def search(self, query: Query) -> dict[str, Any]:
        where: list[str] = []
        args: list[object] = []
        for column, value in query.filters.items():
            if column not in SEARCHABLE:
                raise ValueError(f"no search by {column}")
            where.append(f"e.{column} = ?")
            args.append(value)
        if query.action_prefix:
            where.append("e.action LIKE ?")
            args.append(query.action_prefix.replace("%", "") + "%")
        if query.time_from is not None:
            where.append("e.ts >= ?")
            args.append(query.time_from)
        if query.time_to is not None:
            where.append("e.ts < ?")
            args.append(query.time_to)
        if query.before is not None:
            where.append("e.idx < ?")
            args.append(query.before)
        source = "entries e"
        if query.record_id:
            source = "records r JOIN entries e ON e.idx = r.idx"
            where.insert(0, "r.record_id = ?")
            args.insert(0, query.record_id)
        # built from the column names above and placeholders only: every value is a parameter
        sql = (f"SELECT e.idx, l.leaf FROM {source} JOIN leaves l ON l.idx = e.idx"  # noqa: S608
               + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY e.idx DESC LIMIT ?")
        limit = max(1, min(query.limit, MAX_PAGE))
        with self._db() as db:
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        items = [entry_of(row) for row in rows[:limit]]
        return {"items": items, "next_before": items[-1]["index"] if len(rows) > limit else None}

    def entries(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        wanted = sorted(set(indices))
        found: list[dict[str, Any]] = []
        with self._db() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                sql = f"SELECT idx, leaf FROM leaves WHERE idx IN ({_marks(len(chunk))}) ORDER BY idx"  # noqa: S608
                found += [entry_of(row) for row in db.execute(sql, chunk)]
        return found

    def leaves(self, indices: Sequence[int]) -> dict[int, tuple[bytes, bytes]]:
        with self._db() as db:
            out: dict[int, tuple[bytes, bytes]] = {}
            for start in range(0, len(indices), 500):
                chunk = list(indices[start:start + 500])
                sql = f"SELECT idx, leaf, leaf_hash FROM leaves WHERE idx IN ({_marks(len(chunk))})"  # noqa: S608
                for idx, leaf, leaf_hash in db.execute(sql, chunk):
                    out[idx] = (bytes(leaf), bytes(leaf_hash))
            return out

    def nodes(self, wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
        """The hashes of complete subtrees: stored from NODE_LEVEL up, recomputed from the leaf hashes below it."""
        found: dict[merkle.Node, bytes] = {}
        with self._db() as db:
            for level, index in wanted:
                if level >= NODE_LEVEL:
                    row = db.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
                    if row is None:
                        raise LookupError(f"node {(level, index)} is not in the index")
                    found[(level, index)] = bytes(row[0])
                else:
                    start = index << level
                    hashes = [bytes(h) for (h,) in db.execute(
                        "SELECT leaf_hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
                        (start, start + (1 << level)))]
                    if len(hashes) != 1 << level:
                        raise LookupError(f"node {(level, index)} is not in the index")
                    found[(level, index)] = merkle.root_of(hashes)
        return found

    def inclusion_proof(self, index: int, size: int) -> tuple[bytes, ...]:
        ranges = merkle.inclusion_ranges(index, size)
        return merkle.proof_hashes(ranges, self.nodes(merkle.nodes_for(ranges)))

    def aggregates(self) -> dict[str, Any]:
        with self._db() as db:
            return {
                "agency_day": [tuple(r) for r in db.execute("SELECT day, agency, n FROM agg_agency_day ORDER BY day")],
                "denials_day": [tuple(r) for r in db.execute("SELECT day, n FROM agg_denials_day ORDER BY day")],
                "purpose": [tuple(r) for r in db.execute("SELECT purpose, n FROM agg_purpose ORDER BY n DESC")],
                "heat": [tuple(r) for r in db.execute("SELECT dow, hour, n FROM agg_heat")],
            }

    def flags(self, *, rule: str | None = None, limit: int = 300) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The first `limit` flags (of `rule`, if given) in time order, and how many there are of each rule."""
        with self._db() as db:
            counts = {r: n for r, n in db.execute("SELECT rule, count(*) FROM flags GROUP BY rule")}
            rows = db.execute("SELECT * FROM flags WHERE ? IS NULL OR rule = ? ORDER BY start_ts, key LIMIT ?",
                              (rule, rule, limit))
            return [dict(row) | {"search": json.loads(row["search"])} for row in rows], counts

    def flag(self, key: str) -> tuple[dict[str, Any], list[int]] | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM flags WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            indices = [i for (i,) in db.execute("SELECT idx FROM flag_entries WHERE flag_key = ? ORDER BY idx",
                                                (key,))]
            return dict(row) | {"search": json.loads(row["search"])}, indices

    def key_operations(self) -> list[dict[str, Any]]:
        """The keys and clients that key and client operations touched, with how many operations each."""
        with self._db() as db:
            return [dict(row) for row in db.execute(
                "SELECT r.record_id AS id, count(*) AS operations, min(e.idx) AS first, max(e.idx) AS last "
                "FROM entries e JOIN records r ON r.idx = e.idx "
                "WHERE e.action LIKE 'key.%' OR e.action LIKE 'client.%' GROUP BY r.record_id ORDER BY last DESC")]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def entry_of(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """An entry as a search answers it, from (index, leaf)."""
    index, leaf = tuple(row)
    members = orjson.loads(leaf)
    return {"index": index, **{c: members.get(c) for c in COLUMNS}, "record_ids": members.get("record_ids") or []}


# ---- the auditor's notes ------------------------------------------------------------------------------------------


class Reviews:
    """Review notes on flags, kept in a file of the auditor's (they outlive the index)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        secure_sqlite_files(str(path))  # the auditor's notes: owner-only, created so before SQLite opens the file
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS reviews (origin TEXT, flag_key TEXT, reviewed_at TEXT, note TEXT, "
                       "PRIMARY KEY (origin, flag_key))")

    def all(self, origin: str) -> dict[str, dict[str, str]]:
        with closing(sqlite3.connect(self.path)) as db:
            return {key: {"reviewed_at": at, "note": note} for key, at, note in db.execute(
                "SELECT flag_key, reviewed_at, note FROM reviews WHERE origin = ?", (origin,))}

    def mark(self, origin: str, flag_key: str, note: str) -> dict[str, str]:
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("INSERT OR REPLACE INTO reviews VALUES (?, ?, ?, ?)", (origin, flag_key, at, note))
        return {"reviewed_at": at, "note": note}

    def clear(self, origin: str, flag_key: str) -> None:
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("DELETE FROM reviews WHERE origin = ? AND flag_key = ?", (origin, flag_key))
