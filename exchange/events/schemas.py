"""What partners send to and get from `/v1/events` and the webhook routes."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from exchange.events.models import EVENT_TYPES
from exchange.web.schemas import Strict

MAX_WAIT_SECONDS = 30


class EventQuery(Strict):
    after = fields.String(validate=validate.Length(min=1, max=40),
                          metadata={"description": "The `next` of an earlier answer; omitted: the oldest retained."})
    wait = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_WAIT_SECONDS),
                          metadata={"description": "Seconds to hold the call while nothing is newer (0-30)."})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class EventView(Schema):
    """An event as the caller's agency receives it: its `record` is that agency's view (need to know)."""

    class Meta:
        ordered = True

    id = fields.UUID()
    type = fields.String(metadata={"enum": list(EVENT_TYPES)})
    occurred_at = fields.String()
    returnee_id = fields.UUID()
    record = fields.Dict()
    screening = fields.Dict(metadata={"description": "screening.hit only: score, matched_on, officer, "
                                                     "crossing_point, flight, expected_arrival."})
    cause = fields.Dict(metadata={"description": "{agency, request_id} of the call that caused the event."})


class EventPageView(Schema):
    class Meta:
        ordered = True

    events = fields.List(fields.Raw(metadata={"description": "EventView"}))
    next = fields.String()


class WebhookCreateSchema(Strict):
    url = fields.Url(required=True, schemes={"https", "http"}, require_tld=False,
                     validate=validate.Length(max=2000))
    event_types = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)),
                              load_default=lambda: list(EVENT_TYPES), validate=validate.Length(min=1))

    @validates("event_types")
    def _unique(self, value: list[str], **_: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("Name each event type once.")


class WebhookView(Schema):
    class Meta:
        ordered = True

    id = fields.UUID()
    client_id = fields.String()
    url = fields.String()
    event_types = fields.List(fields.String())
    created_at = fields.AwareDateTime()
    created_by = fields.String(allow_none=True)


class WebhookListView(Schema):
    items = fields.List(fields.Nested(WebhookView))


class DeliveryView(Schema):
    class Meta:
        ordered = True

    id = fields.UUID()
    event_id = fields.UUID()
    event_type = fields.String()
    state = fields.String(metadata={"enum": ["pending", "delivered", "dead"]})
    attempts = fields.Integer()
    created_at = fields.AwareDateTime()
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    last_attempt_at = fields.AwareDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)


class DeliveryQuery(Strict):
    state = fields.String(validate=validate.OneOf(("pending", "delivered", "dead")))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class DeliveryListView(Schema):
    items = fields.List(fields.Nested(DeliveryView))
