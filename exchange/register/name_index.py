"""A worker's in-memory copy of the register's name index for screening, brought up to date before every use.

The database stays the one truth: `returnee_name_blocks` (each returnee's retrieval keys with its birth year),
`returnee_search_keys` (its names and their keys) and `returnee_name_changes` (one row, in `seq` order, per rewrite of
a returnee's keys, written in the same transaction as the rewrite). A `NameIndex` loads the first two once per worker
and, before each screening, reads the change rows it has not applied yet and re-reads those returnees: a returnee
created or renamed by any worker is screened by the very next call on every worker, and nothing is ever answered
from memory that the database no longer holds for longer than that call's own read.

A `seq` is taken when the row is written and may become visible after a higher one (two transactions committing in
the other order, on PostgreSQL): the index remembers the numbers it skipped and asks for them again on every
refresh, for `GAP_SECONDS` (a rolled-back write leaves its number unused for good; no write transaction lasts that
long). Reads go through a connection of their own, never the caller's session, so a write the caller later rolls
back never reaches the index.

What it answers is what the SQL lookup over the same tables answered: the returnees sharing the most rarity-weighted
keys with a query (each key weighing ``max(1, round(100 * ln((returnees + 1) / returnees having it))``, integers,
ties broken by returnee id in the database's order), born in an admissible year, with their names for scoring.
"""

from __future__ import annotations

import heapq
import logging
import math
import sys
import threading
import time
import uuid
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, String, cast, func, or_, select

from exchange.register.matching import Candidate, birth_date_score
from exchange.register.models import Returnee, ReturneeNameBlock, ReturneeNameChange, ReturneeSearchKey
from exchange.register.transliteration import parse_partial_date

__all__ = ["GAP_SECONDS", "IDF_SCALE", "NameIndex", "name_index_for", "warm_up"]

log = logging.getLogger("exchange.screening")

IDF_SCALE = 100
GAP_SECONDS = 600.0  # how long a skipped change number is asked for again
_GAP_LOOKBACK = 64  # change numbers below the newest one, at load, asked for again (writes not yet committed)

_change = ReturneeNameChange.__table__.c
_block = ReturneeNameBlock.__table__.c
_key = ReturneeSearchKey.__table__.c
_returnee = Returnee.__table__.c


class NameIndex:
    """The retrieval keys, names and birth dates of every returnee of one database, for one worker (thread-safe)."""

    def __init__(self, engine: Engine, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._loaded = False
        self._seen = 0  # the highest change number applied
        self._gaps: dict[int, float] = {}  # change numbers skipped -> when first missed
        self._slot: dict[str, int] = {}  # the returnee id as the database casts it to text -> slot
        self._free: list[int] = []
        self._ids: list[str] = []  # slot -> that text
        self._order: list[str] = []  # slot -> the id as the database orders it (32 hex digits)
        self._year: list[int | None] = []
        self._blocks: list[tuple[str, ...]] = []
        self._candidate: list[Candidate | None] = []
        self._postings: dict[str, dict[int | None, array[int]]] = {}
        self._returnees = 0

    # ---- queries -----------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Apply every change committed since the last refresh (on the first call, load everything)."""
        with self._lock, self._engine.connect() as connection:
            if self._loaded:
                self._catch_up(connection)
            else:
                self._load(connection)
                self._loaded = True

    def weights(self, blocks: Iterable[str]) -> dict[str, int]:
        """The weight of each of these keys that some returnee has (rare keys weigh more)."""
        with self._lock:
            postings = self._postings
            frequencies = {b: sum(map(len, postings[b].values())) for b in blocks if b in postings}
            if not frequencies:
                return {}
            total = max(self._returnees, max(frequencies.values())) + 1
        return {b: max(1, round(IDF_SCALE * math.log(total / n))) for b, n in frequencies.items()}

    def candidates(
        self, blocks: Mapping[str, int], weights: Mapping[str, int], *, years: Sequence[int] | None, unknown: bool,
        limit: int, birth_date: str | None = None,
    ) -> list[Candidate]:
        """At most `limit` returnees sharing keys with the query, born in one of `years` (all years when None) or,
        when `unknown`, of unknown birth year: those with the heaviest sum, over the query's words, of the heaviest
        key each shares with the word (`blocks`: key -> the position of the query word it comes from); among equal
        sums, those whose birth date agrees best with the query's `birth_date` (`matching.birth_date_score`, as the
        scorer will weigh it: namesakes beyond the limit are told apart by their birth dates), then by id. Raises
        `ValueError` for a malformed `birth_date`."""
        with self._lock:
            wanted: list[int | None] | None = None
            if years is not None:
                wanted = [*years, None] if unknown else list(years)
            words: dict[int, list[tuple[int, str]]] = {}
            for block, word in blocks.items():
                weight = weights.get(block)
                if weight is not None:
                    words.setdefault(word, []).append((weight, block))
            scores: dict[int, int] = {}
            get = scores.get
            for keys in words.values():
                best: dict[int, int] = {}  # slot -> the heaviest key it shares with this word
                keep = best.setdefault
                for weight, block in sorted(keys, reverse=True):
                    by_year = self._postings[block]
                    lists = by_year.values() if wanted is None else [by_year[y] for y in wanted if y in by_year]
                    for slots in lists:
                        for slot in slots:
                            keep(slot, weight)
                for slot, weight in best.items():
                    scores[slot] = get(slot, 0) + weight
            chosen = self._best(scores, limit, birth_date)
            return [self._candidate_at(slot) for slot in chosen]

    def _best(self, scores: dict[int, int], limit: int, birth_date: str | None) -> list[int]:
        order = self._order
        if len(scores) <= limit:
            return list(scores)
        cutoff = heapq.nlargest(limit, scores.values())[-1]
        above = [slot for slot, score in scores.items() if score > cutoff]
        tied = [slot for slot, score in scores.items() if score == cutoff]
        room = limit - len(above)
        if birth_date is None or len(tied) <= room:
            return above + sorted(tied, key=order.__getitem__)[:room]
        return above + self._closest_births(tied, room, birth_date)

    def _closest_births(self, slots: list[int], room: int, birth_date: str) -> list[int]:
        """The `room` slots whose birth dates agree best with `birth_date` (`birth_date_score`), then by id. Scored by
        birth year first (the best score a date in that year can get), so that only the years that can still make
        the cut have their dates scored."""
        order, year_of = self._order, self._year
        by_year: dict[int | None, list[int]] = {}
        for slot in slots:
            year = year_of[slot]
            group = by_year.get(year)
            if group is None:
                group = by_year[year] = []
            group.append(slot)
        # a date in year y scores at most what the year alone scores against the query's full year (the same year:
        # 100, as an exact date; unknown: UNKNOWN_BIRTH_DATE_SCORE; another year: its year-only score)
        query_year = f"{parse_partial_date(birth_date)[0]:04d}"
        bounds = sorted(((100.0 if year is not None and f"{year:04d}" == query_year
                          else birth_date_score(query_year, None if year is None else f"{year:04d}"), year)
                         for year in by_year), key=lambda b: -b[0])
        scored: list[tuple[float, str, int]] = []
        agreement: dict[str | None, float] = {}  # a candidate birth date -> its agreement with the query's
        for bound, year in bounds:
            if len(scored) >= room and bound < -scored[room - 1][0]:
                break
            for slot in by_year[year]:
                date = self._candidate_at(slot).birth_date
                score = agreement.get(date)
                if score is None:
                    score = agreement[date] = birth_date_score(birth_date, date)
                scored.append((-score, order[slot], slot))
            scored.sort()
        return [slot for _, _, slot in scored[:room]]

    def _candidate_at(self, slot: int) -> Candidate:
        candidate = self._candidate[slot]
        if candidate is None:
            raise LookupError(slot)  # a slot in the postings always has its candidate
        return candidate

    # ---- loading and catching up -------------------------------------------------------------------------------

    def _load(self, connection: Connection) -> None:
        newest = connection.scalar(select(func.max(_change.seq))) or 0
        recent = set(connection.scalars(select(_change.seq).where(_change.seq > newest - _GAP_LOOKBACK)))
        now = self._monotonic()
        self._gaps = {seq: now for seq in range(max(1, newest - _GAP_LOOKBACK + 1), newest + 1) if seq not in recent}
        self._seen = newest
        self._fill(connection, None)

    def _catch_up(self, connection: Connection) -> None:
        now = self._monotonic()
        self._gaps = {seq: since for seq, since in self._gaps.items() if now - since < GAP_SECONDS}
        condition = _change.seq > self._seen
        if self._gaps:
            condition = or_(condition, _change.seq.in_(sorted(self._gaps)))
        rows = connection.execute(select(_change.seq, cast(_change.returnee_id, String)).where(condition)).all()
        if not rows:
            return
        found = {seq for seq, _ in rows}
        for seq in found:
            self._gaps.pop(seq, None)
        newest = max(found)
        for seq in range(self._seen + 1, newest):
            if seq not in found:
                self._gaps[seq] = now
        self._seen = max(self._seen, newest)
        self._fill(connection, {rid for _, rid in rows})

    def _fill(self, connection: Connection, ids: set[str] | None) -> None:
        """(Re)load these returnees (every returnee when None): forget what the index held for them, then read their
        birth date, names and retrieval keys."""
        rid = cast(_returnee.id, String)
        returnees = select(rid, _returnee.id, _returnee.birth_date)
        keys = (select(cast(_key.returnee_id, String), _key.key, _key.original)
                .where(_key.kind == "name").order_by(_key.returnee_id, _key.id))
        # one row per returnee, its keys joined by spaces (keys have none): 17 times fewer rows to fetch
        blocks = (select(cast(_block.returnee_id, String), func.aggregate_strings(_block.block, " "),
                         func.min(_block.birth_year))
                  .group_by(_block.returnee_id))
        if ids is not None:
            for text in ids:
                self._forget(text)
            wanted = [uuid.UUID(text) for text in sorted(ids)]  # the columns, not their text: the indexes serve
            returnees = returnees.where(_returnee.id.in_(wanted))
            keys = keys.where(_key.returnee_id.in_(wanted))
            blocks = blocks.where(_block.returnee_id.in_(wanted))
        births: dict[str, tuple[uuid.UUID, str | None]] = {
            text: (record_id, birth) for text, record_id, birth in connection.execute(returnees)}
        names: dict[str, list[tuple[str, str]]] = {}
        for text, key, original in connection.execute(keys):
            if text in births:
                names.setdefault(text, []).append((key, original))
        found: dict[str, tuple[tuple[str, ...], int | None]] = {
            text: (tuple(map(sys.intern, joined.split(" "))), year)
            for text, joined, year in connection.execute(blocks) if text in births}
        for text, (record_id, birth) in births.items():
            values = names.get(text, [])
            candidate = Candidate(record_id=str(record_id), names=tuple(o for _, o in values),
                                  keys=tuple(k for k, _ in values), birth_date=birth) if values else None
            keys_of, year = found.get(text, ((), None))
            self._add(text, record_id.hex, year, keys_of, candidate)

    def _add(self, text: str, order: str, year: int | None, blocks: tuple[str, ...],
             candidate: Candidate | None) -> None:
        if self._free:
            slot = self._free.pop()
            self._ids[slot], self._order[slot], self._year[slot] = text, order, year
            self._blocks[slot], self._candidate[slot] = blocks, candidate
        else:
            slot = len(self._ids)
            self._ids.append(text)
            self._order.append(order)
            self._year.append(year)
            self._blocks.append(blocks)
            self._candidate.append(candidate)
        self._slot[text] = slot
        self._returnees += 1
        if candidate is None:
            blocks = ()  # no name to score: nothing to retrieve it by (as the SQL lookup's candidates had names)
            self._blocks[slot] = blocks
        for block in blocks:
            by_year = self._postings.get(block)
            if by_year is None:
                by_year = self._postings[block] = {}
            slots = by_year.get(year)
            if slots is None:
                slots = by_year[year] = array("i")
            slots.append(slot)

    def _forget(self, text: str) -> None:
        slot = self._slot.pop(text, None)
        if slot is None:
            return
        year = self._year[slot]
        for block in self._blocks[slot]:
            by_year = self._postings[block]
            slots = by_year[year]
            slots.remove(slot)
            if not slots:
                del by_year[year]
                if not by_year:
                    del self._postings[block]
        self._blocks[slot], self._candidate[slot] = (), None
        self._free.append(slot)
        self._returnees -= 1


_indexes: weakref.WeakKeyDictionary[Engine, NameIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def name_index_for(engine: Engine) -> NameIndex:
    """The one `NameIndex` of this worker for this engine's database."""
    with _indexes_lock:
        index = _indexes.get(engine)
        if index is None:
            index = _indexes[engine] = NameIndex(engine)
        return index


def warm_up(engine: Engine) -> threading.Thread:
    """Load this worker's index in a background thread, so that the worker's first screening does not wait for the
    whole load (some seconds at 100,000 returnees; a screening that comes first waits for the load under the index's
    lock, as without a warm-up). A database not reachable yet is logged, and the first screening loads instead."""

    def load() -> None:
        try:
            name_index_for(engine).refresh()
        except Exception as e:  # noqa: BLE001  (any failure: the first screening loads, and answers its error)
            log.warning("name index not loaded ahead", extra={"error": type(e).__name__})

    thread = threading.Thread(target=load, name="name-index-warm-up", daemon=True)
    thread.start()
    return thread
