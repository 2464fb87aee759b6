"""Recording: every `/v1/` call gets its entry (the steps `record_call`, `sequence_call` and `late_failure` of the
response pipeline, `exchange.web.pipeline`, which runs them around the commit), anything else calls `record_event`.
For each `/v1/` response:

- success (< 400): the entry is queued in the request's own transaction (`AuditLog.enqueue`: one INSERT, no lock);
  the unit of work commits it with the request's changes, so both are stored or neither is. If queueing fails, the
  call fails with 503 `audit_unavailable` and nothing is committed. Right after the commit (`sequence_call`) the
  entry is sequenced into the log (`AuditLog.settle`, batched with whatever other workers queued meanwhile), its
  signed receipt goes into request state (`exchange.web.state`) and the response gets its receipt headers; the
  envelope layer seals the response after that, with the receipt it finds in request state. On SQLite (one writer at a
  time) the entry is appended in the request's own transaction instead (`AuditLog.append`), as before: there it costs
  no lock the request does not hold already, and a second transaction would only add a commit (`deferred`).
- if that sequencing fails (the database went away between the two transactions), the call's changes and its entry
  are stored, but the entry has no index yet: the response is 500 `audit_pending` (not 503, which promises that nothing
  was stored and may be retried) with a message saying so, and no data (a data-bearing response cannot be sealed
  without its receipt). The queued entry is sequenced by the next
  integration (the next call on any worker, `exchange audit checkpoint`), and the failed response is recorded too.
- failure (>= 400, including the case above): the request's changes are rolled back, then its entry (a `deny` for
  401/403, otherwise the attempted action with outcome `failure` and the error code as `reason`) is queued with the
  call's claims made again (its DPoP proof stays used, `exchange.web.state.Claim`), committed on its own and
  sequenced. If even queueing fails, the response is 503 `audit_unavailable`.
- a call whose entry was queued but that fails afterwards is recorded as a failure on its own once its final
  response is known (`late_failure`, on Flask's `request_finished` signal, after every after-request hook): if a later
  hook refused it or the commit failed, its entry was rolled back with its changes and the failure is its only entry;
  if it failed after the commit (its response could not be sealed, or its entry not sequenced), the failure is a second
  entry with the same `request_id`, after the one that records what was committed.

The response carries `Audit-Index` and `Audit-Leaf-Hash` (b64) of its entry.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Request, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exchange.audit.entries import Event
from exchange.audit.sequencing import AppendedEntry, QueuedEntry
from exchange.audit.services import AuditLog, PublishedCheckpoint, Signer
from exchange.db import db, rollback_quietly, utcnow
from exchange.identity import Caller
from exchange.keys.errors import KeyStoreError
from exchange.keys.ring import key_ring
from exchange.outages import outage_noted
from exchange.protocol.audit_errors import AuditKeyUnavailable, AuditPending, AuditUnavailable
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.encoding import b64url
from exchange.protocol.envelope import AuditReceipt
from exchange.protocol.receipts import INDEX_HEADER, LEAF_HASH_HEADER, SignedReceipt
from exchange.web import audit_context as context
from exchange.web.errors import error_response
from exchange.web.state import request_state

log = logging.getLogger("exchange.audit")

REGISTER_OWNER = "interior"  # reads by any other agency disclose the register's data to it
AUDITED_PREFIX = "/v1/"


# ---- the app's audit key and origin ---------------------------------------------------------------------------------


def signer(app: Flask) -> Signer:
    return key_ring(app).active("audit")


KEY_REPAIR_PREFIX = "/v1/keys"


def require_audit_key(app: Flask) -> None:
    """Refuse a call that could not be audited: the active `audit` key must load (fail closed, 503
    `audit_key_unavailable`). Cheap: the key ring caches the registry and the loaded key. A database that cannot be
    read is not this check's fault to report: the call meets it where it reads the database.

    Key administration (`/v1/keys...`) is the way out and stays open: security officers rotate the lost key there
    (the runbook). Those calls are still recorded; their entries are covered by the first checkpoint the new audit
    key signs."""
    if request.path == KEY_REPAIR_PREFIX or request.path.startswith(KEY_REPAIR_PREFIX + "/"):
        return
    try:
        signer(app)
    except KeyStoreError as e:
        log.error("audit key unavailable", extra={"code": e.code})
        raise AuditKeyUnavailable() from e
    except SQLAlchemyError:
        return


def origin(app: Flask) -> str:
    value: str = app.config["AUDIT_ORIGIN"]
    return value


def published(app: Flask, audit_log: AuditLog) -> PublishedCheckpoint:
    """The checkpoint the app serves, with the cosignatures it waits for (`AUDIT_SERVE_COSIGNATURES`)."""
    return audit_log.published(signer=signer(app), origin=origin(app),
                               cosignatures=app.config.get("AUDIT_SERVE_COSIGNATURES", 0))


def verifiers(app: Flask) -> list[NoteVerifier]:
    """The app's own `audit` keys (current and retired) as checkpoint verifiers."""
    return [NoteVerifier(name=origin(app), public_key=key.public_bytes)
            for key in key_ring(app).verification_keys("audit")]


# ---- events ---------------------------------------------------------------------------------------------------------


def make_event(
    *,
    action: str,
    outcome: str,
    status: int,
    reason: str | None = None,
    caller: Caller | None = None,
    request_id: str,
    method: str,
    path: str,
    record_ids: Iterable[object] = (),
    recipient: str | None = None,
    source_ip: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Event:
    """An event from its parts; `extra` sets other members (`context.ANNOTATABLE`), overriding the caller's."""
    members: dict[str, Any] = {}
    if caller is not None:
        members.update(agency=caller.agency, client_id=caller.client_id, officer=caller.officer,
                       purpose=caller.purpose, case_ref=caller.case_ref, token_jti=caller.token_jti,
                       dpop_jti=caller.dpop_jti)
    unknown = set(extra or {}) - context.ANNOTATABLE
    if unknown:
        raise ValueError(f"unknown audit members: {sorted(unknown)}")
    members.update(extra or {})
    return Event(time=utcnow(), request_id=request_id, action=action, outcome=outcome, status=status, reason=reason,
                 method=method, path=path, record_ids=tuple(str(r) for r in record_ids), recipient=recipient,
                 source_ip=source_ip, **members)


def record_event(
    session: Session,
    *,
    action: str,
    outcome: str,
    status: int,
    reason: str | None = None,
    caller: Caller | None = None,
    request_id: str,
    method: str,
    path: str,
    record_ids: Iterable[object] = (),
    recipient: str | None = None,
    source_ip: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AppendedEntry:
    """Append one entry in `session`'s transaction (call it last: it holds the log's lock until the commit).

    For events that are not `/v1/` calls: tokens issued or refused, client and key operations, CLI reads of the log.
    Raises `AuditUnavailable` (503) if the entry cannot be written; the caller's transaction must then roll back.
    """
    try:
        event = make_event(action=action, outcome=outcome, status=status, reason=reason, caller=caller,
                           request_id=request_id, method=method, path=path, record_ids=record_ids,
                           recipient=recipient, source_ip=source_ip, extra=extra)
    except ValueError as e:
        raise AuditUnavailable() from e
    return AuditLog(session=session).append([event])[0]


def record_and_commit(session: Session, **event: Any) -> AppendedEntry:
    """`record_event`, then commit `session`: for callers outside the request's unit of work (the OAuth endpoints).
    A database failure of either becomes `AuditUnavailable`, after a rollback, so nothing is half-written."""
    try:
        entry = record_event(session, **event)
        session.commit()
    except (AuditUnavailable, SQLAlchemyError) as e:
        with contextlib.suppress(SQLAlchemyError):  # no connection to be had: nothing to roll back
            session.rollback()
        raise AuditUnavailable() from e
    return entry


def _error_code(response: Response) -> str:
    body = response.get_json(silent=True) if response.is_json else None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code else f"http_{response.status_code}"


def action_for(req: Request, caller: Caller | None, status: int) -> str:
    """The audit.md action of a `/v1/` call (see the README's "Audit log" for the table)."""
    if status in (401, 403):
        return "deny"
    named = context.action()
    if named is not None:
        return named
    if req.path == "/v1/audit" or req.path.startswith("/v1/audit/"):
        return "audit.read"
    rule = req.url_rule.rule if req.url_rule is not None else ""
    if rule.endswith("/transitions"):
        return "alter"
    if rule in ("/v1/screening", "/v1/screening/manifests"):
        return "consult"
    method = req.method
    if method == "POST":
        return "collect"
    if method in ("PATCH", "PUT"):
        return "alter"
    if method == "DELETE":
        return "erase"
    if method == "GET" and status < 400 and caller is not None and caller.agency != REGISTER_OWNER:
        return "disclose"
    return "consult"


def request_event(response: Response) -> Event:
    """The event of the current `/v1/` request, given its response."""
    caller: Caller | None = g.get("caller")
    status = response.status_code
    action = action_for(request, caller, status)
    received_data = status < 400 and caller is not None and caller.agency != REGISTER_OWNER
    recipient = caller.agency if caller is not None and received_data and action in ("disclose", "consult") else None
    # A failed call is recorded with the ids it aimed at (in its path); what its view touched was rolled back.
    path_ids = [v for v in (request.view_args or {}).values() if isinstance(v, uuid.UUID)]
    touched = context.touched() if status < 400 else ()
    return make_event(
        action=action,
        outcome="success" if status < 400 else "failure",
        status=status,
        reason=_error_code(response) if status >= 400 else None,
        caller=caller,
        request_id=g.get("request_id") or uuid.uuid4().hex,
        method=request.method,
        path=request.path,
        record_ids=[*path_ids, *touched],
        recipient=recipient,
        source_ip=request.remote_addr,
        extra=context.annotated(),
    )


# ---- the Flask hook -------------------------------------------------------------------------------------------------


def signed_receipt(app: Flask, entry: AppendedEntry) -> SignedReceipt:
    """The entry's receipt (witness.md §2), signed now, right after its integration, by the active `audit` key."""
    return SignedReceipt.sign(index=entry.index, leaf_hash=entry.leaf_hash, time=int(time.time()), log=origin(app),
                              sign=signer(app).sign)


def _with_entry(response: Response, entry: AppendedEntry) -> Response:
    try:
        receipt = signed_receipt(current_app, entry)
    except Exception as e:
        # The audit key is unavailable (a lost key store: the officers' recovery runs through these very calls).
        # The call was carried out and its entry is in the log; its response names the entry without the log's
        # signature, which the client library refuses (`audit_receipt_unsigned`), and a data-bearing response
        # cannot be sealed anyway without the key store.
        log.error("audit receipt not signed", extra={"exception_type": type(e).__name__})
        request_state().receipt = AuditReceipt(index=entry.index, leaf_hash=b64url(entry.leaf_hash))
        response.headers[INDEX_HEADER] = str(entry.index)
        response.headers[LEAF_HASH_HEADER] = b64url(entry.leaf_hash)
        return response
    request_state().receipt = AuditReceipt(index=receipt.index, leaf_hash=b64url(receipt.leaf_hash),
                                           time=receipt.time, log=receipt.log, sig=b64url(receipt.sig))
    response.headers.update(receipt.headers())
    return response


def _unavailable() -> Response:
    return error_response(status=AuditUnavailable.status, code=AuditUnavailable.code,
                          message=AuditUnavailable.default_message)


def deferred(session: Session) -> bool:
    """Whether calls queue their entries and sequence them after the commit (PostgreSQL), or append them in their
    own transaction (SQLite: one writer at a time, whose request transaction already holds the database's write
    lock, so a second transaction per call would only add a commit)."""
    return session.get_bind().dialect.name != "sqlite"


def _request_entry(session: Session, response: Response) -> QueuedEntry | AppendedEntry:
    """Queue (or, on SQLite, append) the request's entry; anything going wrong, whatever it is, is
    `AuditUnavailable` (fail closed)."""
    try:
        log_ = AuditLog(session=session)
        event = request_event(response)
        return log_.enqueue([event])[0] if deferred(session) else log_.append([event])[0]
    except AuditUnavailable:
        raise
    except Exception as e:
        if not outage_noted():
            log.error("audit entry not built", extra={"exception_type": type(e).__name__})
        raise AuditUnavailable() from e


def _append_failure(session: Session, response: Response) -> AppendedEntry | None:
    """Discard the call's changes, then record it as failed in a transaction of its own (and sequence that entry);
    None if it could not be stored or not sequenced (if stored, the next integration sequences it).

    Never raises: it runs in after-request hooks and in `request_finished`, where an exception would make Flask run
    the after-request hooks again on a 500 (and a call already committed could then be answered 503)."""
    state = request_state()
    try:
        session.rollback()  # on a dropped connection this raises too: inside the try
        state.claim_again(session)  # what the call used up (its DPoP proof) stays used: kept with its failure
        entry = _request_entry(session, response)
        session.commit()
    except Exception:  # noqa: BLE001  (AuditUnavailable, SQLAlchemyError, the driver's own: all mean "not stored")
        rollback_quietly(session)
        if not outage_noted():  # an outage is logged once per request, where it was met
            log.error("audit append failed", extra={"code": AuditUnavailable.code})
        return None
    state.claims_kept = True
    if isinstance(entry, AppendedEntry):
        return entry
    try:
        return AuditLog(session=session).settle(entry)
    except Exception:  # noqa: BLE001
        rollback_quietly(session)
        log.error("audit entry stored, not sequenced", extra={"code": AuditUnavailable.code})
        return None


def _settle_request_entry(response: Response) -> Response:
    """After the request's commit: sequence its entry and name it in the response."""
    queued: QueuedEntry = g.audit_entry
    try:
        entry = AuditLog(session=db.session).settle(queued)
    except Exception:  # noqa: BLE001  (AuditUnavailable, or anything else: the call is stored either way)
        rollback_quietly(db.session)
        log.error("audit entry stored, not sequenced", extra={"code": AuditPending.code})
        return _pending()
    return _with_entry(response, entry)


def _pending() -> Response:
    return error_response(status=AuditPending.status, code=AuditPending.code, message=AuditPending.default_message)


def record_api_call(response: Response) -> Response:
    """Queue the current `/v1/` call's entry (see the module docstring for the order of things)."""
    try:
        session = db.session
    except SQLAlchemyError:  # no connection to be had (the database is down): nothing to record it in; fail closed
        return _unavailable()
    if db.committed():
        # Flask runs the after-request hooks a second time when one of them raised after the commit: the call is
        # stored, so record the failure on its own and never answer 503 (which promises that nothing was stored).
        g.pop("audit_entry", None)
        failure = _append_failure(session, response)
        return _with_entry(response, failure) if failure is not None else response
    if response.status_code < 400:
        try:
            entry = _request_entry(session, response)
        except AuditUnavailable:
            if not outage_noted():
                log.error("audit append failed", extra={"code": AuditUnavailable.code})
            response = _unavailable()
        else:
            g.audit_entry = entry  # committed by the unit of work, unless the call still fails
            if isinstance(entry, AppendedEntry):  # SQLite: appended in the request's transaction
                return _with_entry(response, entry)
            return response  # sequenced after the commit (`sequence_call`)
    failure = _append_failure(session, response)
    return _with_entry(response, failure) if failure is not None else _unavailable()


def record_late_failure(response: Response) -> None:
    """The call's entry was queued (or appended) but its final response is an error: a later hook refused it or the
    commit failed (the entry was rolled back with the call's changes), or it failed after the commit (sealing,
    sequencing). Record the failure on its own."""
    if g.pop("audit_entry", None) is None or response.status_code < 400:
        return
    try:
        session = db.session
    except SQLAlchemyError:
        return
    failure = _append_failure(session, response)  # never raises
    if failure is not None:
        _with_entry(response, failure)


# ---- the steps of the response pipeline (exchange.web.pipeline decides their order) ---------------------------------


def record_call(response: Response) -> Response:
    """Before the commit: record a `/v1/` call (`record_api_call`)."""
    if not request.path.startswith(AUDITED_PREFIX) or g.get("audit_counted"):
        return response  # a rate-limited call is accounted for by its window's entry (exchange.limits)
    return record_api_call(response)


def sequence_call(response: Response) -> Response:
    """After the commit: sequence the call's queued entry (appended ones have their receipt already)."""
    if isinstance(g.get("audit_entry"), QueuedEntry):
        return _settle_request_entry(response)
    return response


def late_failure(response: Response) -> None:
    """On `request_finished`: a `/v1/` call that failed after its entry was queued (`record_late_failure`)."""
    if request.path.startswith(AUDITED_PREFIX):
        record_late_failure(response)
