"""`/v1/clients`: security officers administer agency clients (scope `clients:admin`)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from flask.views import MethodView
from marshmallow import RAISE

from exchange.clients import schemas as s
from exchange.clients.errors import ClientNotFound, DuplicateClient, DuplicateKey, InvalidRotationProof
from exchange.clients.models import Client
from exchange.clients.services import ClientService
from exchange.db import db
from exchange.envelope.http import EnvelopeBlueprint
from exchange.protocol.errors import PreconditionFailed
from exchange.protocol.policy import ALL_SCOPES
from exchange.web import audit_context
from exchange.web.caller import current_caller
from exchange.web.conditional import if_match
from exchange.web.guards import protected
from exchange.web.openapi import if_match_header, raises

blp = EnvelopeBlueprint("clients", __name__, url_prefix="/v1/clients",
                description="Agency clients, their scopes, status and public keys (security officers).")
ADMIN = {"clients:admin"}


def service() -> ClientService:
    return ClientService(session=db.session)


def client_response(client: Client, *, status: int = 200) -> Response:
    response = jsonify(s.ClientView().dump(client))
    response.status_code = status
    response.headers["ETag"] = f'"{client.version}"'
    return response


@blp.route("")
class Clients(MethodView):
    @protected(scopes=ADMIN)
    @blp.arguments(s.ClientQuery, location="query", unknown=RAISE)
    @blp.response(200, s.ClientPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List agency clients"""
        filters = dict(query)
        page, page_size = filters.pop("page"), filters.pop("page_size")
        items, total = service().list_clients(filters, page=page, page_size=page_size)
        return {"items": items, "page": page, "page_size": page_size, "total": total}

    @protected(scopes=ADMIN)
    @raises(DuplicateClient, DuplicateKey)
    @blp.arguments(s.ClientCreateSchema)
    @blp.response(201, s.ClientView)
    def post(self, data: dict[str, Any]) -> Response:
        """Register an agency client with its scopes and public keys"""
        client = service().register(data, officer=current_caller().officer)
        response = client_response(client, status=201)
        response.headers["Location"] = url_for(".ClientItem", client_id=client.client_id)
        return response


@blp.route("/<string:client_id>")
class ClientItem(MethodView):
    @protected(scopes=ADMIN)
    @raises(ClientNotFound)
    @blp.response(200, s.ClientView)
    def get(self, client_id: str) -> Response:
        """Read an agency client"""
        return client_response(service().get(client_id))

    @protected(scopes=ADMIN)
    @raises(ClientNotFound)
    @if_match_header(required=True)
    @blp.arguments(s.ClientUpdateSchema)
    @blp.response(200, s.ClientView)
    def patch(self, changes: dict[str, Any], client_id: str) -> Response:
        """Change a client's name, scopes or status (suspend/resume; If-Match required)"""
        client = service().update(client_id, changes, if_match=if_match(required=True),
                                  officer=current_caller().officer)
        return client_response(client)


@blp.route("/me/keys")
class OwnKeys(MethodView):
    @protected(scopes=ALL_SCOPES)
    @raises(InvalidRotationProof, DuplicateKey, PreconditionFailed)
    @blp.arguments(s.OwnKeyRotationSchema)
    @blp.response(201, s.ClientKeyView)
    def post(self, data: dict[str, Any]) -> Any:
        """Replace one of your own keys, proven by your current active key; the old one retires after an overlap"""
        caller = current_caller()
        issuer = current_app.config["ISSUER"].rstrip("/")
        key = service().rotate_own_key(
            caller.client_id or "", data["purpose"], data["jwk"], proof=data["proof"],
            audience=f"{issuer}{request.path}", replay=current_app.extensions["exchange.replay"])
        audit_context.set_action("client.key_rotate")
        audit_context.touch(key.kid)
        return key


@blp.route("/<string:client_id>/keys")
class ClientKeys(MethodView):
    @protected(scopes=ADMIN)
    @raises(ClientNotFound, DuplicateKey, PreconditionFailed)
    @blp.arguments(s.ClientKeyInputSchema)
    @blp.response(201, s.ClientView)
    def post(self, data: dict[str, Any], client_id: str) -> Response:
        """Register another public key for a client"""
        svc = service()
        svc.add_key(client_id, data["purpose"], data["jwk"])
        return client_response(svc.get(client_id), status=201)


@blp.route("/<string:client_id>/keys/<string:kid>/revocation")
class ClientKeyRevocation(MethodView):
    @protected(scopes=ADMIN)
    @raises(ClientNotFound, PreconditionFailed)
    @blp.arguments(s.KeyRevocationSchema)
    @blp.response(200, s.ClientView)
    def post(self, data: dict[str, Any], client_id: str, kid: str) -> Response:
        """Revoke one of a client's keys: it fails every request at once"""
        svc = service()
        svc.revoke_key(client_id, kid, reason=data["reason"])
        return client_response(svc.get(client_id))
