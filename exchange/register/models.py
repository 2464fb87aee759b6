"""The returnee register (docs/domain.md "Records"). Field names follow NIEM 6.0 in snake_case.

Nested, schema-less lists (name variants, identifications, conflict history, accompanying persons) are JSON columns:
they are read and written with their returnee, and marshmallow validates their shape. What must be searched by the
border (document numbers, name keys) is copied into `returnee_search_keys` by the service on every write.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exchange.db import Base, Record

STATUSES = (
    "reported",
    "expected",
    "arrived",
    "under_vetting",
    "vetted",
    "under_review",
    "amnesty_granted",
    "charges_filed",
    "reintegrating",
    "closed",
)
RISK_LEVELS = ("low", "medium", "high", "unknown")
HANDLING_CODES = ("H0", "H1", "H2", "H3")
SEXES = ("male", "female", "unknown")
CONTACT_CHANNELS = ("hotline", "consulate", "relative", "in_person")
INSTRUCTIONS = ("ASSIST_RETURN", "REFER_TO_INTERIOR", "DETAIN", "NOTIFY_ONLY")
DIRECTIONS = ("entry", "exit")
OUTCOMES = ("admitted", "handed_over", "detained", "refused")
REPENTANCE = ("yes", "no", "undetermined")
SOURCE_RELIABILITY = ("A", "B", "C", "X")
INFORMATION_ACCURACY = ("1", "2", "3", "4")
DECISIONS = ("amnesty_granted", "charges_filed", "no_case", "returned_for_vetting")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Returnee(Record):
    __tablename__ = "returnees"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("risk_level", RISK_LEVELS), name="risk_level"),
        CheckConstraint(_in("handling_code", HANDLING_CODES), name="handling_code"),
        CheckConstraint(_in("sex", SEXES), name="sex"),
        Index("ix_returnees_status_updated_at", "status", "updated_at"),
    )

    register_number: Mapped[str] = mapped_column(String(32), unique=True)
    given_name: Mapped[str] = mapped_column(String(200))
    surname: Mapped[str] = mapped_column(String(200))
    patronymic: Mapped[str | None] = mapped_column(String(200))
    full_name: Mapped[str] = mapped_column(String(600))
    name_variants: Mapped[list[Any]] = mapped_column(default=list)
    birth_date: Mapped[str | None] = mapped_column(String(10))
    birth_place: Mapped[str | None] = mapped_column(String(200))
    sex: Mapped[str] = mapped_column(String(8), default="unknown")
    citizenship: Mapped[str] = mapped_column(String(2))
    identifications: Mapped[list[Any]] = mapped_column(default=list)
    conflict_history: Mapped[list[Any]] = mapped_column(default=list)
    accompanying_persons: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="reported")
    risk_level: Mapped[str] = mapped_column(String(8), default="unknown")
    handling_code: Mapped[str] = mapped_column(String(2), default="H0")
    handling_restriction: Mapped[str | None] = mapped_column(Text)

    hotline_contacts: Mapped[list[HotlineContact]] = relationship(
        back_populates="returnee", order_by="HotlineContact.received_at"
    )
    border_instructions: Mapped[list[BorderInstruction]] = relationship(
        back_populates="returnee", order_by="BorderInstruction.valid_from"
    )
    border_crossings: Mapped[list[BorderCrossing]] = relationship(
        back_populates="returnee", order_by="BorderCrossing.occurred_at"
    )
    vetting_assessments: Mapped[list[VettingAssessment]] = relationship(
        back_populates="returnee", order_by="VettingAssessment.interviewed_at"
    )
    prosecutorial_decisions: Mapped[list[ProsecutorialDecision]] = relationship(
        back_populates="returnee", order_by="ProsecutorialDecision.decided_at"
    )

    @property
    def person_name(self) -> dict[str, str | None]:
        return {
            "given": self.given_name, "surname": self.surname, "patronymic": self.patronymic, "full": self.full_name
        }

    def active_border_instruction(self, now: datetime) -> BorderInstruction | None:
        """The newest instruction whose validity window contains `now`."""
        active = [i for i in self.border_instructions if i.is_active(now)]
        return max(active, key=lambda i: (i.valid_from, i.created_at)) if active else None


class RegisterCounter(Base):
    """The last register number handed out per year; bumped atomically (upsert) so concurrent registrations never
    compute the same number."""

    __tablename__ = "register_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer)


class ReturneeSearchKey(Base):
    """Normalised document numbers and name keys, rewritten with their returnee, for border screening."""

    __tablename__ = "returnee_search_keys"
    __table_args__ = (
        CheckConstraint("kind IN ('document', 'name')", name="kind"),
        Index("ix_returnee_search_keys_kind_key", "kind", "key"),
        Index("ix_returnee_search_keys_kind_birth_year", "kind", "birth_year"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    returnee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("returnees.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    key: Mapped[str] = mapped_column(String(600))
    original: Mapped[str] = mapped_column(String(600))
    birth_year: Mapped[int | None] = mapped_column(Integer)


class ReturneeNameBlock(Base):
    """Candidate-retrieval keys of a returnee's names (`matching.name_blocks`), with the birth year, rewritten with
    the returnee: name screening scores only the returnees sharing a key with the query, born in a year that can
    still reach the threshold. Each worker searches them in memory (`name_index.NameIndex`, loaded from this table);
    `ix_returnee_name_blocks_block_birth_year` served the SQL lookup before that and is no longer read."""

    __tablename__ = "returnee_name_blocks"
    __table_args__ = (
        Index("ix_returnee_name_blocks_block_birth_year", "block", "birth_year", "returnee_id"),
    )

    returnee_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returnees.id", ondelete="CASCADE"), primary_key=True
    )
    block: Mapped[str] = mapped_column(String(40), primary_key=True)
    birth_year: Mapped[int | None] = mapped_column(Integer)


class ReturneeNameChange(Base):
    """One row per rewrite of a returnee's screening keys (`RegisterService._reindex`), in commit-independent `seq`
    order: each worker's in-memory name index (`name_index.NameIndex`) reads the rows it has not seen before every
    screening, so a returnee created or renamed by any worker is screened by the next call on every worker."""

    __tablename__ = "returnee_name_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # a seq is never reused, even after the newest row is removed

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                     autoincrement=True)
    returnee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("returnees.id", ondelete="CASCADE"))


class ChildRecord(Record):
    __abstract__ = True

    returnee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("returnees.id"), index=True)


class HotlineContact(ChildRecord):
    __tablename__ = "hotline_contacts"
    __table_args__ = (CheckConstraint(_in("channel", CONTACT_CHANNELS), name="channel"),)

    received_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(12))
    caller_relation: Mapped[str | None] = mapped_column(String(100))
    location_country: Mapped[str | None] = mapped_column(String(2))
    intent_to_return: Mapped[bool]
    summary: Mapped[str] = mapped_column(Text)
    officer: Mapped[str | None] = mapped_column(String(64))

    returnee: Mapped[Returnee] = relationship(back_populates="hotline_contacts")


class BorderInstruction(ChildRecord):
    __tablename__ = "border_instructions"
    __table_args__ = (
        CheckConstraint(_in("instruction", INSTRUCTIONS), name="instruction"),
        CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="validity"),
    )

    instruction: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)
    issued_by: Mapped[str | None] = mapped_column(String(64))

    returnee: Mapped[Returnee] = relationship(back_populates="border_instructions")

    def is_active(self, now: datetime) -> bool:
        return self.valid_from <= now and (self.valid_until is None or now < self.valid_until)


class BorderCrossing(Record):
    """A crossing; `returnee_id` is empty for an entry that matched nobody, flagged for interior to resolve."""

    __tablename__ = "border_crossings"
    __table_args__ = (
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        Index("ix_border_crossings_flagged", "flagged_for_interior"),
    )

    returnee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("returnees.id"), index=True)
    crossing_point: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(5))
    occurred_at: Mapped[datetime]
    documents_presented: Mapped[list[Any]] = mapped_column(default=list)
    emergency_document_number: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(12))
    officer: Mapped[str | None] = mapped_column(String(64))
    traveller_name: Mapped[str | None] = mapped_column(String(600))
    traveller_birth_date: Mapped[str | None] = mapped_column(String(10))
    flagged_for_interior: Mapped[bool] = mapped_column(default=False)

    returnee: Mapped[Returnee | None] = relationship(back_populates="border_crossings")

    @property
    def matched(self) -> bool:
        return self.returnee_id is not None


class VettingAssessment(ChildRecord):
    __tablename__ = "vetting_assessments"
    __table_args__ = (
        CheckConstraint(_in("genuine_repentance", REPENTANCE), name="genuine_repentance"),
        CheckConstraint(_in("risk_level", RISK_LEVELS), name="risk_level"),
        CheckConstraint(_in("source_reliability", SOURCE_RELIABILITY), name="source_reliability"),
        CheckConstraint(_in("information_accuracy", INFORMATION_ACCURACY), name="information_accuracy"),
        CheckConstraint(_in("handling_code", HANDLING_CODES), name="handling_code"),
    )

    interviewed_at: Mapped[datetime]
    genuine_repentance: Mapped[str] = mapped_column(String(12))
    risk_level: Mapped[str] = mapped_column(String(8))
    findings: Mapped[str] = mapped_column(Text)
    reintegration_plan: Mapped[str | None] = mapped_column(Text)
    source_reliability: Mapped[str] = mapped_column(String(1))
    information_accuracy: Mapped[str] = mapped_column(String(1))
    handling_code: Mapped[str] = mapped_column(String(2), default="H0")
    handling_restriction: Mapped[str | None] = mapped_column(Text)
    officer: Mapped[str | None] = mapped_column(String(64))

    returnee: Mapped[Returnee] = relationship(back_populates="vetting_assessments")


class ProsecutorialDecision(ChildRecord):
    __tablename__ = "prosecutorial_decisions"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
        Index("ix_prosecutorial_decisions_case_number", "case_number"),
    )

    decision: Mapped[str] = mapped_column(String(24))
    statute: Mapped[str | None] = mapped_column(String(200))
    case_number: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime]
    prosecutor: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)

    returnee: Mapped[Returnee] = relationship(back_populates="prosecutorial_decisions")
