"""Security officers' commands on the server: each change and its audit entry in one transaction.

`run_audited` runs a service call, appends `action` (`key.rotate`, `client.key_revoke`, ...) with the officer's id,
commits both or neither, and on a typed refusal records the failure too (audit.md: successes and failures), prints
the stable code and exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

from rich.console import Console

from exchange.audit import recorder
from exchange.audit.services import new_request_id
from exchange.db import db
from exchange.identity import Caller
from exchange.protocol.errors import ExchangeError

T = TypeVar("T")
console = Console()

# For CLI commands taking a key id: thumbprints are base64url, so one in 64 starts with "-", which click would read
# as an option. No such command has short options, so an unknown "option" is passed on as the kid.
KID_FIRST_DASH = {"ignore_unknown_options": True}


def officer_caller(officer: str | None, purpose: str, client_id: str = "cli") -> Caller:
    return Caller(agency="security", client_id=client_id, officer=officer, purpose=purpose)


def run_audited(*, officer: str, command: str, action: str, purpose: str, work: Callable[[], T],
                record_ids: Callable[[T], Iterable[object]], client_id: str = "cli") -> T:
    """`client_id`: the security client a command proved to act as (dual control), else `cli`."""
    caller = officer_caller(officer, purpose, client_id)
    try:
        result = work()
        recorder.record_event(db.session, action=action, outcome="success", status=200, caller=caller,
                              request_id=new_request_id(), method="CLI", path=command,
                              record_ids=list(record_ids(result)))
        db.session.commit()
        return result
    except ExchangeError as e:
        db.session.rollback()
        refuse(e, caller=caller, command=command, action=action)
        raise  # not reached: refuse exits


def refuse(error: ExchangeError, *, caller: Caller, command: str, action: str) -> None:
    try:
        recorder.record_event(db.session, action=action, outcome="failure", status=error.status, reason=error.code,
                              caller=caller, request_id=new_request_id(), method="CLI", path=command)
        db.session.commit()
    except ExchangeError:
        db.session.rollback()
    console.print(f"[red]refused ({error.code}):[/] {error.message}")
    sys.exit(1)
