"""Every read of an agency client's keys and state, in one place: the authenticator, the envelope layer and the
authorization server ask here instead of querying the tables themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, select
from sqlalchemy.orm import Session

from exchange.clients.models import Client, ClientKey, key_verifies
from exchange.db import utcnow

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


@dataclass(frozen=True, kw_only=True)
class AuthKey:
    """A client's public `auth` key, as its client assertions are checked against it."""

    kid: str
    crv: str
    x: str


@dataclass(frozen=True, kw_only=True)
class ClientForToken:
    """What the token, revocation and introspection endpoints need of a client: its state and its `auth` keys
    accepted now (active, or retiring in time), read on every request."""

    client_id: str
    agency: str
    status: str
    scopes: tuple[str, ...]
    auth_keys: tuple[AuthKey, ...]


# Built once; the client id is bound per request. Keys that can never verify (pending, retired, revoked) are left
# out by the database, a retiring key past its `retire_at` by `key_verifies` (the one definition of a usable key).
_CLIENT_FOR_TOKEN = (
    select(Client.client_id, Client.agency, Client.status, Client.scopes, ClientKey.kid, ClientKey.crv, ClientKey.x,
           ClientKey.status.label("key_status"), ClientKey.retire_at)
    .select_from(Client)
    .outerjoin(ClientKey, and_(ClientKey.client_pk == Client.id, ClientKey.purpose == "auth",
                               ClientKey.status.in_(("active", "retiring"))))
    .where(Client.client_id == bindparam("client_id"))
    .order_by(ClientKey.created_at)
)


def client_for_token(session: Session, client_id: str, *, now: datetime | None = None) -> ClientForToken | None:
    """The client `client_id` with its accepted `auth` keys (oldest first), or None for an unknown client. One
    statement, run as Core on the session's connection (its transaction): no ORM entities on the token path."""
    rows = session.connection().execute(_CLIENT_FOR_TOKEN, {"client_id": client_id}).all()
    if not rows:
        return None
    now = utcnow() if now is None else now
    first = rows[0]
    keys = tuple(AuthKey(kid=r.kid, crv=r.crv, x=r.x) for r in rows
                 if r.kid is not None and key_verifies(r.key_status, r.retire_at, now))
    return ClientForToken(client_id=first.client_id, agency=first.agency, status=first.status,
                          scopes=tuple(first.scopes or ()), auth_keys=keys)
