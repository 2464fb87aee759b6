"""The schemas every API shares: `Strict` (unknown fields are refused, order kept) and `PagingQuery`."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from exchange.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


class Strict(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class PagingQuery(Strict):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))
