"""The response pipeline: what happens to a `/v1` response after its view returned.

Stage 1 (here): the unit of work commits the request's session, or rolls it back for an error response; a commit
that fails becomes `CommitFailed` (503) and nothing was changed. After a successful commit the request's
`db.after_commit` callbacks finish the response in the order they were registered: the audit log sequences the
call's entry, then the envelope layer seals the response with that entry's receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exchange.protocol.errors import ServiceUnavailable
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
                session.rollback()
                return response
            try:
                session.commit()
            except SQLAlchemyError:
                session.rollback()
                log.error("commit failed", extra={"code": "commit_failed"})
                return error_response(status=CommitFailed.status, code=CommitFailed.code,
                                      message=CommitFailed.default_message)
        for callback in callbacks:
            response = callback(response)
        return response
