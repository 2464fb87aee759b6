"""Typed errors (protocol.md §5): one `ExchangeError` base with an HTTP `status` and a stable `code`.

Services raise them; `exchange.web.errors` is the one place that maps them (and every error Flask, werkzeug or
webargs raises) to the wire. This module imports no web framework, so the partner client library can share the
error types. Nothing secret, no stack trace, no SQL and no record content ever goes into a message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ExchangeError(Exception):
    """Base of every error the exchange reports to a caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "The exchange could not complete the request."

    def __init__(self, message: str | None = None, *, errors: Any = None) -> None:
        self.message = message or self.default_message
        self.errors = errors
        super().__init__(self.message)


class ValidationFailed(ExchangeError):
    status = 422
    code = "validation_failed"
    default_message = "The request is not valid; see errors for each field."


class NotFound(ExchangeError):
    status = 404
    code = "not_found"
    default_message = "No such resource."


class NotPermitted(ExchangeError):
    """The caller's agency may not do this (need to know / role)."""

    status = 403
    code = "not_permitted"
    default_message = "Your agency may not perform this operation."


class Unauthenticated(ExchangeError):
    status = 401
    code = "unauthenticated"
    default_message = "The request does not carry valid credentials."


class InvalidTransition(ExchangeError):
    status = 409
    code = "invalid_transition"
    default_message = "This lifecycle transition is not allowed."


class Conflict(ExchangeError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state of the register."


class PreconditionFailed(ExchangeError):
    status = 412
    code = "precondition_failed"
    default_message = "The record has changed since you read it; read it again and retry."


class PreconditionRequired(ExchangeError):
    status = 428
    code = "precondition_required"
    default_message = "This write needs an If-Match header with the ETag of the record you read."


class UnsupportedMediaType(ExchangeError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Send the body as JSON (Content-Type: application/json)."


class MalformedJson(ExchangeError):
    status = 400
    code = "malformed_json"
    default_message = "The request body is not valid JSON."


class ServiceUnavailable(ExchangeError):
    status = 503
    code = "service_unavailable"
    default_message = "The exchange is temporarily unavailable; retry later."
