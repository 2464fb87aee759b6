"""Helpers for the audit tests: an auditor client, the log as stored, synthetic events in bulk."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from exchange.audit.entries import Event
from exchange.audit.models import AuditCheckpoint, AuditEntry, AuditEntryRecord, AuditHead, AuditNode
from exchange.audit.services import AuditLog
from exchange.protocol import merkle
from tests.conftest import AgencyClient


@pytest.fixture
def auditor(as_agency: Callable[..., AgencyClient]) -> AgencyClient:
    return as_agency("auditor", officer="TJ-AUD-007")


def engine_of(app: Flask) -> Any:
    return app.extensions["exchange.db"]


def stored_entries(app: Flask) -> list[dict[str, Any]]:
    """Every entry in the database, decoded, in index order."""
    with Session(engine_of(app)) as session:
        return [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx))]


def stored_leaves(app: Flask) -> list[bytes]:
    with Session(engine_of(app)) as session:
        return list(session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx)))


def stored_nodes(app: Flask) -> dict[tuple[int, int], bytes]:
    with Session(engine_of(app)) as session:
        return {(n.level, n.idx): n.hash for n in session.scalars(select(AuditNode))}


def event(number: int = 0, **overrides: Any) -> Event:
    """A synthetic event (an auditor's read, a border read, ...) varied by `number`."""
    agencies = ("interior", "border", "prosecutor", "auditor")
    fields: dict[str, Any] = {
        "time": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=number),
        "request_id": f"{number:032x}",
        "action": ("consult", "disclose", "collect", "audit.read")[number % 4],
        "outcome": "success",
        "status": 200,
        "method": "GET",
        "path": f"/v1/returnees/{number}",
        "agency": agencies[number % 4],
        "client_id": f"test-{agencies[number % 4]}",
        "purpose": "oversight",
        "record_ids": (f"record-{number % 7}",),
    }
    fields.update(overrides)
    return Event(**fields)


def fill(app: Flask, count: int, *, batch: int = 500, start: int = 0) -> None:
    """Append `count` synthetic entries directly through the service, `batch` per transaction."""
    with Session(engine_of(app)) as session:
        for first in range(start, start + count, batch):
            AuditLog(session=session).append([event(n) for n in range(first, min(first + batch, start + count))])
            session.commit()


def rewind(app: Flask, size: int) -> None:
    """Roll the log back to `size` entries, as a server rewriting history would (head, tree and checkpoints)."""
    leaves = stored_leaves(app)[:size]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.push(merkle.leaf_hash(leaf))
    with Session(engine_of(app)) as session:
        session.execute(delete(AuditEntry).where(AuditEntry.idx >= size))
        session.execute(delete(AuditEntryRecord).where(AuditEntryRecord.idx >= size))
        session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size > size))
        for level in range(64):  # every node whose subtree reaches past `size`
            session.execute(delete(AuditNode).where(AuditNode.level == level, AuditNode.idx >= (size >> level)))
        session.execute(update(AuditHead).values(size=size, frontier=frontier.encode(), checkpoint_size=size))
        session.commit()
