"""The request's own state: one typed object per request, reached through `request_state()`.

What one step of the response path hands to a later one travels here, typed, instead of through the response's
headers: the audit entry's receipt (set by the recorder once the entry has its index, read by the sealer), and the
claims the call makes whatever its outcome (set by the authenticator, made by the response pipeline or, for a failed
call, with its failure's audit entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from flask import g
from sqlalchemy.orm import Session

from exchange.protocol.envelope import AuditReceipt


class Claim(Protocol):
    """Something a call uses up once, whatever its outcome (its DPoP proof's `jti`), written in the database.

    It is made in the call's own transaction just before its audit entry, so that it commits with the call (one
    commit per call); if that transaction is rolled back (the call failed), it is made again in the transaction of
    the failure's entry, so that a refused call's proof stays used all the same."""

    def __call__(self, session: Session, *, again: bool) -> None:
        """Make the claim in `session`'s transaction. `again=False`: the call's claim; raise the `ExchangeError` to
        answer if it was made before (a replay). `again=True`: this call's claim once more after its transaction
        was rolled back (or committed: after-commit failures record a second entry); made before is no error."""
        ...


@dataclass
class RequestState:
    receipt: AuditReceipt | None = None  # the call's audit entry, once sequenced (and signed, if the key allows)
    claims: list[Claim] = field(default_factory=list)  # made in the call's transaction, or again with its failure
    claims_kept: bool = False  # the claims were made again in a transaction that committed (with the failure's entry)

    def claim_again(self, session: Session) -> None:
        """Make the call's claims again in `session`'s transaction (after its own was rolled back); the caller
        commits, then sets `claims_kept`."""
        for claim in self.claims:
            claim(session, again=True)


def request_state() -> RequestState:
    """This request's state (created on first use)."""
    state: RequestState | None = g.get("exchange_request")
    if state is None:
        state = RequestState()
        g.exchange_request = state
    return state
