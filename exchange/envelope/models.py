"""The evidence store: every accepted request envelope, its signed header and signature, and its plaintext sealed at
rest, so that who said what can be proven later to a third party holding only the sender's public key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from exchange.db import Base, utcnow


class EnvelopeEvidence(Base):
    __tablename__ = "envelope_evidence"
    __table_args__ = (Index("ix_envelope_evidence_received_at", "received_at"),)

    sender: Mapped[str] = mapped_column(String(16), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    protected: Mapped[str] = mapped_column(Text)  # b64 of the header bytes exactly as signed
    sig: Mapped[str] = mapped_column(String(100))  # b64 Ed25519 signature
    plaintext_hash: Mapped[str] = mapped_column(String(64))  # b64 SHA-256 of the plaintext
    sealed_plaintext: Mapped[bytes] = mapped_column(LargeBinary)  # SecretBox(storage key), nonce included
    storage_kid: Mapped[str] = mapped_column(String(64))  # which storage key sealed it (for rewrap)
    request_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
