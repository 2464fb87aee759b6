"""Typed errors of the partner client library, each carrying the exchange's stable `code` (protocol.md §5).

Every error the exchange answers is `{"code", "status", "message", "errors"?, "request_id"}` (the token endpoint adds
RFC 6749's `error`, which the library falls back on when `code` is missing). The library raises one class per family
of HTTP status, so that an integrator can catch a family (`ConflictError`) and still branch on the exact `code`
(`invalid_transition`, `envelope_replayed`, `duplicate_register_number`):

| class | status | typical codes |
|---|---|---|
| `BadRequestError` | other 4xx (400, 405, 413, 415, 429, ...) | `malformed_json`, `envelope_*`, `rate_limited` |
| `AuthError` | 401 | `invalid_token`, `invalid_dpop_proof`, `dpop_replay`, `unknown_key`, `key_revoked` |
| `TokenError(AuthError)` | any 4xx of the token endpoint | `invalid_client`, `invalid_scope`, `invalid_dpop_proof` |
| `ForbiddenError` | 403 | `insufficient_scope`, `purpose_not_allowed`, `not_permitted`, `envelope_sender_mismatch` |
| `NotFoundError` | 404 | `not_found` |
| `ConflictError` | 409 | `invalid_transition`, `invalid_state`, `duplicate_register_number`, `envelope_replayed` |
| `PreconditionFailed` | 412 | `precondition_failed` (someone wrote in between: read again) |
| `PreconditionRequired` | 428 | `precondition_required` (no `If-Match`) |
| `ValidationError` | 422 | `validation_failed` (`errors` holds the field errors) |
| `UnavailableError` | 503 | `commit_failed`, `key_store_unavailable`, ... (after the library's retries) |
| `ConnectionFailed(UnavailableError)` | 0 (no HTTP answer) | `connection_failed` |
| `ServerError` | 500 and other 5xx | `internal_error`; `audit_pending`, `response_withheld`, `commit_unknown` |
| `ResponseVerificationError` | 502 | the failed check: `envelope_bad_signature`, `envelope_reply_mismatch`, ... |

`audit_pending`, `response_withheld` and `commit_unknown` mean "stored, or maybe stored, the answer withheld": the
library has already sent the same envelope again (which returns the stored outcome) before raising them.

A 429 `rate_limited` is not retried by the library: wait its `Retry-After`, then call again.

`ResponseVerificationError` is the client's own verdict on a 2xx answer it could not trust (not enveloped, not
answering this request, not signed by a key the exchange publishes, ...): the data is discarded, never returned.
Its `status` is 502 (a bad answer from upstream), like `EnvelopeReplyMismatch` of the envelope core.

Messages never carry record content or key material: they are the server's own (which promises the same) or fixed
texts of this library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = [
    "AuthError",
    "BadRequestError",
    "ConflictError",
    "ConnectionFailed",
    "ExchangeClientError",
    "ForbiddenError",
    "NotFoundError",
    "PreconditionFailed",
    "PreconditionRequired",
    "ResponseVerificationError",
    "ServerError",
    "TokenError",
    "UnavailableError",
    "ValidationError",
    "error_from_response",
]


class ExchangeClientError(Exception):
    """Base of every error this library raises about a call to the exchange.

    `code`: the exchange's stable code (or this library's, for `ResponseVerificationError` and `ConnectionFailed`);
    `status`: the HTTP status (0 when no HTTP answer came back); `message`: for humans; `errors`: field errors of a
    422; `request_id`: the exchange's request id (body or `X-Request-ID`), to quote when reporting a problem."""

    def __init__(self, code: str, status: int, message: str, errors: Any = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.errors = errors
        self.request_id = request_id

    def __str__(self) -> str:
        # the field errors of a 422 are the exchange's messages per field (never record content): show them
        details = f" {json.dumps(self.errors, ensure_ascii=False, sort_keys=True)}" if self.errors else ""
        suffix = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{details}{suffix}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r}, "
                f"request_id={self.request_id!r})")


class BadRequestError(ExchangeClientError):
    """A 4xx without a family of its own (400, 405, 413, 415, ...): the request as sent cannot be served."""


class AuthError(ExchangeClientError):
    """401: the token, the DPoP proof or the envelope's signing key was refused (after one token renewal)."""


class TokenError(AuthError):
    """The token endpoint refused to issue a token (RFC 6749 §5.2 `error`, also in `code`)."""


class ForbiddenError(ExchangeClientError):
    """403: authenticated, but this client, agency or purpose may not do this."""


class NotFoundError(ExchangeClientError):
    """404: no such resource (or none the caller's agency may know of)."""


class ConflictError(ExchangeClientError):
    """409: the request conflicts with the exchange's state (`invalid_transition`, `envelope_replayed`, ...)."""


class PreconditionFailed(ExchangeClientError):
    """412: the record changed since it was read (stale `If-Match`); nothing was written."""


class PreconditionRequired(ExchangeClientError):
    """428: the write needs `If-Match`."""


class ValidationError(ExchangeClientError):
    """422: the content does not fit the schema; `errors` maps fields to messages."""


class UnavailableError(ExchangeClientError):
    """503 (after the library's bounded retries): the exchange stored nothing; try again later."""


class ConnectionFailed(UnavailableError):
    """No HTTP answer at all (connection refused, timeout, ...), after the retries that were safe to make.

    A read or a write in an envelope was retried (the same envelope: it cannot be stored twice). A write without a
    body whose request may have reached the exchange (a read timeout) was not: whether it was stored is unknown, so
    read the resource before writing again. Its text names the URL and the transport error (`url`, `cause`)."""

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__

    @property
    def url(self) -> str | None:
        """The URL that did not answer, when the transport error knows it."""
        if isinstance(self.__cause__, httpx.RequestError):
            try:
                return str(self.__cause__.request.url.copy_with(query=None))
            except RuntimeError:  # an error raised without its request
                return None
        return None

    def __str__(self) -> str:
        where = f" from {self.url}" if self.url else ""
        cause = f": {type(self.__cause__).__name__}: {self.__cause__}" if self.__cause__ is not None else ""
        return (f"{self.code}: no answer{where}{cause}. Is the exchange running at that address (the URL you pass, "
                "the server's EXCHANGE_ISSUER)?")


class ServerError(ExchangeClientError):
    """500 or another 5xx than 503."""


class ResponseVerificationError(ExchangeClientError):
    """A 2xx answer that failed verification: not an envelope, not from the exchange's published `envelope-sign` key,
    not for this client, expired, replayed, or not answering this request (`reply_to`/`request_hash`). Its content
    is discarded."""

    def __init__(self, code: str, message: str, request_id: str | None = None, *, status: int = 502) -> None:
        super().__init__(code, status, message, None, request_id)


_BY_STATUS: Mapping[int, type[ExchangeClientError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailed,
    422: ValidationError,
    428: PreconditionRequired,
    503: UnavailableError,
}


def _error_class(status: int, *, token_endpoint: bool) -> type[ExchangeClientError]:
    if token_endpoint and 400 <= status < 500:
        return TokenError
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return BadRequestError
    return ServerError


def error_from_response(response: httpx.Response, *, token_endpoint: bool = False) -> ExchangeClientError:
    """The typed error for a non-2xx answer. A body that is not the exchange's error JSON (say, a proxy's HTML page)
    still yields an error of the right family, with the code `http_<status>`."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:  # not JSON (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("code") or body.get("error")
    message = body.get("message") or body.get("error_description")
    request_id = body.get("request_id") or response.headers.get("X-Request-ID")
    cls = _error_class(status, token_endpoint=token_endpoint)
    return cls(
        code if isinstance(code, str) and code else f"http_{status}",
        status,
        message if isinstance(message, str) and message else f"The exchange answered HTTP {status}.",
        body.get("errors"),
        request_id if isinstance(request_id, str) and request_id else None,
    )
