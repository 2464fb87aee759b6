"""Every read of an agency client's keys and state, in one place: the authenticator, the envelope layer and the
authorization server ask here instead of querying the tables themselves."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from exchange.clients.models import Client, ClientKey

# the key responses are sealed to: the client's newest active `enc` key (joined into the authenticator's one query)
ACTIVE_ENC_KEY: ColumnElement[bool] = and_(ClientKey.purpose == "enc", ClientKey.status == "active")
NEWEST_FIRST = ClientKey.created_at.desc()


def newest_active_enc_key(session: Session, client_id: str) -> ClientKey | None:
    """The key a response to `client_id` is sealed to, or None when it has none."""
    key: ClientKey | None = session.scalar(
        select(ClientKey).join(Client).where(Client.client_id == client_id, ACTIVE_ENC_KEY).order_by(NEWEST_FIRST)
    )
    return key


def sign_key(session: Session, *, agency: str, kid: str) -> ClientKey | None:
    """The agency's registered `sign` key `kid`, whatever its state (the caller judges it)."""
    key: ClientKey | None = session.scalar(
        select(ClientKey).join(Client).where(Client.agency == agency, ClientKey.kid == kid, ClientKey.purpose == "sign")
    )
    return key


def client_by_id(session: Session, client_id: str) -> Client | None:
    client: Client | None = session.scalar(select(Client).where(Client.client_id == client_id))
    return client
