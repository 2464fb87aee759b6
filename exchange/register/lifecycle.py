"""The returnee lifecycle of domain.md, as data: who may move a returnee from which status to which, and how.

```
reported -> expected -> arrived -> under_vetting -> vetted -> under_review -> amnesty_granted -> reintegrating -> closed
        \\-> (entry crossing with no prior contact) arrived          \\-> charges_filed -> closed
                                                     under_review -> returned_for_vetting -> under_vetting
```
A move is made *through* something: an explicit transition request (interior), issuing an ASSIST_RETURN instruction
(interior), recording an entry crossing (border), or recording a prosecutorial decision (prosecutor). Everything not
in the table, or done by another agency or another way, is refused with 409 `invalid_transition`.
"""

from __future__ import annotations

from enum import StrEnum

from exchange.register import policy
from exchange.register.errors import InvalidTransition


class Via(StrEnum):
    TRANSITION = "transition request"
    INSTRUCTION = "ASSIST_RETURN instruction"
    CROSSING = "entry crossing"
    DECISION = "prosecutorial decision"


NOT_CLOSED = ("reported", "expected", "arrived", "under_vetting", "vetted", "under_review", "amnesty_granted",
              "charges_filed", "reintegrating")

# (from, to) -> (agency, via)
_ALLOWED: dict[tuple[str, str], tuple[str, Via]] = {
    ("reported", "expected"): ("interior", Via.INSTRUCTION),
    ("reported", "arrived"): ("border", Via.CROSSING),
    ("expected", "arrived"): ("border", Via.CROSSING),
    ("arrived", "under_vetting"): ("interior", Via.TRANSITION),
    ("under_vetting", "vetted"): ("interior", Via.TRANSITION),
    ("vetted", "under_review"): ("interior", Via.TRANSITION),
    ("under_review", "amnesty_granted"): ("prosecutor", Via.DECISION),
    ("under_review", "charges_filed"): ("prosecutor", Via.DECISION),
    ("under_review", "under_vetting"): ("prosecutor", Via.DECISION),
    ("amnesty_granted", "reintegrating"): ("interior", Via.TRANSITION),
    **{(status, "closed"): ("interior", Via.TRANSITION) for status in NOT_CLOSED},
}

# What a prosecutorial decision does to the returnee; `no_case` records the decision and leaves the status for
# interior to close or continue (domain.md names no status for it).
DECISION_TARGET: dict[str, str | None] = {
    "amnesty_granted": "amnesty_granted",
    "charges_filed": "charges_filed",
    "returned_for_vetting": "under_vetting",
    "no_case": None,
}


def check_requester(agency: str) -> None:
    """Raise `InvalidTransition` unless `agency` makes some move by transition request. The message names only the
    agency's own way of moving a returnee: nothing about the returnee it asked for."""
    if any(rule == (agency, Via.TRANSITION) for rule in _ALLOWED.values()):
        return
    ways = sorted({via.value for owner, via in _ALLOWED.values() if owner == agency})
    named = " or ".join(f"{'an' if way[0] in 'aeiouAEIOU' else 'a'} {way}" for way in ways)
    how = f" it moves a returnee by recording {named}" if ways else " it moves no returnee"
    raise InvalidTransition(f"Agency {agency!r} makes no move by transition request;{how}.")


def check_transition(*, status: str, to: str, agency: str, via: Via) -> None:
    """Return if `agency` may move a returnee from `status` to `to` via `via`, else raise `InvalidTransition`."""
    rule = _ALLOWED.get((status, to))
    if policy.status_in_terms(agency, status) != status and (rule is None or rule != (agency, via)):
        # the agency may not know the exact status: one message for every refusal, naming nothing it may not see
        raise InvalidTransition(f"Agency {agency!r} may not move this returnee to {to!r}.")
    if rule is None:
        raise InvalidTransition(f"A returnee cannot move from {status!r} to {to!r}.")
    owner, how = rule
    if owner != agency:
        raise InvalidTransition(f"Only {owner} may move a returnee from {status!r} to {to!r}.")
    if how != via:
        raise InvalidTransition(f"A move from {status!r} to {to!r} is made by recording a {how.value}.")
