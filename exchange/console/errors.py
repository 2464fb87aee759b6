"""The console's typed errors: each has an HTTP status and a stable code; `web` maps them to JSON in one place."""

from __future__ import annotations

from exchange.protocol.errors import ExchangeError


class ConsoleLoading(ExchangeError):
    status = 503
    code = "console_loading"
    default_message = "The log is still being loaded and verified; try again when the badge shows."


class InvalidQuery(ExchangeError):
    status = 422
    code = "invalid_query"
    default_message = "The query is not valid."


class FlagNotFound(ExchangeError):
    status = 404
    code = "flag_not_found"
    default_message = "No such flag."


class EntryNotFound(ExchangeError):
    status = 404
    code = "entry_not_found"
    default_message = "No such entry in the verified log."


class ForeignRequest(ExchangeError):
    """A request that does not come from the console's own page: another Host (DNS rebinding) or a write without
    the page's header (a cross-site form)."""

    status = 403
    code = "foreign_request"
    default_message = "The console answers its own page on 127.0.0.1 only."


class ReportUnavailable(ExchangeError):
    status = 409
    code = "report_unavailable"
    default_message = "A report needs a log that verified."
