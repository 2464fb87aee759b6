"""Agency clients and their registered public keys (keys.md "Kinds": `auth`, `sign`, `enc`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from exchange.db import Base, Record, utcnow

CLIENT_STATUSES = ("active", "suspended")
KEY_PURPOSES = ("auth", "sign", "enc")
KEY_STATUSES = ("pending", "active", "retiring", "retired", "revoked")
CURVE_FOR_PURPOSE = {"auth": "Ed25519", "sign": "Ed25519", "enc": "X25519"}


class Client(Record):
    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
        CheckConstraint(
            "agency IN ('interior', 'border', 'prosecutor', 'auditor', 'security')", name="agency"
        ),
    )

    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    agency: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(10), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    updated_by: Mapped[str | None] = mapped_column(String(64))

    keys: Mapped[list[ClientKey]] = relationship(back_populates="client", order_by="ClientKey.created_at")

    def active_keys(self, purpose: str) -> list[ClientKey]:
        """The keys of `purpose` whose signatures are accepted now (the active one and any retiring in time)."""
        now = utcnow()
        return [k for k in self.keys if k.purpose == purpose and k.verifies_at(now)]


class ClientKey(Base):
    """A public key registered for a client; the exchange never holds agencies' private keys."""

    __tablename__ = "client_keys"
    __table_args__ = (
        CheckConstraint("purpose IN ('auth', 'sign', 'enc')", name="purpose"),
        CheckConstraint("status IN ('pending', 'active', 'retiring', 'retired', 'revoked')", name="status"),
        CheckConstraint("crv IN ('Ed25519', 'X25519')", name="crv"),
        UniqueConstraint("client_pk", "kid", name="uq_client_keys_client_pk_kid"),
        Index("ix_client_keys_kid", "kid"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    client_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(8))
    kid: Mapped[str] = mapped_column(String(64))
    crv: Mapped[str] = mapped_column(String(8))
    x: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    retire_at: Mapped[datetime | None]  # a retiring key verifies until then
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)

    client: Mapped[Client] = relationship(back_populates="keys")

    def public_jwk(self) -> dict[str, Any]:
        return {"kty": "OKP", "crv": self.crv, "x": self.x, "kid": self.kid}

    def state_at(self, now: datetime) -> str:
        """The stored status, with a retiring key past its `retire_at` shown as retired."""
        return key_state(self.status, self.retire_at, now)

    def verifies_at(self, now: datetime) -> bool:
        """Whether signatures by this key (assertions, envelopes) are accepted now: active, or retiring in time."""
        return key_verifies(self.status, self.retire_at, now)


def key_state(status: str, retire_at: datetime | None, now: datetime) -> str:
    """A key's stored `status`, with a retiring key past its `retire_at` shown as retired (for rows read as columns)."""
    if status == "retiring" and retire_at is not None and retire_at <= now:
        return "retired"
    return status


def key_verifies(status: str, retire_at: datetime | None, now: datetime) -> bool:
    """Whether a key's signatures are accepted at `now`: active, or retiring in time."""
    return key_state(status, retire_at, now) in ("active", "retiring")
