"""Errors of events and webhooks; each maps to one stable code (protocol.md §5)."""

from __future__ import annotations

from exchange.protocol.errors import ExchangeError, NotFound


class CursorExpired(ExchangeError):
    """The cursor is older than the retention window: events after it may have been deleted."""

    status = 410
    code = "cursor_expired"
    default_message = ("Events after this cursor are past retention and may have been deleted; start again without "
                       "`after` (from the oldest retained event) and reconcile by reading the register.")


class WebhookNotFound(NotFound):
    code = "not_found"
    default_message = "No such webhook."
