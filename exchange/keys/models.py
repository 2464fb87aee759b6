"""The key registry: what each of the exchange's keys is for and when (keys.md "States"), and dual-control approvals.

A key's state is derived from its times, the same way in every worker and machine, so that an activation scheduled
a few seconds ahead happens everywhere at once (no worker signs with a key another cannot yet verify):

- `revoked` once `revoked_at` is set; `destroyed` once `destroyed_at` is set (public part kept);
- `pending` until `activate_at` (published in the JWKS, verifies, never signs);
- `active`: the latest activated key of its purpose; the previous one becomes `retiring` until its `retire_at`
  (still verifies and decrypts), then `retired` (public part kept, so old checkpoints still verify).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, Record, utcnow

KEY_STATES = ("pending", "active", "retiring", "retired", "revoked", "destroyed")
APPROVAL_OPERATIONS = ("revoke", "destroy")
APPROVAL_STATUSES = ("pending", "executed", "expired", "refused")


class ExchangeKeyRecord(Record):
    __tablename__ = "exchange_keys"
    __table_args__ = (
        CheckConstraint("purpose IN ('token', 'envelope-sign', 'envelope-enc', 'audit', 'storage')", name="purpose"),
        Index("ix_exchange_keys_purpose", "purpose"),
    )

    kid: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(24))
    x: Mapped[str | None] = mapped_column(String(64))  # b64url public key; None for a secret (storage) key
    activate_at: Mapped[datetime | None]
    retire_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    destroyed_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(64))

    def state_at(self, now: datetime, *, active_kid: str | None) -> str:
        """This key's state at `now`, given which key of its purpose is active then."""
        if self.revoked_at is not None:
            return "revoked"
        if self.destroyed_at is not None:
            return "destroyed"
        if self.activate_at is None or self.activate_at > now:
            return "pending"
        if self.kid == active_kid:
            return "active"
        if self.retire_at is not None and self.retire_at <= now:
            return "retired"
        return "retiring"


class KeyApproval(Base):
    """A revocation or destruction of an exchange key waiting for a second security client (keys.md dual control)."""

    __tablename__ = "key_approvals"
    __table_args__ = (
        CheckConstraint("operation IN ('revoke', 'destroy')", name="operation"),
        CheckConstraint("status IN ('pending', 'executed', 'expired', 'refused')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    operation: Mapped[str] = mapped_column(String(8))
    kid: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    requested_by: Mapped[str] = mapped_column(String(64))  # the officer claim: logged, never trusted
    # the principal that filed: its security client and the thumbprints of its keys (space-separated); an approval
    # by the same client, or by a client sharing one of these keys, is refused (None: filed before this was kept,
    # never approvable)
    requested_by_client: Mapped[str | None] = mapped_column(String(64))
    requested_by_keys: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_by_client: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
