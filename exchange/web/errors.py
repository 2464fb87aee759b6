"""The one place that maps errors to the wire: `{"code", "status", "message", "errors"?, "request_id"}`.

Every `ExchangeError`, and every error Flask, werkzeug or webargs raises, leaves through here.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from exchange.protocol.errors import ExchangeError, ValidationFailed

ENVELOPE_MEDIA_TYPE = "application/vnd.exchange.envelope.v1+json"  # protocol.md §4 (exchange.envelope.MEDIA_TYPE)

log = logging.getLogger("exchange.errors")


class ErrorSchema(Schema):
    """The error body of protocol.md §5 (documented in OpenAPI as every operation's default response)."""

    code = fields.String(required=True, metadata={"description": "Stable machine-readable error code."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status, repeated."})
    message = fields.String(required=True, metadata={"description": "For humans; never secret or record content."})
    errors = fields.Dict(metadata={"description": "Field errors, keyed by field name (validation_failed)."})
    request_id = fields.String(required=True, metadata={"description": "Also in the X-Request-ID header."})


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
        if status == 413 and request.mimetype == ENVELOPE_MEDIA_TYPE:
            code, message = "envelope_too_large", "The envelope is larger than the exchange accepts."
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
