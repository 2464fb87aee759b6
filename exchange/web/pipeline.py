"""The response pipeline: what happens to a response after its view returned, in this order, decided here.

0. `make_claims` (here): a successful call makes the claims it uses up (its DPoP proof's `jti`, set by the
   authenticator in request state, `exchange.web.state`) in its own transaction, so that they commit with it; a claim
   made before refuses the call (401 `dpop_replay`). A failed call makes them in its failure entry's transaction
   instead (the recorder), or, if it has no entry of its own, in a transaction of their own after the rollback.
1. `record_outcome` (envelope/): a successful write that came in an envelope keeps its outcome (status, ETag,
   Location, the body sealed at rest) in its own transaction, so that the same envelope sent again gets it.
2. `record_call` (audit/): a `/v1/` call's audit entry is queued in the call's transaction (SQLite: appended, and
   its receipt is in request state at once); a refused call is recorded on its own.
3. the commit (here): the unit of work commits the request's session, or rolls it back for an error response. A flush
   or commit the database refuses becomes `CommitFailed` (503: nothing was changed); a connection lost during the
   COMMIT itself is `CommitUnknown` (500: it may have been stored).
4. `sequence` (audit/): after the commit, a queued entry is sequenced into the log and its signed receipt goes into
   request state (`exchange.web.state`) and the response's headers; failing that, 500 `audit_pending`.
5. `seal` (envelope/): a data-bearing response is sealed to the caller with the receipt it finds in request state.
   Then any step a request added with `db.after_commit`.
6. `finish_response` (logs): the request id header and the access log line, with the final status.
7. on Flask's `request_finished`, `late_failure` (audit/): a call whose entry was queued but whose final answer is an
   error is recorded as failed, on its own.

From the commit on, no failure may answer 503 (which promises that nothing was stored): a step after the commit that
raises makes the answer 500 `response_withheld`. The steps come from the domains (this floor imports none of them):
the app factory hands them in as `ResponseSteps`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request_finished
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from exchange.db import db, rollback_quietly
from exchange.logs import finish_response
from exchange.outages import outage_noted
from exchange.protocol.errors import CommitUnknown, ExchangeError, ResponseWithheld, ServiceUnavailable
from exchange.web.errors import error_response, exchange_error_response
from exchange.web.state import request_state

log = logging.getLogger("exchange.db")  # the name the commit failure was always logged under


class CommitFailed(ServiceUnavailable):
    code = "commit_failed"
    default_message = "The change could not be stored; nothing was changed."


Step = Callable[[Response], Response]


@dataclass(frozen=True)
class ResponseSteps:
    """The domains' steps of the response path; each decides itself whether a request concerns it."""

    record_outcome: Step  # envelope/: before the commit, keep an enveloped write's outcome
    record_call: Step  # audit/: before the commit, queue (or append) the call's audit entry
    sequence: Step  # audit/: after the commit, sequence the queued entry; its receipt into request state
    seal: Step  # envelope/: after the commit, seal a data-bearing response with that receipt
    late_failure: Callable[[Response], None]  # audit/: on `request_finished`, record a call that failed late


def install_response_pipeline(app: Flask, steps: ResponseSteps) -> None:
    """Run the response path in the order of the module docstring. Register it first among the after-request hooks
    (right after the request ids): Flask runs them in reverse order, so this one sees the response last."""

    @app.after_request
    def _finish(response: Response) -> Response:
        response = make_claims(response)
        response = steps.record_outcome(response)
        response = steps.record_call(response)
        response, committed = commit(response)
        extra: list[Step] = g.pop("db_after_commit", [])
        if committed:
            response = finish_after_commit(response, [steps.sequence, steps.seal, *extra])
        return finish_response(response)

    def _late_failure(sender: Flask, response: Response, **_: Any) -> None:
        steps.late_failure(response)

    request_finished.connect(_late_failure, app, weak=False)


def commit(response: Response) -> tuple[Response, bool]:
    """Commit the request's session once its response is ready, if it succeeded; otherwise roll back.

    Services only flush. A response below 400 is sent only after its changes are committed (an acknowledged
    write is durable); any error response leaves the database as it was. Returns the response and whether the
    steps after the commit run: yes after a successful commit, or when the request opened no session."""
    session: Session | None = g.get("db_session")
    if session is None:
        return response, True
    if response.status_code >= 400:
        rollback_quietly(session)
        keep_claims(session)
        return response, False
    try:
        session.flush()  # a failure before the COMMIT is sent: certainly nothing was stored
    except Exception:  # noqa: BLE001  (SQLAlchemy's errors and anything a flush hook raises)
        rollback_quietly(session)
        return _commit_failed(), False
    try:
        session.commit()
    except DBAPIError as e:
        rollback_quietly(session)
        if e.connection_invalidated:  # lost while committing: the COMMIT may have been applied
            g.db_committed = True
            log.error("commit outcome unknown", extra={"code": CommitUnknown.code})
            return error_response(status=CommitUnknown.status, code=CommitUnknown.code,
                                  message=CommitUnknown.default_message), False
        return _commit_failed(), False
    except Exception:  # noqa: BLE001  (the database refused the COMMIT: nothing was stored)
        rollback_quietly(session)
        return _commit_failed(), False
    g.db_committed = True  # from here on no failure may be answered 503
    return response, True


def make_claims(response: Response) -> Response:
    """Before the outcome and the audit entry: make a successful call's claims in its transaction (see the module
    docstring). A claim made before answers the call with its error (a replay), a database failure with 503
    `commit_failed`; either way the call's changes are rolled back and its failure is recorded by the next steps."""
    state = request_state()
    if not state.claims or response.status_code >= 400 or db.committed():
        return response
    session = db.session
    try:
        for claim in state.claims:
            claim(session, again=False)
    except ExchangeError as e:
        rollback_quietly(session)
        return exchange_error_response(e)
    except Exception:  # noqa: BLE001  (SQLAlchemy's errors, the driver's own: nothing was stored)
        rollback_quietly(session)
        return _commit_failed()
    return response


def keep_claims(session: Session) -> None:
    """After a failed call's rollback: if its claims were not made again with its failure entry (a call whose
    refusal is accounted for elsewhere, or whose entry could not be written), make them in a transaction of their
    own, so that a refused call's proof stays used. Never raises (the answer is an error already)."""
    state = request_state()
    if not state.claims or state.claims_kept:
        return
    try:
        state.claim_again(session)
        session.commit()
    except Exception:  # noqa: BLE001
        rollback_quietly(session)
        if not outage_noted():
            log.error("claims of a refused call not stored", extra={"code": CommitFailed.code})
        return
    state.claims_kept = True


def finish_after_commit(response: Response, after: list[Step]) -> Response:
    """After a successful commit, run `after` in order. A step that raises makes the answer 500 `response_withheld`
    (the call is stored); the later steps still see that answer."""
    for step in after:
        try:
            response = step(response)
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
