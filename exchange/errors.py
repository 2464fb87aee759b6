"""Typed errors and the one place that maps them to the wire (protocol.md §5).

Services raise an `ExchangeError` subclass; `register_error_handlers` turns it, and every error Flask, werkzeug or
webargs raises, into `{"code", "status", "message", "errors"?, "request_id"}`. Nothing secret, no stack trace, no SQL
and no record content ever goes into a message.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, ClassVar

from flask import Flask, Response, g, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

log = logging.getLogger("exchange.errors")


class ErrorSchema(Schema):
    """The error body of protocol.md §5 (documented in OpenAPI as every operation's default response)."""

    code = fields.String(required=True, metadata={"description": "Stable machine-readable error code."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status, repeated."})
    message = fields.String(required=True, metadata={"description": "For humans; never secret or record content."})
    errors = fields.Dict(metadata={"description": "Field errors, keyed by field name (validation_failed)."})
    request_id = fields.String(required=True, metadata={"description": "Also in the X-Request-ID header."})


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


# werkzeug's HTTP errors that can reach a caller before any service runs, with their stable codes.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed on this resource."),
    406: ("not_acceptable", "The exchange cannot produce the requested media type."),
    411: ("length_required", "The request needs a Content-Length."),
    413: ("body_too_large", "The request body is larger than the exchange accepts."),
    415: ("unsupported_media_type", "Send the body as application/json."),
    429: ("rate_limited", "Too many requests; retry later."),
}


def error_response(
    *, status: int, code: str, message: str, errors: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if errors:
        body["errors"] = errors
    body["request_id"] = g.get("request_id")
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _webargs_errors(exc: HTTPException) -> Any:
    """flask-smorest/webargs put field errors in `exc.data["messages"]` keyed by location."""
    data = getattr(exc, "data", None)
    if not isinstance(data, dict):
        return None
    messages = data.get("messages")
    if isinstance(messages, dict) and len(messages) == 1:
        # {"json": {...}} -> {...}: integrators care about the field, not where webargs looked.
        return next(iter(messages.values()))
    return messages


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ExchangeError)
    def _exchange_error(exc: ExchangeError) -> Response:
        if exc.status >= 500:
            log.error("request failed", extra={"code": exc.code, "status": exc.status})
        return error_response(status=exc.status, code=exc.code, message=exc.message, errors=exc.errors)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 422:
            return error_response(
                status=422,
                code=ValidationFailed.code,
                message=ValidationFailed.default_message,
                errors=_webargs_errors(exc),
            )
        code, message = _HTTP_CODES.get(status, ("http_error", exc.name))
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None  # type: ignore[attr-defined]
        return error_response(status=status, code=code, message=message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Log the type and where it was raised only: an exception's text or a stack trace may carry SQL parameters
        # or record content (protocol.md §5).
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "/exchange/" in f.filename and "site-packages" not in f.filename]
        where = ", ".join(f"{f.filename}:{f.lineno}" for f in (ours[-1:] + frames[-1:])) if frames else "unknown"
        log.error("unhandled exception", extra={"exception_type": type(exc).__name__, "where": where})
        return error_response(status=500, code=ExchangeError.code, message=ExchangeError.default_message)
