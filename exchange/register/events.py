"""What of the register becomes an event, and for whom (events.md "What becomes an event").

Every event is written through the outbox in the transaction of the change it reports, one row per receiving agency,
its `record` dumped with that agency's view schema (`schemas.agency_view`, built from `policy.NEED_TO_KNOW`). There
is no second table of who sees what: an agency that has no view of a record kind cannot be sent an event about it
(`agency_view` refuses), a field outside its view is absent from its event as from its reads, and a status is shown
in its own terms (the border: expected, arrived, other).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from exchange.db import Record
from exchange.events.services import Cause, Outbox
from exchange.identity import Caller
from exchange.register import policy
from exchange.register import schemas as s
from exchange.register.models import BorderCrossing, BorderInstruction, ProsecutorialDecision, Returnee

# A screening candidate at or above this score is a hit even without an active border instruction.
HIT_THRESHOLD = 90.0

ARRIVED_TO = ("interior", "prosecutor")
UNMATCHED_TO = ("interior",)
INSTRUCTION_TO = ("border", "prosecutor")
VETTING_TO = ("prosecutor",)
DECISION_TO = ("interior",)
HIT_TO = ("interior",)
STATUS_TO = ("interior", "prosecutor", "border")  # each only when the status it sees changes


def dump(model: type[Record], agency: str, record: Record) -> dict[str, Any]:
    """`record` as `agency` sees it (the same view schema as its reads)."""
    data: dict[str, Any] = s.agency_view(model, agency)().dump(record)
    return data


def instruction_as_seen(agency: str, instruction: BorderInstruction) -> dict[str, Any]:
    """An instruction as `agency` sees a returnee's instruction: in full, or LIMITED (the border: `instruction` and
    `valid_until`), as the need-to-know table says of `active_border_instruction`."""
    way = policy.NEED_TO_KNOW[Returnee]["active_border_instruction"][agency]
    if way == policy.FULL:
        return dump(BorderInstruction, agency, instruction)
    limited: dict[str, Any] = s.active_instruction_view(agency)().dump(instruction)
    return limited


class RegisterEvents:
    """The register's events, written to `outbox` with the request that caused them."""

    def __init__(self, *, outbox: Outbox, request_id: str | None) -> None:
        self.outbox = outbox
        self.request_id = request_id

    def _add(self, caller: Caller, agencies: Iterable[str], kind: str, record: Record, *,
             returnee_id: Any = None, extra: Mapping[str, Any] | None = None) -> None:
        cause = Cause(agency=caller.agency, request_id=self.request_id)
        for agency in agencies:
            shaped = (instruction_as_seen(agency, record) if isinstance(record, BorderInstruction)
                      else dump(type(record), agency, record))
            self.outbox.add(agency=agency, type=kind, cause=cause, record=shaped, returnee_id=returnee_id,
                            extra=extra)

    def status_changed(self, caller: Caller, returnee: Returnee, old: str, *, told: Iterable[str] = ()) -> None:
        """`returnee.status_changed` to every agency that sees the move in its own terms, except those `told` of it
        by a more specific event of the same change."""
        told = set(told)
        new = returnee.status
        agencies = [a for a in STATUS_TO if a not in told
                    and policy.status_in_terms(a, old) != policy.status_in_terms(a, new)]
        self._add(caller, agencies, "returnee.status_changed", returnee, returnee_id=returnee.id)

    def arrived(self, caller: Caller, returnee: Returnee, old: str) -> None:
        self._add(caller, ARRIVED_TO, "returnee.arrived", returnee, returnee_id=returnee.id)
        self.status_changed(caller, returnee, old, told=ARRIVED_TO)

    def crossing_unmatched(self, caller: Caller, crossing: BorderCrossing) -> None:
        self._add(caller, UNMATCHED_TO, "crossing.unmatched", crossing)

    def instruction_issued(self, caller: Caller, instruction: BorderInstruction) -> None:
        self._add(caller, INSTRUCTION_TO, "instruction.issued", instruction, returnee_id=instruction.returnee_id)

    def vetting_completed(self, caller: Caller, returnee: Returnee, old: str) -> None:
        latest = max(returnee.vetting_assessments, key=lambda a: a.created_at)
        self._add(caller, VETTING_TO, "vetting.completed", latest, returnee_id=returnee.id)
        self.status_changed(caller, returnee, old, told=VETTING_TO)

    def decision_recorded(self, caller: Caller, decision: ProsecutorialDecision, old: str) -> None:
        self._add(caller, DECISION_TO, "decision.recorded", decision, returnee_id=decision.returnee_id)
        if decision.returnee.status != old:
            self.status_changed(caller, decision.returnee, old, told=DECISION_TO)

    def screening_hit(self, caller: Caller, returnee: Returnee, *, score: float, matched_on: str,
                      traveller: Mapping[str, Any]) -> None:
        """A screened traveller whose candidate has an active border instruction or scores at least HIT_THRESHOLD.
        The returnee (with its active instruction) in the receiver's view, and where, when and by whom."""
        where = {k: traveller.get(k) for k in ("crossing_point", "flight", "expected_arrival")}
        screening = {"score": score, "matched_on": matched_on, "officer": caller.officer,
                     **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in where.items()}}
        self._add(caller, HIT_TO, "screening.hit", returnee, returnee_id=returnee.id,
                  extra={"screening": screening})


def is_hit(returnee: Returnee, score: float, *, now: Any) -> bool:
    return score >= HIT_THRESHOLD or returnee.active_border_instruction(now) is not None
