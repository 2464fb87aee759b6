"""Errors the register raises; each maps to one stable code (protocol.md §5)."""

from __future__ import annotations

from exchange.protocol.errors import Conflict, InvalidTransition, NotFound, NotPermitted, ValidationFailed

__all__ = [
    "DuplicateRegisterNumber",
    "InvalidState",
    "InvalidTransition",
    "ManifestTooLarge",
    "NotPermitted",
    "RecordNotFound",
    "ValidationFailed",
]


class RecordNotFound(NotFound):
    code = "not_found"
    default_message = "No such record."


class DuplicateRegisterNumber(Conflict):
    code = "duplicate_register_number"
    default_message = "A returnee with this register number already exists."


class InvalidState(Conflict):
    """The record exists but its returnee is not in a status where this can be recorded."""

    code = "invalid_state"
    default_message = "The returnee is not in a status where this can be recorded."


class ManifestTooLarge(ValidationFailed):
    """More travellers than one manifest may list (`MANIFEST_LIMIT`)."""

    code = "manifest_too_large"
    default_message = "A manifest lists at most 500 travellers; send it in parts."
