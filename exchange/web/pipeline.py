"""The response pipeline: what happens to a `/v1` response after its view returned.

Stage 1 (here): the unit of work commits the request's session, or rolls it back for an error response. A flush or
commit the database refuses becomes `CommitFailed` (503: nothing was changed); a connection lost during the COMMIT
itself is `CommitUnknown` (500: it may have been stored). After a successful commit the request's `db.after_commit`
callbacks finish the response in the order they were registered: the audit log sequences the call's entry, then the
envelope layer seals the response with that entry's receipt. From the commit on, no failure may answer 503 (which
promises that nothing was stored): a callback that raises makes the answer 500 `response_withheld`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from exchange.db import rollback_quietly
from exchange.outages import outage_noted
from exchange.protocol.errors import CommitUnknown, ResponseWithheld, ServiceUnavailable
from exchange.web.errors import error_response

log = logging.getLogger("exchange.db")  # the name the commit failure was always logged under


class CommitFailed(ServiceUnavailable):
    code = "commit_failed"
    default_message = "The change could not be stored; nothing was changed."


def install_unit_of_work(app: Flask) -> None:
    """Commit the request's session once its response is ready, if it succeeded; otherwise roll back.

    Services only flush. A response below 400 is sent only after its changes are committed (an acknowledged
    write is durable); any error response leaves the database as it was. After a successful commit the
    request's `after_commit` callbacks finish the response, in the order they were registered.
    """

    @app.after_request
    def _commit(response: Response) -> Response:
        session: Session | None = g.get("db_session")
        callbacks: list[Callable[[Response], Response]] = g.pop("db_after_commit", [])
        if session is not None:
            if response.status_code >= 400:
                rollback_quietly(session)
                return response
            try:
                session.flush()  # a failure before the COMMIT is sent: certainly nothing was stored
            except Exception:  # noqa: BLE001  (SQLAlchemy's errors and anything a flush hook raises)
                rollback_quietly(session)
                return _commit_failed()
            try:
                session.commit()
            except DBAPIError as e:
                rollback_quietly(session)
                if e.connection_invalidated:  # lost while committing: the COMMIT may have been applied
                    g.db_committed = True
                    log.error("commit outcome unknown", extra={"code": CommitUnknown.code})
                    return error_response(status=CommitUnknown.status, code=CommitUnknown.code,
                                          message=CommitUnknown.default_message)
                return _commit_failed()
            except Exception:  # noqa: BLE001  (the database refused the COMMIT: nothing was stored)
                rollback_quietly(session)
                return _commit_failed()
            g.db_committed = True  # from here on no failure may be answered 503
        for callback in callbacks:
            try:
                response = callback(response)
            except Exception as e:  # noqa: BLE001  (after the commit nothing may turn into "nothing stored")
                log.error("response not completed after the commit",
                          extra={"code": ResponseWithheld.code, "exception_type": type(e).__name__})
                response = error_response(status=ResponseWithheld.status, code=ResponseWithheld.code,
                                          message=ResponseWithheld.default_message)
        return response


def _commit_failed() -> Response:
    if not outage_noted():  # an outage is logged once per request, where it was met
        log.error("commit failed", extra={"code": CommitFailed.code})
    return error_response(status=CommitFailed.status, code=CommitFailed.code, message=CommitFailed.default_message)
