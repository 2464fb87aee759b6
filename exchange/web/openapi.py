"""What a view declares for the OpenAPI document beyond its schemas: the errors its service raises (`@raises`).

The errors every operation of a stage can meet (authentication, the guard, envelopes, validation) are not declared
here: `exchange.openapi` derives them from the pipeline. A view declares only its own domain's error classes; the
document lists their statuses and codes, so a new error class shows up where it is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from exchange.protocol.errors import ExchangeError, PreconditionFailed, PreconditionRequired

F = TypeVar("F", bound=Callable[..., Any])


def raises(*errors: type[ExchangeError]) -> Callable[[F], F]:
    """Declare the error classes this view's service may raise (put it below `@protected`, whose wrapper keeps it)."""

    def decorator(view: F) -> F:
        declared: tuple[type[ExchangeError], ...] = getattr(view, "exchange_errors", ())
        view.exchange_errors = (*declared, *errors)  # type: ignore[attr-defined]
        return view

    return decorator


def if_match_header(*, required: bool) -> Callable[[F], F]:
    """Declare that this view reads `If-Match` (`exchange.web.conditional.if_match(required=...)`): the document
    lists the header, 412 and, when required, 428."""

    def decorator(view: F) -> F:
        view.exchange_if_match = required  # type: ignore[attr-defined]
        errors = (PreconditionRequired, PreconditionFailed) if required else (PreconditionFailed,)
        return raises(*errors)(view)

    return decorator


def if_match_declared(view: Any) -> bool | None:
    """True: If-Match required; False: optional; None: not read."""
    value: bool | None = getattr(view, "exchange_if_match", None)
    return value


def declared_errors(view: Any) -> tuple[type[ExchangeError], ...]:
    errors: tuple[type[ExchangeError], ...] = getattr(view, "exchange_errors", ())
    return errors
