"""Rate limits (operations.md: `EXCHANGE_REDIS_URL` shares them across workers; without it each worker counts in
memory), with flask-limiter over the `limits` library.

- Per source address: checked before anything else a request costs (before token, DPoP or assertion verification,
  envelope opening and any database work), on every path but `/healthz`, unknown paths included.
- Per client: checked as soon as the client is known, that is right after its access token and DPoP proof have
  been verified, before its envelope is opened or a view runs. Keying it on the unverified claims of a token would
  let anyone spend another agency's allowance with forged tokens naming its client; the per-source limit bounds the
  verification work done before the check.

A refused request is answered 429 `rate_limited` with `Retry-After` (the seconds until its window ends) and is not
audited one entry per request: limits use fixed windows, and the first refusal of each (limit, source or client,
window) writes ONE `deny` entry (status 429, reason `rate_limited`, the source address, the client if known, the first
refused request's id, method and path). Within a fixed window, once a limit is reached every later request of the
same key is refused, so that entry accounts for all of them; how many there were is counted in the limiter's storage
and in the access log (one line per request, as for every request). If the entry cannot be written, the refusal is a
503 (fail closed, like every unaudited call), and the next refusal of the window tries again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from limits import RateLimitItem, parse_many
from limits.storage import Storage
from sqlalchemy.orm import Session

from exchange.outages import note_outage, outage_error
from exchange.protocol.errors import ExchangeError, RateLimited, ServiceUnavailable
from exchange.web.errors import exchange_error_response

log = logging.getLogger("exchange.limits")

KEY_PREFIX = "exchange:rl"
EXEMPT_PATHS = frozenset({"/healthz"})  # liveness answers from memory and must keep answering under a flood


def _source() -> str:
    return request.remote_addr or "unknown"


def _identify() -> str:
    # flask-limiter exempts requests without an endpoint; unknown paths still cost a token verification under /v1.
    return request.endpoint or "unrouted"


class WorkerWindows(Storage):
    """Fixed-window counters in this worker's memory (`exchange-memory://`), for when no Redis is configured.

    `limits`' own memory storage starts a timer thread to expire its keys whenever the last one has finished, 10 ms
    after it started: under load that is a new thread for nearly every request, which cost more CPU than the rest of
    the check. Here a counter past its window is reset when next touched, and the expired ones are swept at most once
    a second, under one lock (gthread workers share the counters between threads)."""

    STORAGE_SCHEME = ["exchange-memory"]  # noqa: RUF012  (limits' registry reads the class attribute)
    SWEEP_EVERY = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, when its window ends)
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            count, ends = self._windows.get(key, (0, 0.0))
            if ends <= now:  # a new window starts with this request
                count, ends = 0, now + expiry
            count += amount
            self._windows[key] = (count, ends)
            return count

    def get(self, key: str) -> int:
        count, ends = self._windows.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _count, ends = self._windows.get(key, (0, now))
        return ends if ends > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._windows)
            self._windows.clear()
        return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._windows = {key: value for key, value in self._windows.items() if value[1] > now}
        self._next_sweep = now + self.SWEEP_EVERY


class RateLimits:
    """The app's limiter (`app.extensions["exchange.limits"]`)."""

    def __init__(self, app: Flask) -> None:
        self.enabled = bool(app.config["RATE_LIMITS_ENABLED"])
        self.per_client: list[RateLimitItem] = parse_many(app.config["RATE_LIMIT_PER_CLIENT"])
        redis_url = app.config.get("RATE_LIMIT_STORAGE_URL") or app.config.get("REDIS_URL")
        options: dict[str, str | int] = {"socket_connect_timeout": 2, "socket_timeout": 2} if redis_url else {}
        self.limiter = Limiter(
            _source,
            application_limits=[app.config["RATE_LIMIT_PER_SOURCE"]],
            application_limits_exempt_when=lambda: request.path in EXEMPT_PATHS,
            strategy="fixed-window",
            storage_uri=redis_url or "exchange-memory://",
            storage_options=options,
            key_prefix=KEY_PREFIX,
            headers_enabled=False,
            on_breach=self._on_source_breach,
            # Redis down: keep limiting per worker in memory (and go back to Redis once it answers) rather than fail
            # every call; the replay check, which needs the same Redis, fails closed on its own.
            in_memory_fallback_enabled=True,
            request_identifier=_identify,
            enabled=self.enabled,
        )

    # ---- checks -----------------------------------------------------------------------------------------------------

    def _on_source_breach(self, limit: RequestLimit) -> None:
        """flask-limiter calls this for a refused request; it must not raise (it would take that for a storage
        failure), so what it finds is left on `g` for the 429 handler."""
        self._refused(limit.limit, limit.request_args, client_id=None)

    def check_client(self, client_id: str) -> None:
        """Count one request of `client_id`; raise `RateLimited` (after auditing it) when over a limit."""
        if not self.enabled:
            return
        args = [KEY_PREFIX, "client", client_id]
        try:
            strategy = self.limiter.limiter
            for item in self.per_client:
                if not strategy.hit(item, *args):
                    self._refused(item, args, client_id=client_id)
                    raise _refusal()
        except (RateLimited, ServiceUnavailable):
            raise
        except Exception as e:  # the storage is down: the per-source limit falls back to memory; this one waits
            outage = outage_error(e)
            if outage is None:
                raise
            log.warning("rate limit storage unreachable", extra={"exception_type": type(e).__name__})

    # ---- refusals ---------------------------------------------------------------------------------------------------

    def _refused(self, item: RateLimitItem, args: list[str], *, client_id: str | None) -> None:
        strategy = self.limiter.limiter
        reset_at, _remaining = strategy.get_window_stats(item, *args)
        g.rate_limit_retry_after = max(1, math.ceil(reset_at - time.time()))
        window = int(reset_at) // max(1, item.get_expiry())
        marker = f"{KEY_PREFIX}:denied:{item.key_for(*args)}:{window}"
        try:
            count = strategy.storage.incr(marker, item.get_expiry() + 1)
        except Exception as e:
            log.warning("rate limit storage unreachable", extra={"exception_type": type(e).__name__})
            count = 1  # cannot tell whether this window's refusal is recorded: record it (more, never fewer)
        g.audit_counted = True  # the recorders skip this request: its refusal is accounted for here
        if count != 1:
            return
        try:
            self._audit(client_id=client_id)
        except Exception as e:
            outage = outage_error(e) or ServiceUnavailable()
            note_outage(outage, e)
            g.rate_limit_unaudited = outage
            try:
                strategy.storage.clear(marker)  # the next refusal of this window tries again
            except Exception:  # noqa: S110  (the storage is down too; a refusal cannot be made more closed)
                pass

    @staticmethod
    def _audit(*, client_id: str | None) -> None:
        from exchange.audit.recorder import record_event
        from exchange.db import db

        caller = g.get("caller")
        extra: dict[str, Any] = {} if caller is not None or client_id is None else {"client_id": client_id}
        with Session(db.engine(current_app)) as session:  # its own transaction: the request's rolls back
            record_event(session, action="deny", outcome="failure", status=RateLimited.status,
                         reason=RateLimited.code, caller=caller, request_id=g.get("request_id", ""),
                         method=request.method, path=request.path, source_ip=request.remote_addr, extra=extra)
            session.commit()


def _refusal() -> ExchangeError:
    unaudited: ServiceUnavailable | None = g.get("rate_limit_unaudited")
    if unaudited is not None:
        return unaudited
    return RateLimited(retry_after=g.get("rate_limit_retry_after", 1))


def rate_limits(app: Flask) -> RateLimits:
    limits: RateLimits = app.extensions["exchange.limits"]
    return limits


def install_rate_limits(app: Flask) -> None:
    """Install the limiter; call after `install_request_ids` and before any other before-request hook, so that the
    per-source limit is the first thing a request meets."""
    limits = RateLimits(app)
    app.extensions["exchange.limits"] = limits
    limits.limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(_exc: RateLimitExceeded) -> Response:
        return exchange_error_response(_refusal())


def check_client_limit(client_id: str | None) -> None:
    if client_id is not None:
        rate_limits(current_app).check_client(client_id)
