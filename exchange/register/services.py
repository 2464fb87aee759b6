"""The register's business logic: need to know, the lifecycle, optimistic concurrency and screening.

Services receive their session and clock; they flush but never commit. The request's unit of work commits once the
response is ready (`web.pipeline`), so a refused call changes nothing and an acknowledged one is
durable. Views hand in already-validated dictionaries from the marshmallow schemas.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, bindparam, delete, exists, func, inspect, or_, select
from sqlalchemy import insert as sql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, joinedload, raiseload, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from exchange.db import Record, changed, utcnow, version_holds
from exchange.events.services import Outbox
from exchange.identity import Caller
from exchange.protocol.errors import Conflict, PreconditionFailed, ValidationFailed
from exchange.register import policy
from exchange.register.errors import (
    DuplicateRegisterNumber,
    InvalidState,
    InvalidTransition,
    ManifestTooLarge,
    RecordNotFound,
)
from exchange.register.events import RegisterEvents, is_hit
from exchange.register.lifecycle import DECISION_TARGET, Via, check_requester, check_transition
from exchange.register.matching import (
    Match,
    candidate_birth_years,
    name_blocks,
    query_blocks,
    rank_candidates,
)
from exchange.register.models import (
    BorderCrossing,
    BorderInstruction,
    HotlineContact,
    ProsecutorialDecision,
    RegisterCounter,
    Returnee,
    ReturneeNameBlock,
    ReturneeNameChange,
    ReturneeSearchKey,
    VettingAssessment,
)
from exchange.register.name_index import NameIndex, name_index_for
from exchange.register.transliteration import document_key, name_key, parse_partial_date

Clock = Callable[[], datetime]
R = TypeVar("R", bound=Record)

# A returnee's record collections (relationship names), each loaded with it by `_load` for writes and screening.
# A returnee read joins its non-empty collections in one statement while that is at most this many rows (the product
# of their sizes; typical records have one or two of each), and reads them one statement each beyond.
JOINED_ROWS_LIMIT = 16
# Name screening scores at most this many returnees per query: those sharing the rarest retrieval keys with the most
# of its words (`matching.query_blocks`; each key weighted by its inverse document frequency in the register, each
# query word counting its heaviest shared key: `name_index.NameIndex.candidates`), among those born in a year that
# can still reach the threshold; among equal weights (namesakes), those whose birth date agrees best with the query's.
SCREENING_CANDIDATES = 300
MANIFEST_LIMIT = 500  # travellers per manifest
RETURNEE_COLLECTIONS = (
    "hotline_contacts", "border_instructions", "border_crossings", "vetting_assessments", "prosecutorial_decisions",
)


@dataclass(frozen=True, kw_only=True)
class PageRequest:
    page: int
    page_size: int


@dataclass(frozen=True, kw_only=True)
class Page(Generic[R]):
    items: list[R]
    page: int
    page_size: int
    total: int


@dataclass(frozen=True, kw_only=True)
class ScreeningHit:
    returnee: Returnee
    score: float
    name_score: float | None
    birth_date_score: float | None
    matched_on: str  # "document" or "name"
    matched_value: str


@dataclass(frozen=True, kw_only=True)
class NameQuery:
    """One traveller of a batch screened by name (`RegisterService.screen_many`)."""

    name: str
    birth_date: str | None = None


def _filters_for(model: type[Record], stmt: Select[Any], filters: Mapping[str, Any]) -> Select[Any]:
    """Apply the list filters of the query schemas; every key here is validated before it arrives."""
    for name, value in filters.items():
        if value is None:
            continue
        if name == "updated_since":
            stmt = stmt.where(model.updated_at >= value)
        elif name == "unmatched":
            linked = BorderCrossing.returnee_id
            stmt = stmt.where(linked.is_(None) if value else linked.is_not(None))
        elif name == "active_at":
            stmt = stmt.where(
                BorderInstruction.valid_from <= value,
                (BorderInstruction.valid_until.is_(None)) | (BorderInstruction.valid_until > value),
            )
        elif name == "occurred_from":
            stmt = stmt.where(BorderCrossing.occurred_at >= value)
        elif name == "occurred_to":
            stmt = stmt.where(BorderCrossing.occurred_at < value)
        elif isinstance(value, frozenset):  # a coarse term stands for a set of real values (policy.COARSE_STATUS)
            stmt = stmt.where(getattr(model, name).in_(sorted(value)))
        else:
            stmt = stmt.where(getattr(model, name) == value)
    return stmt


def _active_instructions(now: datetime) -> Any:
    """The condition that picks each returnee's active border instruction (`Returnee.active_border_instruction`):
    valid at `now`, and no other instruction of the same returnee valid at `now` and newer."""
    other = aliased(BorderInstruction)

    def valid(instruction: Any) -> Any:
        return and_(instruction.valid_from <= now,
                    or_(instruction.valid_until.is_(None), instruction.valid_until > now))

    newer = exists().where(
        other.returnee_id == BorderInstruction.returnee_id, other.id != BorderInstruction.id, valid(other),
        or_(other.valid_from > BorderInstruction.valid_from,
            and_(other.valid_from == BorderInstruction.valid_from, other.created_at > BorderInstruction.created_at)),
    )
    return and_(valid(BorderInstruction), ~newer)


def _rows_for(model: type[Record], agency: str, stmt: Select[Any], now: datetime) -> Select[Any]:
    """Narrow `stmt` to the rows of `model` the agency may see at all (policy.ROWS)."""
    rows = policy.ROWS.get((model, agency))
    if rows == "active":
        return stmt.where(_active_instructions(now))
    return stmt
def screening_keys(
    *, full_name: str, given_name: str, surname: str, name_variants: Iterable[Mapping[str, Any]],
    identifications: Iterable[Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], str], set[str]]:
    """What a returnee's screening reads: its search keys (``(kind, key) -> original``, names in every script and
    document numbers, empty keys left out) and the retrieval keys of its names (`matching.name_blocks`)."""
    names = [full_name, f"{given_name} {surname}", *(v["value"] for v in name_variants)]
    keys: dict[tuple[str, str], str] = {}
    for original in names:
        keys.setdefault(("name", name_key(original)), original)
    for identification in identifications:
        keys.setdefault(("document", document_key(identification["id"])), identification["id"])
    keys = {(kind, key): original for (kind, key), original in keys.items() if key}
    blocks: set[str] = set()
    for kind, key in keys:
        if kind == "name":
            blocks |= name_blocks(tuple(key.split()))
    return keys, blocks


def _returnee_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validated returnee fields as column values: `person_name` spreads over its four columns."""
    columns = dict(fields)
    name = columns.pop("person_name", None)
    if name is not None:
        columns.update(
            given_name=name["given"], surname=name["surname"], patronymic=name.get("patronymic"),
            full_name=name.get("full") or " ".join(
                part for part in (name["given"], name.get("patronymic"), name["surname"]) if part),
        )
    return columns


@functools.cache
def _returnee_read(collections: tuple[str, ...]) -> Select[*tuple[Any, ...]]:
    """A returnee by `:returnee_id`, with the number of records of each collection in `collections`; the other
    collections raise if read. Built once per collection set: constructing statements costs more than running these."""
    unknown = set(collections) - set(RETURNEE_COLLECTIONS)
    if unknown:
        raise ValueError(f"not returnee collections: {sorted(unknown)}")
    relationships = inspect(Returnee).relationships
    counts = [
        select(func.count()).where(relationships[name].entity.class_.returnee_id == bindparam("returnee_id"))
        .scalar_subquery().label(name)
        for name in collections
    ]
    stmt: Select[*tuple[Any, ...]] = select(Returnee, *counts).where(Returnee.id == bindparam("returnee_id"))
    unloaded = [name for name in RETURNEE_COLLECTIONS if name not in collections]
    if unloaded:
        stmt = stmt.options(*(raiseload(getattr(Returnee, name)) for name in unloaded))
    return stmt


@functools.cache
def _collections_read(names: tuple[str, ...]) -> Select[Any]:
    """The returnee `:returnee_id` joined with the records of the collections `names`, in one statement (their
    relationships' order). Rows: the product of the collections' sizes, so only for small ones (JOINED_ROWS_LIMIT)."""
    return select(Returnee).where(Returnee.id == bindparam("returnee_id")).options(
        *(joinedload(getattr(Returnee, name)) for name in names))


@functools.cache
def _collection_read(name: str) -> Select[Any]:
    """The records of collection `name` of the returnee `:returnee_id`, in the relationship's order."""
    relationship = inspect(Returnee).relationships[name]
    child = relationship.entity.class_
    return select(child).where(child.returnee_id == bindparam("returnee_id")).order_by(
        *(relationship.order_by or ()))


def _best_per_returnee(found: Iterable[ScreeningHit], limit: int) -> list[ScreeningHit]:
    """Each returnee once, at its best score (the first found wins a tie: a document hit before a name hit), highest
    first, at most `limit`."""
    best: dict[uuid.UUID, ScreeningHit] = {}
    for hit in found:
        if hit.returnee.id not in best or hit.score > best[hit.returnee.id].score:
            best[hit.returnee.id] = hit
    return sorted(best.values(), key=lambda h: -h.score)[:limit]


class RegisterService:
    """Returnees and their records, as each agency may see and change them."""

    def __init__(self, *, session: Session, clock: Clock = utcnow, request_id: str | None = None,
                 name_index: NameIndex | None = None) -> None:
        """`request_id`: the request that causes the changes (each event's `cause`); `name_index`: the worker's
        index of the register's names for screening (by default the one of the session's database)."""
        self.session = session
        self._name_index = name_index
        self.clock = clock
        self.events = RegisterEvents(outbox=Outbox(session=session, clock=clock), request_id=request_id)

    @property
    def name_index(self) -> NameIndex:
        if self._name_index is None:
            self._name_index = name_index_for(self.session.get_bind().engine)
        return self._name_index

    # ---- reads -------------------------------------------------------------------------------------------------

    def get(
        self, caller: Caller, model: type[R], record_id: uuid.UUID, *, collections: Iterable[str] | None = None
    ) -> R:
        """One record. For a returnee, `collections` names the record collections the caller's view shows (all of
        them when None): they are loaded with it, the others are not loaded at all (reading one raises)."""
        policy.require("read", model, caller.agency)
        if model is Returnee:
            wanted = RETURNEE_COLLECTIONS if collections is None else tuple(collections)
            return self._read_returnee(record_id, wanted)  # type: ignore[return-value]
        if (model, caller.agency) in policy.ROWS:  # a row outside the agency's rows is as absent as a missing one
            stmt = _rows_for(model, caller.agency, select(model).where(model.id == record_id), self.clock())
            record: R | None = self.session.scalars(stmt).first()
            if record is None:
                raise RecordNotFound(f"No {model.__tablename__[:-1].replace('_', ' ')} with id {record_id}.")
            return record
        return self._load(model, record_id)

    def list_records(self, caller: Caller, model: type[R], filters: Mapping[str, Any], paging: PageRequest) -> Page[R]:
        """A page of the records of `model` the caller may know of, filtered and ordered only by what its view shows
        (a filter on anything else is refused: `policy.filters_for`), so neither the items nor `total` can tell
        records apart by a field outside the view."""
        policy.require("read", model, caller.agency)
        real = policy.filters_for(model, caller.agency, filters)
        stmt = _rows_for(model, caller.agency, _filters_for(model, select(model), real), self.clock())
        total = self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        stmt = stmt.order_by(*(getattr(model, name) for name in policy.order_by(model, caller.agency)))
        if model is Returnee:
            stmt = stmt.options(*self._returnee_loads())
        items = list(
            self.session.scalars(stmt.offset((paging.page - 1) * paging.page_size).limit(paging.page_size))
        )
        return Page(items=items, page=paging.page, page_size=paging.page_size, total=total)

    # ---- returnees ---------------------------------------------------------------------------------------------

    def create_returnee(self, caller: Caller, data: Mapping[str, Any], *, status: str = "reported") -> Returnee:
        policy.require("record", Returnee, caller.agency)
        fields = dict(data)
        register_number = fields.pop("register_number", None)
        if register_number is None:
            register_number = self._next_register_number()
        else:  # keep the counter past numbers given by the caller (records migrated from paper files)
            year, number = register_number.split("-")[1:]
            self._bump_counter(int(year), int(number))
        taken = DuplicateRegisterNumber(f"Register number {register_number} is already taken.")
        if self.session.scalar(select(Returnee.id).where(Returnee.register_number == register_number)):
            raise taken
        returnee = Returnee(register_number=register_number, status=status, **_returnee_columns(fields))
        self.session.add(returnee)
        try:
            self.session.flush()
        except IntegrityError as e:  # a concurrent writer took the number; the request's transaction rolls back
            raise taken from e
        for name in RETURNEE_COLLECTIONS:  # a new returnee has no records yet: nothing to load when it is shown
            set_committed_value(returnee, name, [])
        self._reindex(returnee, new=True)
        return returnee

    def update_returnee(
        self, caller: Caller, returnee_id: uuid.UUID, *, if_match: int | None, changes: Mapping[str, Any]
    ) -> Returnee:
        policy.require("change", Returnee, caller.agency)
        returnee = self._load(Returnee, returnee_id, for_write=True)
        self._check_version(returnee, if_match)
        self._write(returnee, _returnee_columns(changes))
        self._flush_versioned()
        self._reindex(returnee)
        return returnee

    def transition(self, caller: Caller, returnee_id: uuid.UUID, *, to: str, if_match: int | None) -> Returnee:
        """An explicit status change (interior's moves; other agencies move a returnee by recording things)."""
        # Agencies that may not even read the register are refused outright; a register agency asking for a move
        # that is not its own gets invalid_transition (domain.md).
        policy.require("read", Returnee, caller.agency)
        returnee = self._load(Returnee, returnee_id, for_write=True)
        # before the version or the status is looked at: the border may know neither (412 vs 409 would tell)
        check_requester(caller.agency)
        self._check_version(returnee, if_match)
        if to == "vetted" and returnee.status == "under_vetting" and not returnee.vetting_assessments:
            raise InvalidTransition("Record a vetting assessment before marking the returnee vetted.")
        check_transition(status=returnee.status, to=to, agency=caller.agency, via=Via.TRANSITION)
        old, returnee.status = returnee.status, to
        self._flush_versioned()
        if old == "under_vetting" and to == "vetted":
            self.events.vetting_completed(caller, returnee, old)
        else:
            self.events.status_changed(caller, returnee, old)
        return returnee

    # ---- records that belong to a returnee ---------------------------------------------------------------------

    def record_hotline_contact(self, caller: Caller, data: Mapping[str, Any]) -> HotlineContact:
        """A contact about a known returnee (`returnee_id`) or about a new one (`new_returnee`, status reported)."""
        policy.require("record", HotlineContact, caller.agency)
        fields = dict(data)
        new_returnee = fields.pop("new_returnee", None)
        returnee_id = fields.pop("returnee_id", None)
        if (new_returnee is None) == (returnee_id is None):
            raise ValidationFailed(errors={"returnee_id": ["Give exactly one of returnee_id or new_returnee."]})
        if new_returnee is not None:
            returnee = self.create_returnee(caller, new_returnee)
        else:
            returnee = self._load(Returnee, returnee_id, for_write=True)
        contact = HotlineContact(returnee=returnee, **fields)
        self.session.add(contact)
        self.session.flush()
        return contact

    def issue_border_instruction(self, caller: Caller, data: Mapping[str, Any]) -> BorderInstruction:
        policy.require("record", BorderInstruction, caller.agency)
        fields = dict(data)
        returnee = self._load(Returnee, fields.pop("returnee_id"), for_write=True)
        fields.setdefault("valid_from", self.clock())
        fields.setdefault("issued_by", caller.officer)
        self._check_window(fields["valid_from"], fields.get("valid_until"))
        if returnee.status == "closed":
            raise InvalidState("The returnee's file is closed; no instruction can be issued.")
        old = returnee.status
        if fields["instruction"] == "ASSIST_RETURN" and returnee.status == "reported":
            check_transition(status=returnee.status, to="expected", agency=caller.agency, via=Via.INSTRUCTION)
            returnee.status = "expected"
        instruction = BorderInstruction(returnee=returnee, **fields)
        self.session.add(instruction)
        self._flush_versioned()
        self.events.instruction_issued(caller, instruction)
        if returnee.status != old:
            self.events.status_changed(caller, returnee, old)
        return instruction

    def record_crossing(self, caller: Caller, data: Mapping[str, Any]) -> BorderCrossing:
        """A crossing at a border post. An entry by nobody on the register is kept, unmatched, for interior."""
        policy.require("record", BorderCrossing, caller.agency)
        fields = dict(data)
        fields.setdefault("officer", caller.officer)
        returnee_id = fields.pop("returnee_id", None)
        returnee = self._load(Returnee, returnee_id, for_write=True) if returnee_id is not None else None
        crossing = BorderCrossing(**fields, flagged_for_interior=False)
        self.session.add(crossing)
        if returnee is None:
            crossing.flagged_for_interior = crossing.direction == "entry"
        else:
            self._attach_crossing(crossing, returnee, by=caller)
        self._flush_versioned()
        if crossing.flagged_for_interior:
            self.events.crossing_unmatched(caller, crossing)
        return crossing

    def record_vetting(self, caller: Caller, data: Mapping[str, Any]) -> VettingAssessment:
        policy.require("record", VettingAssessment, caller.agency)
        fields = dict(data)
        fields.setdefault("officer", caller.officer)
        returnee = self._load(Returnee, fields.pop("returnee_id"), for_write=True)
        if returnee.status != "under_vetting":
            raise InvalidState(f"Vetting is recorded while a returnee is under_vetting, not {returnee.status}.")
        assessment = VettingAssessment(returnee=returnee, **fields)
        returnee.risk_level = assessment.risk_level
        self.session.add(assessment)
        self._flush_versioned()
        return assessment

    def record_decision(self, caller: Caller, data: Mapping[str, Any]) -> ProsecutorialDecision:
        policy.require("record", ProsecutorialDecision, caller.agency)
        fields = dict(data)
        fields.setdefault("prosecutor", caller.officer)
        returnee = self._load(Returnee, fields.pop("returnee_id"), for_write=True)
        if returnee.status != "under_review":
            raise InvalidTransition(
                f"A prosecutorial decision is recorded while a returnee is under_review, not {returnee.status}."
            )
        target = DECISION_TARGET[fields["decision"]]
        old = returnee.status
        if target is not None:
            check_transition(status=returnee.status, to=target, agency=caller.agency, via=Via.DECISION)
            returnee.status = target
        decision = ProsecutorialDecision(returnee=returnee, **fields)
        self.session.add(decision)
        self._flush_versioned()
        self.events.decision_recorded(caller, decision, old)
        return decision

    def update_record(
        self, caller: Caller, model: type[R], record_id: uuid.UUID, *, if_match: int | None,
        changes: Mapping[str, Any],
    ) -> R:
        """Change a record's editable fields (the update schemas decide which those are)."""
        policy.require("change", model, caller.agency)
        record = self._load(model, record_id, for_write=True)
        self._check_version(record, if_match)
        fields = dict(changes)
        link_to = fields.pop("returnee_id", None) if isinstance(record, BorderCrossing) else None
        # Load what we link to before changing anything, so that the record is written in one UPDATE.
        link_target = self._load(Returnee, link_to, for_write=True) if link_to is not None else None
        changed_fields = self._write(record, fields)
        if isinstance(record, BorderInstruction):
            self._check_window(record.valid_from, record.valid_until)
        if isinstance(record, BorderCrossing):
            if link_target is not None:
                if record.returnee_id is not None:
                    raise InvalidState("This crossing is already linked to a returnee.")
                self._attach_crossing(record, link_target, by=caller)
            elif record.returnee is not None and "emergency_document_number" in fields:
                self._add_emergency_document(record.returnee, record.emergency_document_number)
        self._flush_versioned()
        if isinstance(record, BorderInstruction) and changed_fields:
            self.events.instruction_issued(caller, record)
        return record

    # ---- screening ---------------------------------------------------------------------------------------------

    def screen_by_document(self, caller: Caller, number: str) -> list[ScreeningHit]:
        policy.require_screening(caller.agency)
        key = document_key(number)
        rows = self.session.execute(
            select(ReturneeSearchKey.returnee_id, ReturneeSearchKey.original).where(
                ReturneeSearchKey.kind == "document", ReturneeSearchKey.key == key
            )
        ).all()
        hits: dict[uuid.UUID, str] = {row.returnee_id: row.original for row in rows}
        returnees = self._load_many(hits)
        return [
            ScreeningHit(returnee=r, score=100.0, name_score=None, birth_date_score=None, matched_on="document",
                         matched_value=hits[r.id])
            for r in sorted(returnees, key=lambda r: r.register_number)
        ]

    def screen_by_name(
        self, caller: Caller, *, name: str, birth_date: str | None, limit: int, min_score: float,
        collections: tuple[str, ...] = RETURNEE_COLLECTIONS,
    ) -> list[ScreeningHit]:
        """The returnees whose names and birth date best match, highest score first (`matching.rank_candidates`),
        among the `SCREENING_CANDIDATES` retrieved by the name index; each returnee is loaded with `collections`
        (the ones the caller's view shows)."""
        [hits] = self.screen_many(caller, [NameQuery(name=name, birth_date=birth_date)], limit=limit,
                                  min_score=min_score, collections=collections)
        return hits

    def screen_many(
        self, caller: Caller, travellers: Iterable[NameQuery], *, limit: int, min_score: float,
        collections: tuple[str, ...] = RETURNEE_COLLECTIONS,
    ) -> list[list[ScreeningHit]]:
        """`screen_by_name` for each traveller of a batch (a flight manifest), in order: the worker's name index
        brought up to date (one read of the changes since its last use), each traveller's candidates retrieved and
        scored in memory, then the matched returnees read in one statement. Raises `ValueError` for a malformed birth
        date (the schemas refuse it first)."""
        policy.require_screening(caller.agency)
        queries = list(travellers)
        index = self.name_index
        index.refresh()
        blocks = [query_blocks(q.name) for q in queries]
        weights = index.weights({b for bs in blocks for b in bs})
        ranked: list[list[Match]] = []
        for query, query_keys in zip(queries, blocks, strict=True):
            years = candidate_birth_years(query.birth_date, min_score)
            candidates = index.candidates(query_keys, weights, years=None if years is None else years[0],
                                          unknown=True if years is None else years[1], limit=SCREENING_CANDIDATES,
                                          birth_date=query.birth_date)
            ranked.append(rank_candidates(name=query.name, birth_date=query.birth_date, candidates=candidates,
                                          min_score=min_score, limit=limit))
        matched = {uuid.UUID(m.record_id) for ms in ranked for m in ms}
        by_id = {r.id: r for r in self._load_many(matched, collections)}
        return [
            [ScreeningHit(returnee=by_id[uuid.UUID(m.record_id)], score=m.score, name_score=m.name_score,
                          birth_date_score=m.birth_date_score, matched_on="name", matched_value=m.matched_name)
             for m in matches]
            for matches in ranked
        ]

    def report_hits(self, caller: Caller, hits: Iterable[ScreeningHit], *,
                    traveller: Mapping[str, Any] | None = None) -> int:
        """Write a `screening.hit` event for each candidate with an active border instruction or a score at or above
        the hit threshold (events.md); returns how many."""
        now = self.clock()
        count = 0
        for hit in hits:
            if is_hit(hit.returnee, hit.score, now=now):
                # screening loads only what the border's view shows; the event is shaped by interior's view, so
                # the returnee is read again with every collection (hits are rare)
                whole = self.session.get(Returnee, hit.returnee.id, options=self._returnee_loads(),
                                         populate_existing=True)
                self.events.screening_hit(caller, whole or hit.returnee, score=hit.score, matched_on=hit.matched_on,
                                          traveller=traveller or {})
                count += 1
        return count

    def screen_manifest(
        self, caller: Caller, travellers: Sequence[Mapping[str, Any]], *, limit: int, min_score: float
    ) -> list[list[ScreeningHit]]:
        """Screen a manifest (advance passenger information): each traveller's candidates by document number and by
        name (all names in one `screen_many` batch), each returnee once at its best score, best first, and a
        `screening.hit` event for each hit. At most MANIFEST_LIMIT travellers (422 `manifest_too_large`)."""
        policy.require_screening(caller.agency)
        if len(travellers) > MANIFEST_LIMIT:
            raise ManifestTooLarge(f"A manifest lists at most {MANIFEST_LIMIT} travellers, not {len(travellers)}; "
                                   "send it in parts.")
        by_name = self.screen_many(
            caller, [NameQuery(name=t["name"], birth_date=t.get("birth_date")) for t in travellers], limit=limit,
            min_score=min_score)
        answers = []
        for traveller, name_hits in zip(travellers, by_name, strict=True):
            found = self.screen_by_document(caller, traveller["document_number"]) \
                if traveller.get("document_number") else []
            hits = _best_per_returnee([*found, *name_hits], limit)
            self.report_hits(caller, hits, traveller=traveller)
            answers.append(hits)
        return answers

    # ---- internals ---------------------------------------------------------------------------------------------

    @staticmethod
    def _returnee_loads() -> list[Any]:
        return [
            selectinload(Returnee.hotline_contacts),
            selectinload(Returnee.border_instructions),
            selectinload(Returnee.border_crossings),
            selectinload(Returnee.vetting_assessments),
            selectinload(Returnee.prosecutorial_decisions),
        ]

    def _load(self, model: type[R], record_id: uuid.UUID, *, for_write: bool = False) -> R:
        options = self._returnee_loads() if model is Returnee else []
        record = self.session.get(model, record_id, options=options, with_for_update=for_write or None)
        if record is None:
            raise RecordNotFound(f"No {model.__tablename__[:-1].replace('_', ' ')} with id {record_id}.")
        return record

    def _read_returnee(self, returnee_id: uuid.UUID, collections: tuple[str, ...]) -> Returnee:
        """A returnee for reading, with the given collections, in as few statements as the data allows: the row and
        how many records each wanted collection has (one SELECT), then the non-empty ones joined in one SELECT while
        that is at most JOINED_ROWS_LIMIT rows, one SELECT per collection beyond.
        Collections not asked for are left unloaded and raise if read (a view showing more than it declared is a
        bug, not a silent extra query)."""
        params = {"returnee_id": returnee_id}
        row = self.session.execute(_returnee_read(collections), params).first()
        if row is None:
            raise RecordNotFound(f"No returnee with id {returnee_id}.")
        returnee: Returnee = row[0]
        unloaded = inspect(returnee).unloaded  # all of them, unless this session had the returnee already
        sizes = {name: row[position] for position, name in enumerate(collections, start=1) if name in unloaded}
        for name, size in sizes.items():
            if not size:
                set_committed_value(returnee, name, [])
        wanted = tuple(name for name, size in sizes.items() if size)
        if len(wanted) > 1 and math.prod(sizes[name] for name in wanted) <= JOINED_ROWS_LIMIT:
            # one statement for them all; it fills the unloaded collections of the returnee already in the session
            self.session.execute(_collections_read(wanted), params).unique().all()
        else:
            for name in wanted:
                items = list(self.session.scalars(_collection_read(name), params))
                for item in items:
                    set_committed_value(item, "returnee", returnee)
                set_committed_value(returnee, name, items)
        return returnee

    def _load_many(
        self, ids: Iterable[uuid.UUID], collections: tuple[str, ...] = RETURNEE_COLLECTIONS
    ) -> list[Returnee]:
        """These returnees with `collections` loaded (one SELECT each); the others raise if read."""
        wanted = list(ids)
        if not wanted:
            return []
        options = [selectinload(getattr(Returnee, name)) for name in collections]
        options += [raiseload(getattr(Returnee, name)) for name in RETURNEE_COLLECTIONS if name not in collections]
        return list(self.session.scalars(select(Returnee).where(Returnee.id.in_(wanted)).options(*options)))

    @staticmethod
    def _check_version(record: Record, if_match: int | None) -> None:
        if if_match is not None and record.version != if_match:
            raise PreconditionFailed(f"The record is at version {record.version}, not {if_match}.")

    def _write(self, record: Record, changes: Mapping[str, Any]) -> bool:
        """Apply changes; only a write that changes a value touches `updated_at` and makes a new version. A write that
        changes nothing (every field sent at its current value) leaves version, ETag and `updated_at` as they were;
        its version is still confirmed under the row's write lock (`version_holds`), so a stale If-Match is never
        acknowledged."""
        for name, value in changes.items():
            setattr(record, name, value)
        if changed(record):
            record.updated_at = self.clock()
            return True
        if not version_holds(self.session, record):
            raise PreconditionFailed()
        return False

    def _flush_versioned(self) -> None:
        try:
            self.session.flush()
        except StaleDataError as e:  # another writer committed between our read and our write
            raise PreconditionFailed() from e
        except IntegrityError as e:  # a database constraint the schemas did not foresee: refuse, never a 500
            raise Conflict("The change conflicts with a rule of the register; nothing was changed.") from e

    @staticmethod
    def _check_window(valid_from: datetime, valid_until: datetime | None) -> None:
        if valid_until is not None and valid_until <= valid_from:
            raise ValidationFailed(errors={"valid_until": ["valid_until must be after valid_from."]})

    def _attach_crossing(self, crossing: BorderCrossing, returnee: Returnee, *, by: Caller) -> None:
        """Link a crossing to its returnee; an entry moves a reported or expected returnee to arrived.

        A closed file refuses interior's link (interior sees the status). A crossing the border records for a closed
        file is kept exactly as for any other status it sees as `other` (no flag, the emergency document joins the
        identifications): a refusal, or any difference it can see, would tell the border the file is closed.
        Interior finds the crossing on the closed returnee."""
        crossing.returnee = returnee
        crossing.flagged_for_interior = False
        old = returnee.status
        if returnee.status == "closed" and policy.status_in_terms(by.agency, "closed") == "closed":
            raise InvalidState("The returnee's file is closed; reopen it before recording crossings.")
        if crossing.direction == "entry" and returnee.status in ("reported", "expected"):
            # The arrival is the border's act (it recorded the entry), also when interior links the crossing later.
            check_transition(status=returnee.status, to="arrived", agency="border", via=Via.CROSSING)
            returnee.status = "arrived"
        if crossing.emergency_document_number:
            self._add_emergency_document(returnee, crossing.emergency_document_number)
        if returnee.status != old:
            self._flush_versioned()  # the returnee's new version is part of what the receivers are shown
            self.events.arrived(by, returnee, old)

    def _add_emergency_document(self, returnee: Returnee, number: str | None) -> None:
        """The emergency travel document issued at the border joins the returnee's identifications (and screening)."""
        if not number:
            return
        known = {document_key(i["id"]) for i in returnee.identifications}
        if document_key(number) not in known:
            returnee.identifications = [
                *returnee.identifications,
                {"category": "emergency_travel_document", "id": number, "issuer_country": "TJ",
                 "expires": None, "status": "valid"},
            ]
            self._reindex(returnee)

    def _next_register_number(self) -> str:
        """`RT-<year>-<6 digits>` from the year's counter, bumped in one atomic statement."""
        year = self.clock().year
        return f"RT-{year}-{self._bump_counter(year, None):06d}"

    def _bump_counter(self, year: int, at_least: int | None) -> int:
        """Add one to the year's counter, or raise it to `at_least` (a number given by the caller), and return it.

        INSERT .. ON CONFLICT DO UPDATE .. RETURNING is one statement on both SQLite and PostgreSQL; on PostgreSQL
        the row lock serialises concurrent registrations, on SQLite the database write lock does.
        """
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        greatest = func.greatest if dialect == "postgresql" else func.max
        current = RegisterCounter.last_number
        stmt = (
            insert(RegisterCounter)
            .values(year=year, last_number=at_least or 1)
            .on_conflict_do_update(
                index_elements=[RegisterCounter.year],
                set_={"last_number": greatest(current, at_least) if at_least else current + 1},
            )
            .returning(RegisterCounter.last_number)
        )
        number: int = self.session.execute(stmt).scalar_one()
        return number

    def _reindex(self, returnee: Returnee, *, new: bool = False) -> None:
        """Rewrite the returnee's screening keys (names in every script, document numbers); a `new` returnee has
        none to delete."""
        if not new:
            self.session.execute(delete(ReturneeSearchKey).where(ReturneeSearchKey.returnee_id == returnee.id))
            self.session.execute(delete(ReturneeNameBlock).where(ReturneeNameBlock.returnee_id == returnee.id))
        birth_year = parse_partial_date(returnee.birth_date)[0] if returnee.birth_date else None
        keys, blocks = screening_keys(
            full_name=returnee.full_name, given_name=returnee.given_name, surname=returnee.surname,
            name_variants=returnee.name_variants, identifications=returnee.identifications,
        )
        self.session.add_all(
            ReturneeSearchKey(returnee_id=returnee.id, kind=kind, key=key, original=original, birth_year=birth_year)
            for (kind, key), original in keys.items()
        )
        self.session.flush()
        if blocks:  # a plain INSERT: rewritten blocks keep their primary key, the ORM must not track them
            self.session.execute(sql_insert(ReturneeNameBlock), [
                {"returnee_id": returnee.id, "block": block, "birth_year": birth_year} for block in sorted(blocks)
            ])
        # every worker's name index re-reads this returnee before its next screening (`name_index`)
        self.session.execute(sql_insert(ReturneeNameChange), [{"returnee_id": returnee.id}])
