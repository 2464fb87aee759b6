"""Need to know, as data: which agencies may read, create and update each record kind (domain.md).

What each reader *sees* of a record is decided by its view schema (`schemas.py`); this table decides whether it
sees the record at all. Auditors and security officers never read or record content.
"""

from __future__ import annotations

from typing import Literal

from exchange.db import Record
from exchange.protocol.errors import NotPermitted
from exchange.register.models import (
    BorderCrossing,
    BorderInstruction,
    HotlineContact,
    ProsecutorialDecision,
    Returnee,
    VettingAssessment,
)

READ: dict[type[Record], frozenset[str]] = {
    Returnee: frozenset({"interior", "border", "prosecutor"}),
    HotlineContact: frozenset({"interior", "prosecutor"}),
    BorderInstruction: frozenset({"interior", "border", "prosecutor"}),
    BorderCrossing: frozenset({"interior", "border", "prosecutor"}),
    VettingAssessment: frozenset({"interior", "prosecutor"}),
    ProsecutorialDecision: frozenset({"interior", "prosecutor"}),
}
CREATE: dict[type[Record], frozenset[str]] = {
    Returnee: frozenset({"interior"}),
    HotlineContact: frozenset({"interior"}),
    BorderInstruction: frozenset({"interior"}),
    BorderCrossing: frozenset({"border"}),
    VettingAssessment: frozenset({"interior"}),
    ProsecutorialDecision: frozenset({"prosecutor"}),
}
UPDATE: dict[type[Record], frozenset[str]] = {
    **CREATE,
    # border corrects its own crossings; interior links an unmatched entry to the returnee it turned out to be
    BorderCrossing: frozenset({"border", "interior"}),
}
SCREEN = frozenset({"border"})

_NOUNS: dict[type[Record], str] = {
    Returnee: "returnees",
    HotlineContact: "hotline contacts",
    BorderInstruction: "border instructions",
    BorderCrossing: "border crossings",
    VettingAssessment: "vetting assessments",
    ProsecutorialDecision: "prosecutorial decisions",
}


_TABLES = {"read": READ, "record": CREATE, "change": UPDATE}


def require(action: Literal["read", "record", "change"], model: type[Record], agency: str) -> None:
    """Raise `NotPermitted` unless `agency` may perform `action` on records of `model`."""
    if agency not in _TABLES[action][model]:
        raise NotPermitted(f"Agency {agency!r} may not {action} {_NOUNS[model]}.")


def require_screening(agency: str) -> None:
    if agency not in SCREEN:
        raise NotPermitted(f"Agency {agency!r} may not screen travellers; screening is the border's.")
