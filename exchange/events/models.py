"""The outbox (`events`), its retention watermark, and webhooks with their deliveries (events.md).

An event row is written in the same transaction as the change it reports, one row per receiving agency, its body
already shaped by that agency's need-to-know view: a reader only ever selects its own agency's rows and sends their
bodies as they are. `seq` orders them; the cursor a partner holds is an opaque form of it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, utcnow

EVENT_TYPES = (
    "returnee.arrived",
    "screening.hit",
    "crossing.unmatched",
    "instruction.issued",
    "vetting.completed",
    "decision.recorded",
    "returnee.status_changed",
)
DELIVERY_STATES = ("pending", "delivered", "dead")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_agency_seq", "agency", "seq"), Index("ix_events_occurred_at", "occurred_at"))

    # BigInteger on PostgreSQL (an identity column); SQLite's INTEGER PRIMARY KEY is its rowid
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                     autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    agency: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    returnee_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    body: Mapped[dict[str, Any]]  # the whole event as the agency receives it (events.md "Event body")


class EventRetention(Base):
    """One row: the highest `seq` retention has deleted. A cursor below it may have missed events (410)."""

    __tablename__ = "event_retention"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.client_id", ondelete="CASCADE"),
                                           index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # the last event seq turned into deliveries for this webhook (starts at the newest event when registered)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[dict[str, Any]]  # kept with the delivery: retention may delete the event first
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
