"""Client administration: security officers register agency clients and their public keys, suspend and resume them.

Used by the `/v1/clients` API and the `exchange clients` CLI alike. Flushes, never commits (the caller's unit of
work does).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from exchange.clients.errors import ClientNotFound, DuplicateClient, DuplicateKey, InvalidRotationProof
from exchange.clients.models import Client, ClientKey
from exchange.db import changed, utcnow, version_holds
from exchange.protocol import jose
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.clock import TOKEN_LIFETIME
from exchange.protocol.encoding import okp_thumbprint
from exchange.protocol.envelope import MAX_LIFETIME as ENVELOPE_MAX_LIFETIME
from exchange.protocol.errors import PreconditionFailed, ValidationFailed
from exchange.protocol.policy import AGENCY_SCOPES
from exchange.protocol.replay import ReplayCache

ROTATION_PROOF_MAX_AGE = 60  # seconds either side of now
# a replaced agency key keeps verifying this long: its holder may have tokens and envelopes in flight
AGENCY_KEY_OVERLAP = timedelta(seconds=TOKEN_LIFETIME + ENVELOPE_MAX_LIFETIME + 60)


class ClientService:
    def __init__(self, *, session: Session, overlap: timedelta = AGENCY_KEY_OVERLAP) -> None:
        self.session = session
        self.overlap = overlap

    def register(self, data: Mapping[str, Any], *, officer: str | None) -> Client:
        if self.session.scalar(select(Client.id).where(Client.client_id == data["client_id"])):
            raise DuplicateClient(f"Client {data['client_id']} already exists.")
        client = Client(client_id=data["client_id"], agency=data["agency"], name=data["name"],
                        scopes=sorted(set(data["scopes"])), status="active", created_by=officer, updated_by=officer)
        self.session.add(client)
        for key in data["keys"]:
            self._add_key(client, key["purpose"], key["jwk"])
        self.session.flush()
        return client

    def get(self, client_id: str) -> Client:
        client = self.session.scalar(
            select(Client).where(Client.client_id == client_id).options(selectinload(Client.keys))
        )
        if client is None:
            raise ClientNotFound(f"No client {client_id}.")
        return client

    def list_clients(self, filters: Mapping[str, Any], *, page: int, page_size: int) -> tuple[list[Client], int]:
        stmt = select(Client)
        for name in ("agency", "status"):
            if filters.get(name):
                stmt = stmt.where(getattr(Client, name) == filters[name])
        total = self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        items = self.session.scalars(
            stmt.options(selectinload(Client.keys)).order_by(Client.client_id)
            .offset((page - 1) * page_size).limit(page_size)
        )
        return list(items), total

    def update(self, client_id: str, changes: Mapping[str, Any], *, if_match: int | None,
               officer: str | None) -> Client:
        client = self.get(client_id)
        if if_match is not None and client.version != if_match:
            raise PreconditionFailed(f"The client is at version {client.version}, not {if_match}.")
        fields = dict(changes)
        if "scopes" in fields:
            foreign = set(fields["scopes"]) - AGENCY_SCOPES[client.agency]
            if foreign:
                raise ValidationFailed(errors={"scopes": [f"Not a scope of {client.agency}: {sorted(foreign)}"]})
            fields["scopes"] = sorted(set(fields["scopes"]))
        if fields.get("status") == "active":
            fields.setdefault("status_reason", None)
        for name, value in fields.items():
            setattr(client, name, value)
        if changed(client):  # a change that changes nothing makes no new version (README, "Using the API")
            client.updated_by = officer
            client.updated_at = utcnow()
        elif not version_holds(self.session, client):
            raise PreconditionFailed()
        self._flush()
        return client

    def add_key(self, client_id: str, purpose: str, jwk: Mapping[str, Any]) -> ClientKey:
        """Register a key that is active at once; the previous active key of its purpose starts retiring."""
        client = self.get(client_id)
        key = self._add_key(client, purpose, jwk)
        self._retire_previous(client, key)
        client.updated_at = utcnow()
        self._flush()
        return key

    def rotate_own_key(self, client_id: str, purpose: str, jwk: Mapping[str, Any], *, proof: str, audience: str,
                       replay: ReplayCache) -> ClientKey:
        """An agency replaces its own `purpose` key (keys.md "register ... by the agency itself in a request signed
        with its current active key of the same purpose").

        `proof`: a JWS (EdDSA) by the client's current active key of `purpose` (`sign` for an `enc` key, since
        X25519 cannot sign) with `iss` = client_id, `aud` = the endpoint URL, `new_kid`, `iat`, `jti`.
        """
        signer_purpose = "sign" if purpose == "enc" else purpose
        new_kid = okp_thumbprint(str(jwk.get("crv")), str(jwk.get("x")))
        # Before this session writes anything (the request's evidence row waits unflushed): the replay cache
        # claims the proof's jti in a transaction of its own, which on SQLite must not wait for ours.
        with self.session.no_autoflush:
            client = self.get(client_id)
            verify_rotation_proof(proof, keys=[k for k in client.keys if k.purpose == signer_purpose
                                               and k.state_at(utcnow()) == "active"],
                                  client_id=client_id, audience=audience, new_kid=new_kid, replay=replay)
        return self.add_key(client_id, purpose, jwk)

    def _retire_previous(self, client: Client, key: ClientKey) -> None:
        now = utcnow()
        key.activated_at = now
        for other in client.keys:
            if other is not key and other.purpose == key.purpose and other.status == "active":
                other.status, other.retire_at = "retiring", now + self.overlap

    def revoke_key(self, client_id: str, kid: str, *, reason: str) -> ClientKey:
        client = self.get(client_id)
        key = next((k for k in client.keys if k.kid == kid), None)
        if key is None:
            raise ClientNotFound(f"Client {client_id} has no key {kid}.")
        if key.status != "revoked":
            key.status, key.revoked_at, key.revoked_reason = "revoked", utcnow(), reason
            client.updated_at = utcnow()
        self._flush()
        return key

    def _add_key(self, client: Client, purpose: str, jwk: Mapping[str, Any]) -> ClientKey:
        kid = okp_thumbprint(jwk["crv"], jwk["x"])
        if any(k.kid == kid for k in client.keys):
            raise DuplicateKey(f"Key {kid} is already registered for {client.client_id}.")
        if jwk.get("kid") not in (None, kid):
            raise ValidationFailed(errors={"jwk": [f"kid must be the RFC 7638 thumbprint {kid} (or absent)."]})
        key = ClientKey(client=client, purpose=purpose, kid=kid, crv=jwk["crv"], x=jwk["x"], status="active")
        self.session.add(key)
        return key

    def _flush(self) -> None:
        try:
            self.session.flush()
        except StaleDataError as e:
            raise PreconditionFailed() from e


def verify_rotation_proof(proof: str, *, keys: list[ClientKey], client_id: str, audience: str, new_kid: str,
                          replay: ReplayCache, now: int | None = None) -> None:
    """Check an agency's own key-rotation proof; raise `InvalidRotationProof` (403) on any defect."""
    now = int(time.time()) if now is None else now
    try:
        header = jose.header_of(proof)
        key = next((k for k in keys if k.kid == header.get("kid")), None)
        if header.get("alg") != jose.ALG or key is None:
            raise InvalidRotationProof("The proof must be signed (EdDSA, kid) by your current active key.")
        claims = dict(jose.decode(proof, jose.OKPKey.import_key(key.public_jwk())).claims)
    except jose.JoseError as e:
        raise InvalidRotationProof("The proof's signature does not verify with your current active key.") from e
    iat, jti = claims.get("iat"), claims.get("jti")
    if claims.get("iss") != client_id or claims.get("aud") != audience or claims.get("new_kid") != new_kid:
        raise InvalidRotationProof("The proof must name you (iss), this endpoint (aud) and the new key (new_kid).")
    if not isinstance(iat, int) or abs(now - iat) > ROTATION_PROOF_MAX_AGE or not isinstance(jti, str) or not jti:
        raise InvalidRotationProof("The proof needs a fresh iat (within 60 s) and a jti.")
    try:
        digest = jose.sha256_b64(f"{client_id}\n{jti}")  # bounded length, one namespace for every client
        replay.claim("key-rotation", digest, iat + 2 * ROTATION_PROOF_MAX_AGE)
    except Replayed as e:
        raise InvalidRotationProof("This proof was used before.") from e
