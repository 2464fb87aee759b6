"""The request's own state: one typed object per request, reached through `request_state()`.

What one step of the response path hands to a later one travels here, typed, instead of through the response's
headers: the audit entry's receipt (set by the recorder once the entry has its index, read by the sealer).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from exchange.protocol.envelope import AuditReceipt


@dataclass
class RequestState:
    receipt: AuditReceipt | None = None  # the call's audit entry, once sequenced (and signed, if the key allows)


def request_state() -> RequestState:
    """This request's state (created on first use)."""
    state: RequestState | None = g.get("exchange_request")
    if state is None:
        state = RequestState()
        g.exchange_request = state
    return state
