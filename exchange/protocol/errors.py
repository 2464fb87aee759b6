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
    retry_after: int | None = None  # seconds, sent as `Retry-After` (every 503 and 429 has one)

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


RETRY_AFTER_SECONDS = 2  # what a 503 asks a caller to wait: the exchange reconnects by itself within a second


class ServiceUnavailable(ExchangeError):
    """The exchange cannot reach something it needs; the call changed nothing and may be retried after
    `Retry-After` seconds (see the README: "Failures and limits")."""

    status = 503
    code = "service_unavailable"
    default_message = "The exchange is temporarily unavailable; retry later."
    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, message: str | None = None, *, errors: Any = None, retry_after: int | None = None) -> None:
        super().__init__(message, errors=errors)
        if retry_after is not None:
            self.retry_after = max(1, retry_after)


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached (stopped, restarting, connection lost, file unreadable): fail closed."""

    code = "database_unavailable"
    default_message = "The exchange's database cannot be reached, so nothing was changed; retry later."


class ReplayCacheUnavailable(ServiceUnavailable):
    """The replay cache (Redis) cannot be reached, so no credential can be checked for reuse: fail closed."""

    code = "replay_cache_unavailable"
    default_message = ("The exchange cannot check credentials for reuse right now, so the call was refused and "
                       "nothing was changed; retry later.")


class RateLimited(ExchangeError):
    """Too many requests from one source address or one client within a window; refused before any work."""

    status = 429
    code = "rate_limited"
    default_message = "Too many requests; slow down and retry after the number of seconds in Retry-After."

    def __init__(self, *, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ResponseWithheld(ExchangeError):
    """The call was carried out and committed, but its response could not be completed (sealed, receipted, sent).
    Not a 503: a 503 promises that nothing was stored. Sending the same request envelope again (same `msg_id`)
    answers the stored outcome."""

    status = 500
    code = "response_withheld"
    default_message = ("Your call was carried out and stored, but its response could not be completed. Send the same "
                       "request envelope again (same msg_id) to receive its outcome, or read the record back.")


class CommitUnknown(ExchangeError):
    """The database connection was lost while committing: the call may or may not have been stored."""

    status = 500
    code = "commit_unknown"
    default_message = ("The database connection was lost while your call was being committed: it may or may not "
                       "have been stored. Send the same request envelope again (same msg_id) to learn its outcome, "
                       "or read the record back.")
