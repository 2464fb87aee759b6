"""Client administration: security officers register agency clients and their public keys, suspend and resume them.

Used by the `/v1/clients` API and the `exchange clients` CLI alike. Flushes, never commits (the caller's unit of
work does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from exchange.auth.policy import AGENCY_SCOPES
from exchange.clients.errors import ClientNotFound, DuplicateClient, DuplicateKey
from exchange.clients.models import Client, ClientKey
from exchange.db import utcnow
from exchange.errors import PreconditionFailed, ValidationFailed
from exchange.keys.store import okp_thumbprint


class ClientService:
    def __init__(self, *, session: Session) -> None:
        self.session = session

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
        client.updated_by = officer
        client.updated_at = utcnow()  # always an UPDATE, so the version check always runs
        self._flush()
        return client

    def add_key(self, client_id: str, purpose: str, jwk: Mapping[str, Any]) -> ClientKey:
        client = self.get(client_id)
        key = self._add_key(client, purpose, jwk)
        client.updated_at = utcnow()
        self._flush()
        return key

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
