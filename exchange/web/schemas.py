"""The schemas every API shares: `Strict` (the base of every input schema) and `PagingQuery`.

`Strict` refuses unknown fields, and values no store can hold before any field (`exchange.protocol.text`): a string
with a NUL or a lone surrogate, an integer outside the signed 64-bit range, at any depth. A refusal is a
`ValidationError` keyed by the top-level field, so the caller gets `validation_failed` (422) naming it. Every body and
query schema derives from it, so that a new field gets these rules for free; `Changes` is the base of PATCH bodies.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from exchange.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from exchange.protocol.text import BAD_TEXT, faults, text_fault


def _refuse(data: Any) -> None:
    if isinstance(data, dict):
        errors: dict[str, list[str]] = {}
        for key, value in data.items():
            name = key if isinstance(key, str) and not text_fault(key) else "_schema"
            found = sorted(set(faults(value)) | ({BAD_TEXT} if name == "_schema" else set()))
            if found:
                errors.setdefault(name, []).extend(found)
        if errors:
            raise ValidationError(errors)
    else:
        found = sorted(set(faults(data)))
        if found:
            raise ValidationError(found)


class Strict(Schema):
    """Unknown fields refused; text and integers checked at any depth, before the fields and after loading."""

    class Meta:
        unknown = RAISE
        ordered = True

    @pre_load
    def _storable_input(self, data: Any, **_: Any) -> Any:
        _refuse(data)
        return data

    @post_load
    def _storable_output(self, data: Any, **_: Any) -> Any:
        # Query strings arrive as text: a too-large integer only shows once its field has loaded it.
        _refuse(data)
        return data


class Changes(Strict):
    """Base of every PATCH body: `{}` is refused (422 `validation_failed`), the same rule on every route. A body
    whose fields all hold the values the record already has is accepted and makes no new version (the services
    compare; see the README's "Using the API"). A create schema that extends an update schema turns this off."""

    require_changes = True

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data and self.require_changes:
            raise ValidationError("Send at least one field to change.", field_name="_schema")


class PagingQuery(Strict):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))
