"""Waking long polls when events are committed, without holding a database connection while waiting.

`hub` is one per process. A waiting call takes the hub's generation before it reads the outbox, then, if it found
nothing, waits for the generation to move (or for its time slice to end) and reads again: an event committed between
its read and its wait has already moved the generation, so it is never missed.

What moves the generation:
- a commit in this process that wrote events (a session `after_commit` hook set up by `Outbox`);
- on PostgreSQL, a `NOTIFY exchange_events` from any process (the outbox sends one in the writing transaction, so it
  is delivered at commit): one listener thread per process holds one dedicated connection (not the pool's) and
  moves the generation for every notification. Waiting calls hold no connection at all;
- on SQLite, nothing crosses processes: a waiting call reads again every `SQLITE_POLL_SECONDS`.

A waiter never sleeps longer than `MAX_SLICE_SECONDS` before reading again, so a lost notification (the listener
reconnecting after an outage) delays an event by at most that much.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger("exchange.events")

CHANNEL = "exchange_events"
SQLITE_POLL_SECONDS = 0.2
MAX_SLICE_SECONDS = 2.0


class Hub:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._listeners: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def generation(self) -> int:
        with self._condition:
            return self._generation

    def bump(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Return when the generation differs from `seen` or after `timeout` seconds, whichever comes first."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._generation == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._condition.wait(remaining)

    def slice_for(self, engine: Engine) -> float:
        """How long a waiter may sleep before reading again on this engine (starting its listener if needed)."""
        if engine.dialect.name != "postgresql":
            return SQLITE_POLL_SECONDS
        self._ensure_listener(engine)
        return MAX_SLICE_SECONDS

    def _ensure_listener(self, engine: Engine) -> None:
        key = engine.url.render_as_string(hide_password=False)
        with self._lock:
            thread = self._listeners.get(key)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(target=self._listen, args=(engine.url,), name="exchange-events-listener",
                                      daemon=True)
            self._listeners[key] = thread
            thread.start()

    def _listen(self, url: Any) -> None:
        import psycopg  # PostgreSQL only

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.bump()  # anything committed while we were not listening: readers look again
                    while True:
                        for _ in connection.notifies(timeout=MAX_SLICE_SECONDS, stop_after=1):
                            self.bump()
            except Exception as e:  # noqa: BLE001  (an outage: waiters fall back to reading every slice)
                log.warning("event listener reconnecting", extra={"code": "database_unavailable",
                                                                  "exception_type": type(e).__name__})
                time.sleep(1.0)


hub = Hub()
