"""Resource protection: who is calling (token + DPoP proof), and may they do this (scope + purpose).

`OAuth2Authenticator` is the released authenticator of the caller seam (`exchange.web.caller`): it runs before any
`/v1` view and turns `Authorization: DPoP <token>` + `DPoP: <proof>` into a `Caller`, or refuses. The guard on each
view (`protected(...)`: scopes and purpose of use) is `exchange.web.guards`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Request
from sqlalchemy import Row, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from exchange.auth.models import RevokedToken, SeenJti
from exchange.auth.replay import DatabaseReplayCache
from exchange.auth.tokens import verify_access_token
from exchange.clients.keys import ACTIVE_ENC_KEY, NEWEST_FIRST
from exchange.clients.models import Client, ClientKey
from exchange.identity import Caller, ResponseKey
from exchange.keys.ring import KeyRing
from exchange.protocol.auth_errors import DPoPReplay, InvalidDPoPProof, InvalidToken, Replayed
from exchange.protocol.dpop import DPoPProof, verify_dpop_proof
from exchange.protocol.errors import ExchangeError
from exchange.protocol.replay import ReplayCache
from exchange.web.state import request_state

DPOP_NAMESPACE = "dpop"  # the replay cache's namespace of DPoP proofs (`verify_dpop_proof` claims in it)


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
        # 3. The proof: this request, this token, the token's key. Its one use is claimed below, once the token's
        # state allows the call (an invalid proof or a refused token burns no jti).
        deferred = _DeferredClaim()
        proof: DPoPProof | None = None
        proof_error: ExchangeError | None = None
        try:
            proof = verify_dpop_proof(
                request.headers.get("DPoP"), method=request.method, url=self.issuer + request.path,
                access_token=token, replay=deferred, bound_to=access.jkt,
            )
        except ExchangeError as e:  # reported after the token's own state, which comes first
            proof_error = e
        # 4. Not revoked, and its client still active (a suspended client's tokens stop working at once): read from
        # the database on every call, in one statement with the client's active `enc` key (responses are sealed to it)
        # and whether the proof's jti was claimed already.
        session = self.session()
        row = read_client_state(session, access.client_id, access.jti, proof.jti if proof is not None else "")
        if row is None:  # no such client; say it is revoked if it is
            if session.scalar(select(exists().where(RevokedToken.jti == access.jti))):
                raise InvalidToken("The access token has been revoked.")
            raise InvalidToken("The client of this access token is suspended or unknown.")
        if row.revoked:
            raise InvalidToken("The access token has been revoked.")
        if row.status != "active":
            raise InvalidToken("The client of this access token is suspended or unknown.")
        if proof_error is not None or proof is None or deferred.claimed is None:
            raise proof_error or InvalidDPoPProof()
        # 5. One use only. With the database cache the claim is made in the call's own transaction, just before its
        # audit entry (`exchange.web.pipeline.make_claims`: one commit per call), or with its failure's entry; a jti
        # already claimed is refused here. Another cache (Redis) claims now, as it always did.
        if isinstance(self.replay, DatabaseReplayCache):
            if row.replayed:
                raise DPoPReplay()
            request_state().claims.append(_DatabaseClaim(self.replay, *deferred.claimed))
        else:
            try:
                self.replay.claim(*deferred.claimed)
            except Replayed as e:
                raise DPoPReplay() from e
        response_key = ResponseKey(kid=row.kid, x=row.x) if row.kid is not None else None
        return Caller(
            agency=access.agency, client_id=access.client_id, officer=proof.officer, purpose=proof.purpose,
            case_ref=proof.case_ref, scopes=access.scopes, token_jti=access.jti, dpop_jti=proof.jti,
            dpop_jkt=access.jkt, dpop_proof=proof.raw, response_key=response_key,
        )


class _DeferredClaim:
    """The replay cache as `verify_dpop_proof` sees it: the claim it asks for is noted, and made by the caller."""

    def __init__(self) -> None:
        self.claimed: tuple[str, str, int] | None = None

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        self.claimed = (namespace, jti, expires_at)


@dataclass(frozen=True)
class _DatabaseClaim:
    """A DPoP proof's jti, claimed in a transaction of the call (`exchange.web.state.Claim`)."""

    cache: DatabaseReplayCache
    namespace: str
    jti: str
    expires_at: int

    def __call__(self, session: Session, *, again: bool) -> None:
        try:
            self.cache.claim_in(session.connection(), self.namespace, self.jti, self.expires_at)
        except Replayed as e:
            if not again:
                raise DPoPReplay() from e


# Built once (constructing a statement costs more than running it here); the values are bound per call.
CLIENT_STATE = (
    select(Client.status, exists().where(RevokedToken.jti == bindparam("token_jti")).label("revoked"),
           exists().where(SeenJti.namespace == DPOP_NAMESPACE, SeenJti.jti == bindparam("dpop_jti")).label("replayed"),
           ClientKey.kid, ClientKey.x)
    .select_from(Client)
    .outerjoin(ClientKey, and_(ClientKey.client_pk == Client.id, ACTIVE_ENC_KEY))
    .where(Client.client_id == bindparam("client_id"))
    .order_by(NEWEST_FIRST)
    .limit(1)
)


def read_client_state(
    session: Session, client_id: str, token_jti: str, dpop_jti: str = "",
) -> Row[str, bool, bool, str, str] | None:
    """One row for an existing client, None for an unknown one: `status`, `revoked` (whether the token `token_jti`
    is revoked), `replayed` (whether the DPoP proof `dpop_jti` was claimed in the database's replay cache), and the
    kid and `x` of its newest active `enc` key (None when it has none)."""
    # Core execution on the session's connection (its transaction): no ORM entities here, so no ORM overhead.
    return session.connection().execute(
        CLIENT_STATE, {"client_id": client_id, "token_jti": token_jti, "dpop_jti": dpop_jti}).first()
