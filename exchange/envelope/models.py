"""The evidence store: every accepted request envelope, its signed header and signature, and its plaintext sealed at
rest, so that who said what can be proven later to a third party holding only the sender's public key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String, Text
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


class EnvelopeOutcome(Base):
    """What the exchange answered to a stored call that came in an envelope, committed with the call's changes, so
    that the same envelope sent again (same sender and `msg_id`: a client that lost the answer retries) is answered
    with this outcome instead of being carried out twice. Kept until the envelope has expired (`expires_at`): after
    that no envelope with this `msg_id` passes step 4, and the evidence row's primary key still refuses it."""

    __tablename__ = "envelope_outcomes"
    __table_args__ = (Index("ix_envelope_outcomes_expires_at", "expires_at"),)

    sender: Mapped[str] = mapped_column(String(16), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))  # only this client gets the outcome again
    method: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    plaintext_hash: Mapped[str] = mapped_column(String(64))  # b64 SHA-256: the same request, not just the same id
    status: Mapped[int] = mapped_column(Integer)
    headers: Mapped[dict[str, Any]]  # ETag, Location, Content-Type as first answered
    sealed_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # SecretBox(storage key)
    storage_kid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    record_ids: Mapped[list[Any]]  # for the audit entry of an answer given again
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
