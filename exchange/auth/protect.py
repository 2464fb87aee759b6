"""Resource protection: who is calling (token + DPoP proof), and may they do this (scope + purpose).

`OAuth2Authenticator` is the released authenticator of the caller seam (`exchange.web.caller`): it runs before any
`/v1` view and turns `Authorization: DPoP <token>` + `DPoP: <proof>` into a `Caller`, or refuses. The guard on each
view (`protected(...)`: scopes and purpose of use) is `exchange.web.guards`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Request
from sqlalchemy import Row, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from exchange.auth.models import RevokedToken
from exchange.auth.tokens import verify_access_token
from exchange.clients.keys import ACTIVE_ENC_KEY, NEWEST_FIRST
from exchange.clients.models import Client, ClientKey
from exchange.identity import Caller, ResponseKey
from exchange.keys.ring import KeyRing
from exchange.protocol.auth_errors import InvalidToken
from exchange.protocol.dpop import verify_dpop_proof
from exchange.protocol.replay import ReplayCache


class OAuth2Authenticator:
    def __init__(
        self, *, keystore: KeyRing, replay: ReplayCache, issuer: str, audience: str,
        session: Callable[[], Session],
    ) -> None:
        self.keystore = keystore
        self.replay = replay
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.session = session

    def authenticate(self, request: Request) -> Caller:
        # 1. The DPoP scheme only (a Bearer token, even a valid one, is refused: it would not be sender-constrained).
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "DPoP" or not token.strip():
            raise InvalidToken("Send Authorization: DPoP <access token> with a DPoP proof.")
        token = token.strip()
        # 2. The token: signature by a published token key, issuer, audience, lifetime.
        access = verify_access_token(token, keys=self.keystore.verification_keys("token"), issuer=self.issuer,
                                     audience=self.audience)
        # 3. Not revoked, and its client still active (a suspended client's tokens stop working at once): read from
        # the database on every call, in one statement with the client's active `enc` key (responses are sealed to it).
        session = self.session()
        row = read_client_state(session, access.client_id, access.jti)
        if row is None:  # no such client; say it is revoked if it is
            if session.scalar(select(exists().where(RevokedToken.jti == access.jti))):
                raise InvalidToken("The access token has been revoked.")
            raise InvalidToken("The client of this access token is suspended or unknown.")
        if row.revoked:
            raise InvalidToken("The access token has been revoked.")
        if row.status != "active":
            raise InvalidToken("The client of this access token is suspended or unknown.")
        response_key = ResponseKey(kid=row.kid, x=row.x) if row.kid is not None else None
        # 4. The proof: this request, this token, the token's key, used once.
        proof = verify_dpop_proof(
            request.headers.get("DPoP"), method=request.method, url=self.issuer + request.path,
            access_token=token, replay=self.replay, bound_to=access.jkt,
        )
        return Caller(
            agency=access.agency, client_id=access.client_id, officer=proof.officer, purpose=proof.purpose,
            case_ref=proof.case_ref, scopes=access.scopes, token_jti=access.jti, dpop_jti=proof.jti,
            dpop_jkt=access.jkt, dpop_proof=proof.raw, response_key=response_key,
        )


# Built once (constructing a statement costs more than running it here); the values are bound per call.
CLIENT_STATE = (
    select(Client.status, exists().where(RevokedToken.jti == bindparam("token_jti")).label("revoked"), ClientKey.kid,
           ClientKey.x)
    .select_from(Client)
    .outerjoin(ClientKey, and_(ClientKey.client_pk == Client.id, ACTIVE_ENC_KEY))
    .where(Client.client_id == bindparam("client_id"))
    .order_by(NEWEST_FIRST)
    .limit(1)
)


def read_client_state(session: Session, client_id: str, token_jti: str) -> Row[str, bool, str, str] | None:
    """One row for an existing client, None for an unknown one: `status`, `revoked` (whether the token `token_jti`
    is revoked), and the kid and `x` of its newest active `enc` key (None when it has none)."""
    # Core execution on the session's connection (its transaction): no ORM entities here, so no ORM overhead.
    return session.connection().execute(CLIENT_STATE, {"client_id": client_id, "token_jti": token_jti}).first()
