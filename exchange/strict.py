"""The base of every input schema: unknown fields refused, and values no store can hold refused before any field.

Every body and query schema derives from `Strict`, so that a new field gets these rules for free:
- a string (a value or a key, at any depth) with a NUL or a lone surrogate is refused: PostgreSQL cannot store
  either, SQLite would store them silently, and no JSON peer could read them back (RFC 8259 §8.2);
- an integer outside the signed 64-bit range is refused: no column, index or page can hold it.

A refusal is a `ValidationError` keyed by the top-level field, so the caller gets `validation_failed` (422) naming it.
This module imports only marshmallow: the partner library and the CLI may share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, post_load, pre_load, validates_schema

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

BAD_TEXT = "Text may not contain NUL characters or unpaired surrogates."
BAD_INTEGER = f"Use an integer between {INT64_MIN} and {INT64_MAX}."


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL; surrogates (in a Python str they are always unpaired)


def text_fault(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    return BAD_TEXT if _UNSTORABLE.search(value) else None


def integer_fault(value: int) -> str | None:
    if isinstance(value, bool):
        return None
    return None if INT64_MIN <= value <= INT64_MAX else BAD_INTEGER


def faults(value: Any) -> Iterator[str]:
    """Every reason `value` (a JSON value, at any depth) cannot be stored."""
    if isinstance(value, str):
        fault = text_fault(value)
        if fault:
            yield fault
    elif isinstance(value, int):
        fault = integer_fault(value)
        if fault:
            yield fault
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and text_fault(key):
                yield BAD_TEXT
            yield from faults(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from faults(item)


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
