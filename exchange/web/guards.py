"""`@protected`: the guard on every API view (scope and purpose of use, domain.md). A view without it is caught by
the route matrix test. Who the caller is comes from the caller seam (`exchange.web.caller`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from exchange.protocol.auth_errors import InsufficientScope, PurposeNotAllowed
from exchange.protocol.policy import PURPOSES
from exchange.web.caller import current_caller

F = TypeVar("F", bound=Callable[..., Any])


def protected(*, scopes: Iterable[str]) -> Callable[[F], F]:
    """Require one of `scopes` and a purpose of use allowed for the caller's agency (domain.md).

    Put it outermost, above flask-smorest's decorators, so that a caller without the right scope or purpose learns
    nothing from validation errors.
    """
    required = frozenset(scopes)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = current_caller()
            if not caller.scopes & required:
                raise InsufficientScope(f"This operation needs one of: {', '.join(sorted(required))}.")
            if caller.purpose is None or caller.purpose not in PURPOSES.get(caller.agency, ()):
                allowed = ", ".join(sorted(PURPOSES.get(caller.agency, ())))
                raise PurposeNotAllowed(f"Declare one of your agency's purposes of use: {allowed}.")
            return view(*args, **kwargs)

        wrapper.exchange_scopes = required  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
