"""The outbox and the event log (events.md).

`Outbox.add` writes one event row for one receiving agency in the caller's session: the row is committed with the
change it reports, or rolled back with it. On PostgreSQL the first event of a transaction takes a transaction-level
advisory lock, so that event writers commit one after the other and `seq` grows in commit order (a reader holding
cursor N can never later find a committed event below N), and sends `NOTIFY` (delivered at commit) to wake the long
polls of every process.

`EventLog` reads an agency's events after a cursor and applies retention.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session

from exchange.db import utcnow
from exchange.events.errors import CursorExpired
from exchange.events.models import Event, EventRetention
from exchange.events.notify import CHANNEL, hub
from exchange.protocol.errors import ValidationFailed

Clock = Callable[[], datetime]
ADVISORY_LOCK = 0x45564E54  # "EVNT": serialises event writers on PostgreSQL
DEFAULT_RETENTION_DAYS = 30
CURSOR_PREFIX = "e1."
_WROTE = "exchange.events.wrote"


@dataclass(frozen=True, kw_only=True)
class Cause:
    """Who caused an event: the agency and the request (events.md `cause`)."""

    agency: str
    request_id: str | None = None


def encode_cursor(seq: int) -> str:
    return f"{CURSOR_PREFIX}{seq}"


def decode_cursor(cursor: str) -> int:
    """The seq of a cursor, or 422 `validation_failed` on `after`."""
    digits = cursor[len(CURSOR_PREFIX):] if cursor.startswith(CURSOR_PREFIX) else ""
    if not digits.isdigit() or len(digits) > 18:
        raise ValidationFailed(errors={"after": ["Not a cursor of this exchange; use `next` of an earlier answer."]})
    return int(digits)


class Outbox:
    """Writes events in the session's current transaction."""

    def __init__(self, *, session: Session, clock: Clock = utcnow) -> None:
        self.session = session
        self.clock = clock

    def add(self, *, agency: str, type: str, cause: Cause, record: Mapping[str, Any],
            returnee_id: uuid.UUID | None = None, extra: Mapping[str, Any] | None = None) -> None:
        self._first_of_transaction()
        event_id = uuid.uuid4()
        occurred_at = self.clock()
        body: dict[str, Any] = {"id": str(event_id), "type": type, "occurred_at": occurred_at.isoformat()}
        if returnee_id is not None:
            body["returnee_id"] = str(returnee_id)
        body["record"] = dict(record)
        body.update(extra or {})
        body["cause"] = {"agency": cause.agency, "request_id": cause.request_id}
        self.session.add(Event(id=event_id, agency=agency, type=type, occurred_at=occurred_at,
                               returnee_id=returnee_id, body=body))

    def _first_of_transaction(self) -> None:
        transaction = self.session.get_transaction()
        if self.session.info.get(_WROTE) is transaction and transaction is not None:
            return
        self.session.info[_WROTE] = transaction
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
            self.session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


@event.listens_for(Session, "after_commit")
def _wake_local_waiters(session: Session) -> None:
    if session.info.pop(_WROTE, None) is not None:
        hub.bump()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WROTE, None)


@dataclass(frozen=True, kw_only=True)
class EventPage:
    events: list[Event]
    next: str


class EventLog:
    def __init__(self, *, session: Session, clock: Clock = utcnow,
                 retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.session = session
        self.clock = clock
        self.retention = timedelta(days=retention_days)

    def pruned_through(self) -> int:
        return self.session.scalar(select(EventRetention.pruned_through).where(EventRetention.id == 1)) or 0

    def read(self, agency: str, *, after: str | None, limit: int) -> EventPage:
        """The agency's events after the cursor, oldest first; 410 `cursor_expired` when retention deleted events
        that may have followed it."""
        floor = self.pruned_through()
        start = floor if after is None else decode_cursor(after)
        if start < floor:
            raise CursorExpired()
        rows = list(self.session.scalars(
            select(Event).where(Event.agency == agency, Event.seq > start).order_by(Event.seq).limit(limit)))
        last = rows[-1].seq if rows else start
        return EventPage(events=rows, next=encode_cursor(last))

    def head(self) -> int:
        return self.session.scalar(select(func.max(Event.seq))) or 0

    def prune(self) -> int:
        """Delete events older than the retention window; returns how many. Raises the watermark first, in the same
        transaction, so that no cursor below a deleted event is ever answered as if nothing had been lost."""
        cutoff = self.clock() - self.retention
        newest_old = self.session.scalar(select(func.max(Event.seq)).where(Event.occurred_at < cutoff))
        if newest_old is None:
            return 0
        row = self.session.get(EventRetention, 1, with_for_update=True)
        if row is None:
            self.session.add(EventRetention(id=1, pruned_through=newest_old))
        else:
            row.pruned_through = max(row.pruned_through, newest_old)
        result = self.session.execute(delete(Event).where(Event.seq <= newest_old))
        return int(getattr(result, "rowcount", 0) or 0)
