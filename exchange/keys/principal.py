"""Who filed and who approves a dual-control operation: an authenticated security client, never an officer claim.

Dual control (keys.md) is two different *principals*: two different security clients (client ids) that hold two
different keys. A principal is a client id and the thumbprints of the keys that prove it: the key that signed this
request (the DPoP key of an API call, the `auth` key that signed a command line statement) and every key registered
to its client. Two principals are distinct when their client ids differ and they share no key. The `officer`
claim is logged with each half, never trusted for this.

API calls are authenticated by the token and DPoP proof (exchange.auth.protect). At the server's command line a
half of dual control is a statement signed with the security client's own `auth` private key (`--client-id`,
`--key-dir`): the exchange checks it against that client's registered key, so database access alone cannot
stand in for a second client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.clients.models import Client, ClientKey
from exchange.db import utcnow
from exchange.identity import Caller
from exchange.keys.errors import PrincipalKeyInvalid, PrincipalRequired
from exchange.protocol import jose
from exchange.protocol.encoding import okp_thumbprint

STATEMENT_TYPE = "dual-control+jwt"
STATEMENT_AUDIENCE = "exchange-cli"
STATEMENT_MAX_AGE = 60  # seconds either side of now
ADMIN_SCOPE = "keys:admin"


@dataclass(frozen=True)
class Principal:
    client_id: str
    keys: frozenset[str]  # RFC 7638 thumbprints

    def shares_with(self, client_id: str | None, keys: Iterable[str]) -> bool:
        """Whether this principal is (or may be) the one that recorded `client_id` and `keys`."""
        return self.client_id == client_id or bool(self.keys & set(keys))


def registered_keys(session: Session, client_id: str) -> frozenset[str]:
    """Every key ever registered to `client_id` (any purpose, any state: a key once shared stays telling)."""
    return frozenset(session.scalars(select(ClientKey.kid).join(Client).where(Client.client_id == client_id)))


def api_principal(session: Session, caller: Caller) -> Principal:
    """The principal of an authenticated API call: its client and its DPoP key."""
    if not caller.client_id:
        raise PrincipalRequired()
    own = {caller.dpop_jkt} if caller.dpop_jkt else set()
    return Principal(client_id=caller.client_id, keys=registered_keys(session, caller.client_id) | own)


def sign_statement(*, client_id: str, key: jose.OKPKey, action: str, target: str, now: int | None = None) -> str:
    """A command line half of dual control: `action` (e.g. `key.approve`) on `target`, signed by the client's key."""
    data = key.as_dict(private=False)
    claims = {"iss": client_id, "aud": STATEMENT_AUDIENCE, "action": action, "target": target,
              "iat": int(time.time()) if now is None else now, "jti": uuid.uuid4().hex}
    kid = okp_thumbprint(str(data["crv"]), str(data["x"]))
    return jose.encode({"typ": STATEMENT_TYPE, "kid": kid}, claims, key)


def verify_statement(session: Session, statement: str, *, client_id: str, action: str, target: str,
                     now: datetime | None = None) -> Principal:
    """The principal that signed `statement`, or PrincipalKeyInvalid: `client_id` must be an active security client
    with `keys:admin`, and the statement signed by one of its registered `auth` keys that verifies now."""
    now = now or utcnow()
    client = session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None or client.agency != "security" or client.status != "active" \
            or ADMIN_SCOPE not in (client.scopes or []):
        raise PrincipalKeyInvalid(f"{client_id} is not an active security client with {ADMIN_SCOPE}.")
    try:
        parsed = jose.parse(statement)
        header = dict(parsed.protected)
    except jose.JoseError as e:
        raise PrincipalKeyInvalid("The signed statement is not a JWS.") from e
    key = next((k for k in client.keys if k.purpose == "auth" and k.kid == header.get("kid")
                and k.verifies_at(now)), None)
    if key is None:
        raise PrincipalKeyInvalid(f"The key in --key-dir is not an active auth key registered for {client_id}.")
    try:
        claims = jose.verify(parsed, jose.OKPKey.import_key(key.public_jwk()))
    except (jose.JoseError, ValueError) as e:
        raise PrincipalKeyInvalid("The signed statement does not verify.") from e
    iat = claims.get("iat")
    if header.get("typ") != STATEMENT_TYPE or claims.get("iss") != client_id \
            or claims.get("aud") != STATEMENT_AUDIENCE or claims.get("action") != action \
            or claims.get("target") != target or not isinstance(iat, int) \
            or abs(iat - now.timestamp()) > STATEMENT_MAX_AGE:
        raise PrincipalKeyInvalid("The signed statement is not for this operation, or not fresh.")
    return Principal(client_id=client_id, keys=registered_keys(session, client_id) | {key.kid})
