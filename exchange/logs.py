"""Structured JSON logs and request ids.

Every response carries `X-Request-ID` (generated here, never taken from the caller, because the audit log relies on
it; a caller's own id is kept as `client_request_id`). One access line per request: method, path without query
string, status, duration, agency. No bodies, no query strings, no names: they may hold personal data.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request
from pythonjsonlogger.json import JsonFormatter

_CLIENT_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("exchange.access")


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from flask import has_request_context

        if has_request_context() and not hasattr(record, "request_id"):
            record.request_id = g.get("request_id")
        return True


def configure_logging(app: Flask) -> None:
    logger = logging.getLogger("exchange")
    logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    if not any(getattr(h, "_exchange", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
        handler.addFilter(RequestContextFilter())
        handler._exchange = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = app.config.get("TESTING", False)  # tests capture through the root logger


def install_request_ids(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = uuid.uuid4().hex
        g.request_started = time.perf_counter()


def finish_response(response: Response) -> Response:
    """The response path's last step (`exchange.web.pipeline`): name the request, log its final status."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    try:
        _log_access(response)
    except Exception:  # noqa: BLE001, S110  (a log line must never change a response that is ready)
        pass
    return response


def _log_access(response: Response) -> None:
    caller = g.get("caller")
    client_request_id = request.headers.get("X-Request-ID", "")
    access_log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 2),
            "agency": caller.agency if caller else None,
            "client_id": caller.client_id if caller else None,
            "client_request_id": client_request_id if _CLIENT_ID_OK.match(client_request_id) else None,
        },
    )
