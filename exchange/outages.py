"""Outages of the exchange's dependencies (the database, the Redis replay cache), recognised in one place.

A connection-level failure, wherever it is raised (a view, a hook, a teardown, an engine event), is turned into its
typed 503 (`outage_error`) and noted once per request (`note_outage`), so that the request's answer names it and it
is logged as one structured line without a traceback; later failures the same outage causes are not logged again
(`outage_noted`). The web layer's error mapping and the database layer both use it.
"""

from __future__ import annotations

import logging
import sqlite3

import psycopg
import redis.exceptions
from flask import g, has_app_context, has_request_context, request
from sqlalchemy import exc as sa_exc

from exchange.protocol.errors import DatabaseUnavailable, ReplayCacheUnavailable, ServiceUnavailable

log = logging.getLogger("exchange.errors")  # the name outages were always logged under


# Connection-level failures of the database (driver or SQLAlchemy: refused, dropped, timed out, pool exhausted, file
# unreadable) and of Redis. A constraint violation or a programming error is none of these: it stays what it is.
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError,
    psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError, sqlite3.InterfaceError,
)
_REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# The 503s a hook answers when it cannot do its part; in a request that met an outage they name the outage instead.
GENERIC_UNAVAILABLE = frozenset({"audit_unavailable", ServiceUnavailable.code})


def outage_error(exc: BaseException) -> ServiceUnavailable | None:
    """The typed 503 for a dependency outage anywhere in `exc`'s chain (its causes and contexts), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ServiceUnavailable):
            return current
        if isinstance(current, _DATABASE_ERRORS):
            return DatabaseUnavailable()
        if isinstance(current, _REDIS_ERRORS):
            return ReplayCacheUnavailable()
        current = current.__cause__ or current.__context__
    return None


def note_outage(error: ServiceUnavailable, cause: BaseException | None = None) -> None:
    """Remember that this request met an outage (its 503s then name it) and log it: one structured line per request
    and code, with the exception's type only (its text may carry SQL parameters; a traceback helps nobody here)."""
    if not has_request_context():
        log.error("dependency unavailable", extra={"code": error.code, "status": error.status,
                                                   "exception_type": type(cause or error).__name__})
        return
    noted: dict[str, ServiceUnavailable] = g.setdefault("outages", {})
    if error.code in noted:
        return
    noted[error.code] = error
    log.error("dependency unavailable", extra={"code": error.code, "status": error.status,
                                               "exception_type": type(cause or error).__name__,
                                               "method": request.method, "path": request.path})


def outage_noted() -> bool:
    """Whether this request has met (and logged) an outage: later failures it causes are not logged again."""
    return has_app_context() and bool(g.get("outages"))
