"""The one place that maps errors to the wire: `{"code", "status", "message", "errors"?, "request_id"}`.

Every `ExchangeError`, and every error Flask, werkzeug or webargs raises, leaves through here. So does an outage of
a dependency: a database or Redis connection error, wherever it is raised (a view, a before- or after-request hook,
a teardown), is answered 503 with its own code (`database_unavailable`, `replay_cache_unavailable`) and
`Retry-After`, and logged as one structured line per request, without a traceback (`outage_error`, `note_outage`).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, has_app_context, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

from exchange.outages import GENERIC_UNAVAILABLE, note_outage, outage_error, outage_noted
from exchange.protocol.audit_errors import AuditPending
from exchange.protocol.errors import (
    RETRY_AFTER_SECONDS,
    ExchangeError,
    ResponseWithheld,
    ServiceUnavailable,
    ValidationFailed,
)

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
    if status == 503 and has_app_context() and g.get("db_committed"):
        # A 503 promises that nothing was stored (clients retry it): once the request's changes are committed, a
        # failure (of the audit sequencing, the sealing, the connection) is 500 `audit_pending`, whatever it was.
        status, code, message = AuditPending.status, AuditPending.code, AuditPending.default_message
        headers = {k: v for k, v in (headers or {}).items() if k != "Retry-After"}
    elif status == 503 and code in GENERIC_UNAVAILABLE and outage_noted():
        outage = next(iter(g.outages.values()))
        code, message = outage.code, outage.message
    body: dict[str, Any] = {"code": code, "status": status, "message": message}
    if errors:
        body["errors"] = errors
    body["request_id"] = g.get("request_id")
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def outage_response(outage: ServiceUnavailable, cause: BaseException | None) -> Response:
    """The answer to an outage: its 503 (500 `audit_pending` after the commit, see `error_response`), logged once."""
    note_outage(outage, cause)
    return exchange_error_response(outage)


def exchange_error_response(exc: ExchangeError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(status=exc.status, code=exc.code, message=exc.message, errors=exc.errors, headers=headers)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/exchange/" in f.filename and "site-packages" not in f.filename]
    return ", ".join(f"{f.filename}:{f.lineno}" for f in (ours[-1:] + frames[-1:])) if frames else "unknown"


def unexpected_error_response(exc: BaseException) -> Response:
    """The answer to an exception no handler expected: its outage's 503, the `ExchangeError` it is, or 500 with one
    log line naming the type and where it was raised only (an exception's text or a stack trace may carry SQL
    parameters or record content, protocol.md §5)."""
    if isinstance(exc, ExchangeError) and not isinstance(exc, ServiceUnavailable):
        return exchange_error_response(exc)
    outage = outage_error(exc)
    if outage is not None:
        return outage_response(outage, exc)
    log.error("unhandled exception", extra={"exception_type": type(exc).__name__, "where": _where(exc)})
    return error_response(status=500, code=ExchangeError.code, message=ExchangeError.default_message)


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


def _withheld() -> Response | None:
    """After the request's commit (Flask handles an exception raised by a later hook), every error is "stored, but
    the response was withheld": never a status that promises nothing was stored."""
    if not g.get("db_committed", False):
        return None
    return error_response(status=ResponseWithheld.status, code=ResponseWithheld.code,
                          message=ResponseWithheld.default_message)
def log_finalizing_failure(exc: BaseException) -> None:
    """A hook failed again while an error response was being finished: the response stands; log one line."""
    outage = outage_error(exc)
    if outage is not None:
        note_outage(outage, exc)
    else:
        log.error("error response not finished", extra={"exception_type": type(exc).__name__, "where": _where(exc)})


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ExchangeError)
    def _exchange_error(exc: ExchangeError) -> Response:
        if (withheld := _withheld()) is not None:
            log.error("request failed after its commit", extra={"code": exc.code, "status": exc.status})
            return withheld
        if isinstance(exc, ServiceUnavailable):
            return outage_response(exc, exc.__cause__)
        if exc.status >= 500:
            log.error("request failed", extra={"code": exc.code, "status": exc.status})
        return exchange_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if (withheld := _withheld()) is not None:
            log.error("request failed after its commit", extra={"code": "http_error", "status": exc.code})
            return withheld
        if isinstance(exc, InternalServerError) and exc.original_exception is not None:
            # Flask's last resort (`handle_exception`: raised by an after-request hook or a signal) lands here.
            return unexpected_error_response(exc.original_exception)
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
        if (withheld := _withheld()) is not None:
            log.error("request failed after its commit",
                      extra={"exception_type": type(exc).__name__, "where": _where(exc)})
            return withheld
        return unexpected_error_response(exc)
