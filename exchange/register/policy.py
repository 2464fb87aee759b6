"""Need to know, as data (domain.md): which agencies may read, create and update each record kind, and which
fields of each kind each agency sees (`NEED_TO_KNOW`).

The second table is the one source of what an agency may learn: its view schemas (`schemas.agency_view`), the list
filters it may use and in what terms (`filters_for`), the order of its lists (`order_by`), which rows it sees
(`ROWS`), whether its ETag is a version or a digest of its view, and how a refusal is worded (`status_in_terms`).
Auditors and security officers never read or record content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from exchange.db import Record
from exchange.protocol.errors import NotPermitted, ValidationFailed
from exchange.register.models import (
    STATUSES,
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


# ---- need to know: what each agency sees of each record kind (domain.md, "Need to know") ---------------------------
#
# The one table the views (schemas.py), the list filters and their order, the ETag and the error wording are derived
# from. For every record kind: field -> {agency: how it is shown}; an agency not named does not see the field, and it
# is absent from that agency's responses, schema and OpenAPI document. `version` and `updated_at` are not in the
# table: they are derived (`bookkeeping`), shown only to an agency that sees every one of the record's own fields, so
# that neither can change when another agency edits something this agency may not see.

FULL = "full"
COARSE = "coarse"  # status only, in the border's terms: expected, arrived or other
LIMITED = "limited"  # the active border instruction, as the border sees it: `instruction` and `valid_until` only
UNLESS_H1 = "unless_h1"  # shown unless the record is handled H1 (the prosecutor and a vetting assessment's findings)

INTERIOR, BORDER, PROSECUTOR = "interior", "border", "prosecutor"
_ALL = {INTERIOR: FULL, BORDER: FULL, PROSECUTOR: FULL}
_CASE = {INTERIOR: FULL, PROSECUTOR: FULL}


def _rows(names: str, shown: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: dict(shown) for name in names.split()}


NEED_TO_KNOW: dict[type[Record], dict[str, dict[str, str]]] = {
    Returnee: {
        **_rows("id register_number person_name name_variants birth_date sex citizenship identifications "
                "handling_code handling_restriction created_at", _ALL),
        "status": {INTERIOR: FULL, BORDER: COARSE, PROSECUTOR: FULL},
        **_rows("birth_place conflict_history accompanying_persons risk_level", _CASE),
        # the returnee's records, each shown in the agency's own view of that kind (the tables below)
        "active_border_instruction": {INTERIOR: FULL, BORDER: LIMITED, PROSECUTOR: FULL},
        **_rows("hotline_contacts vetting_assessments prosecutorial_decisions", _CASE),
        "border_crossings": dict(_ALL),
    },
    HotlineContact: _rows("id returnee_id created_at received_at channel caller_relation location_country "
                          "intent_to_return summary officer", _CASE),
    BorderInstruction: {
        **_rows("id returnee_id instruction valid_until", _ALL),
        **_rows("created_at valid_from reason issued_by", _CASE),
    },
    BorderCrossing: _rows("id created_at returnee_id matched flagged_for_interior crossing_point direction occurred_at "
                          "documents_presented emergency_document_number outcome officer traveller_name "
                          "traveller_birth_date", _ALL),
    VettingAssessment: {
        **_rows("id returnee_id created_at interviewed_at genuine_repentance risk_level reintegration_plan "
                "source_reliability information_accuracy handling_code handling_restriction officer", _CASE),
        "findings": {INTERIOR: FULL, PROSECUTOR: UNLESS_H1},
    },
    ProsecutorialDecision: _rows("id returnee_id created_at decision statute case_number decided_at prosecutor notes",
                                 _CASE),
}
# Fields of a returnee that are other records (they change their own version, never the returnee's).
RELATED = frozenset({"active_border_instruction", "hotline_contacts", "vetting_assessments", "border_crossings",
                     "prosecutorial_decisions"})
BOOKKEEPING = ("version", "updated_at")

# Which rows of a kind an agency sees, where not all: the border sees a returnee's active instruction, no other.
ROWS: dict[tuple[type[Record], str], str] = {(BorderInstruction, BORDER): "active"}

# Every list filter, and the fields it reads: a filter is offered to an agency only if it sees all of them in full,
# or (a COARSE status) in the agency's own terms.
FILTERS: dict[type[Record], dict[str, tuple[str, ...]]] = {
    Returnee: {"status": ("status",), "risk_level": ("risk_level",), "citizenship": ("citizenship",),
               "register_number": ("register_number",), "updated_since": ("updated_at",)},
    HotlineContact: {"returnee_id": ("returnee_id",), "channel": ("channel",)},
    BorderInstruction: {"returnee_id": ("returnee_id",), "instruction": ("instruction",),
                        "active_at": ("valid_from", "valid_until")},
    BorderCrossing: {"returnee_id": ("returnee_id",), "crossing_point": ("crossing_point",),
                     "direction": ("direction",), "unmatched": ("returnee_id",),
                     "flagged_for_interior": ("flagged_for_interior",), "occurred_from": ("occurred_at",),
                     "occurred_to": ("occurred_at",)},
    VettingAssessment: {"returnee_id": ("returnee_id",), "risk_level": ("risk_level",)},
    ProsecutorialDecision: {"returnee_id": ("returnee_id",), "decision": ("decision",),
                            "case_number": ("case_number",)},
}

# The border's terms for a status, and the real statuses each stands for.
COARSE_STATUS: dict[str, frozenset[str]] = {
    "expected": frozenset({"expected"}),
    "arrived": frozenset({"arrived"}),
    "other": frozenset(STATUSES) - {"expected", "arrived"},
}


def shown(model: type[Record], agency: str) -> dict[str, str]:
    """The fields of `model` that `agency` sees, with how (FULL, COARSE, LIMITED or UNLESS_H1), in table order."""
    fields = {name: agencies[agency] for name, agencies in NEED_TO_KNOW[model].items() if agency in agencies}
    bookkeeping = _bookkeeping(model, agency)
    if bookkeeping is not None:
        fields.update(dict.fromkeys(BOOKKEEPING, bookkeeping))
    return fields


def _bookkeeping(model: type[Record], agency: str) -> str | None:
    """How `version` and `updated_at` are shown: FULL when the agency sees all of the record's own fields in full,
    UNLESS_H1 when only H1-withheld ones are missing, else not at all (they would move when a hidden field moves)."""
    own = {name: agencies.get(agency) for name, agencies in NEED_TO_KNOW[model].items() if name not in RELATED}
    ways = set(own.values())
    if ways == {FULL}:
        return FULL
    if ways == {FULL, UNLESS_H1}:
        return UNLESS_H1
    return None


def sees_whole(model: type[Record], agency: str) -> bool:
    """True when the agency sees every field of every record of this kind: its ETag may then be the version, and
    If-Match with that version is how it writes."""
    return _bookkeeping(model, agency) == FULL and (model, agency) not in ROWS


def status_in_terms(agency: str, status: str) -> str:
    """A returnee's status as `agency` may know it."""
    way = NEED_TO_KNOW[Returnee]["status"].get(agency)
    if way == FULL:
        return status
    if way == COARSE:
        return next(term for term, real in COARSE_STATUS.items() if status in real)
    return "hidden"


def order_by(model: type[Record], agency: str) -> tuple[str, ...]:
    """The order of an agency's list: by creation where it sees when a record was created, else by id."""
    return ("created_at", "id") if "created_at" in shown(model, agency) else ("id",)


def filters_for(model: type[Record], agency: str, filters: Mapping[str, object]) -> dict[str, object]:
    """The list filters in the register's own terms, or `ValidationFailed` naming every parameter that reads a field
    outside the agency's view (or a value outside its terms). Nothing outside the view ever reaches the query."""
    fields = shown(model, agency)
    errors: dict[str, list[str]] = {}
    real: dict[str, object] = {}
    for name, value in filters.items():
        ways = {fields.get(field) for field in FILTERS[model][name]}
        if ways == {FULL}:
            if name == "status" and value not in STATUSES:
                errors[name] = [f"Must be one of: {', '.join(STATUSES)}."]
            else:
                real[name] = value
        elif ways == {COARSE} and name == "status":
            if value not in COARSE_STATUS:
                errors[name] = [f"Must be one of: {', '.join(COARSE_STATUS)}."]
            else:
                real[name] = COARSE_STATUS[str(value)]
        else:
            errors[name] = [f"Agency {agency!r} may not filter {_NOUNS[model]} on {name!r}: it is outside its view."]
    if errors:
        raise ValidationFailed(errors=errors)
    return real


def allowed_filters(model: type[Record], agency: str) -> frozenset[str]:
    """The filter parameters `agency` may use on lists of `model`."""
    fields = shown(model, agency)
    return frozenset(
        name for name, reads in FILTERS[model].items()
        if {fields.get(f) for f in reads} == {FULL} or (name == "status" and fields.get("status") == COARSE)
    )
