"""`/v1/events` (long-polling read of the caller's agency's events) and `/v1/clients/{id}/webhooks` (security
officers). Thin: the services hold the logic; the one web concern here is that a long poll gives its database
connection back while it waits (`db.release`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Response, current_app, jsonify, url_for
from flask.views import MethodView
from marshmallow import RAISE

from exchange.db import db
from exchange.envelope.http import EnvelopeBlueprint
from exchange.events import schemas as s
from exchange.events.notify import hub
from exchange.events.services import EventLog, EventPage
from exchange.events.webhooks import WebhookService
from exchange.web.audit_context import set_action, touch
from exchange.web.caller import current_caller
from exchange.web.guards import protected

blp = EnvelopeBlueprint("events", __name__, url_prefix="/v1",
                        description="Events for the caller's agency (long polling) and webhooks (events.md).")
ADMIN = {"clients:admin"}


def event_log() -> EventLog:
    return EventLog(session=db.session, retention_days=current_app.config["EVENT_RETENTION_DAYS"])


def long_poll(agency: str, *, after: str | None, limit: int, wait: float) -> EventPage:
    """Read; while nothing is newer and time is left, give the connection back, wait to be woken (or a slice), read
    again. The hub's generation is taken before each read, so an event committed in between is never slept over."""
    deadline = time.monotonic() + wait
    slice_seconds = hub.slice_for(db.engine(current_app))
    while True:
        seen = hub.generation()
        page = event_log().read(agency, after=after, limit=limit)
        remaining = deadline - time.monotonic()
        if page.events or remaining <= 0:
            return page
        db.release()  # no connection, no transaction while waiting
        hub.wait(seen, min(remaining, slice_seconds))


@blp.route("/events")
class Events(MethodView):
    @protected(scopes={"events:read"})
    @blp.arguments(s.EventQuery, location="query", unknown=RAISE)
    @blp.response(200, s.EventPageView)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Your agency's events after a cursor, oldest first; `wait` holds the call up to 30 s until one arrives"""
        caller = current_caller()
        page = long_poll(caller.agency, after=query.get("after"), limit=query["limit"], wait=query["wait"])
        set_action("disclose")
        touch(*(e.returnee_id for e in page.events))
        return {"events": [e.body for e in page.events], "next": page.next}


def webhooks() -> WebhookService:
    return WebhookService(session=db.session)


@blp.route("/clients/<string:client_id>/webhooks")
class Webhooks(MethodView):
    @protected(scopes=ADMIN)
    @blp.response(200, s.WebhookListView)
    def get(self, client_id: str) -> dict[str, Any]:
        """List a client's webhooks"""
        return {"items": webhooks().of_client(client_id)}

    @protected(scopes=ADMIN)
    @blp.arguments(s.WebhookCreateSchema)
    @blp.response(201, s.WebhookView)
    def post(self, data: dict[str, Any], client_id: str) -> Response:
        """Register a webhook for a client: events of its agency are pushed to it (signed and sealed)"""
        webhook = webhooks().register(client_id, data, officer=current_caller().officer)
        set_action("client.webhook_register")
        touch(webhook.id)
        response = jsonify(s.WebhookView().dump(webhook))
        response.status_code = 201
        response.headers["Location"] = url_for(".WebhookItem", client_id=client_id, webhook_id=webhook.id)
        return response


@blp.route("/clients/<string:client_id>/webhooks/<uuid:webhook_id>")
class WebhookItem(MethodView):
    @protected(scopes=ADMIN)
    @blp.response(200, s.WebhookView)
    def get(self, client_id: str, webhook_id: uuid.UUID) -> Any:
        """Read a webhook"""
        return webhooks().get(client_id, webhook_id)

    @protected(scopes=ADMIN)
    @blp.response(204)
    def delete(self, client_id: str, webhook_id: uuid.UUID) -> None:
        """Delete a webhook (its pending deliveries go with it)"""
        webhooks().delete(client_id, webhook_id)
        set_action("client.webhook_delete")


@blp.route("/clients/<string:client_id>/webhooks/<uuid:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @protected(scopes=ADMIN)
    @blp.arguments(s.DeliveryQuery, location="query", unknown=RAISE)
    @blp.response(200, s.DeliveryListView)
    def get(self, query: dict[str, Any], client_id: str, webhook_id: uuid.UUID) -> dict[str, Any]:
        """Each event's delivery to this webhook: state (pending, delivered, dead), attempts and last error"""
        return {"items": webhooks().deliveries(client_id, webhook_id, state=query.get("state"),
                                               limit=query["limit"])}
