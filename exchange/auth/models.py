"""State the token machinery shares across workers: the replay cache and revoked tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, utcnow


class SeenJti(Base):
    """A `jti` seen within its lifetime (client assertions, DPoP proofs), per namespace; the database replay cache."""

    __tablename__ = "seen_jtis"
    __table_args__ = (Index("ix_seen_jtis_expires_at", "expires_at"),)

    namespace: Mapped[str] = mapped_column(String(40), primary_key=True)  # "dpop", "assertion", "envelope:<agency>"
    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime]


class RevokedToken(Base):
    """An access token revoked before it expired (RFC 7009); kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)
