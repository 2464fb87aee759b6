"""Envelopes on the wire (protocol.md §4): request bodies opened, data-bearing responses sealed.

- A request body is opened when its view parses it (`EnvelopeParser`), that is after the token, the DPoP proof, the
  scope and the purpose were checked: a caller who may not call a route learns nothing from its envelope checks.
  Every accepted envelope leaves evidence (signed header, signature, plaintext hash, and the plaintext sealed at rest
  with the `storage` key) in the request's own transaction, and its evidence in the audit entry.
- A 2xx JSON response to a `/v1` call is sealed to the calling client's registered `enc` key, signed with the
  exchange's `envelope-sign` key, answering the request envelope (`reply_to`, `request_hash`) or, for a bodiless
  request, the DPoP proof; it carries the `audit` receipt of the call's audit entry (from request state). That the
  client has an `enc` key is checked before anything runs (`require_response_key`), so a response is never left
unsealable after a commit. - Error bodies are never enveloped (protocol.md §5).
- Writes are idempotent: the outcome of a stored call (status, ETag, Location, the body sealed at rest) is kept with
  it (`record_outcome`, in the call's transaction), and the same envelope sent again by the same client is answered
  with it (`StoredOutcome`), audited as a read of those records. Step 10 is the database's to decide, not the replay
  cache's (`_StoredDecides`): the cache may have lost its memory, and it has seen attempts that stored nothing.

`UNSAFE_PLAIN_JSON_BODIES` (tests of the register's own rules only; never read from the environment) turns all of
this off.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import Any

import nacl.public
import nacl.signing
from flask import Flask, Response, current_app, g, request
from flask_smorest import Blueprint
from sqlalchemy import bindparam, delete, event, exists, or_, select
from sqlalchemy.exc import IntegrityError
from webargs.flaskparser import FlaskParser

from exchange.audit.entries import Envelope as AuditEnvelope
from exchange.clients.keys import newest_active_enc_key, sign_key
from exchange.clients.models import ClientKey
from exchange.db import db, utcnow
from exchange.envelope.models import EnvelopeEvidence, EnvelopeOutcome
from exchange.identity import ResponseKey
from exchange.keys.ring import KeyRing, key_ring
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.envelope import (
    MEDIA_TYPE,
    REPLAY_MARGIN,
    EnvelopeHeader,
    OpenedEnvelope,
    RequestRef,
    open_envelope,
    seal,
)
from exchange.protocol.envelope_errors import EnvelopeReplayed, KeyRevoked, UnknownKey
from exchange.protocol.errors import ExchangeError, ResponseWithheld, UnsupportedMediaType
from exchange.web import audit_context
from exchange.web.caller import current_caller
from exchange.web.state import request_state

log = logging.getLogger("exchange.envelope")
RECEIVER = "exchange"
OUTCOME_PURGE_PROBABILITY = 0.01
REGISTER_OWNER = "interior"  # as the audit recorder: an answer given again to another agency discloses to it
API_PREFIX = "/v1/"


class NoResponseKey(ExchangeError):
    status = 400
    code = "no_encryption_key"
    default_message = "Your client has no active enc key registered; the exchange cannot seal responses to you."


def envelopes_required(app: Flask) -> bool:
    return not app.config.get("UNSAFE_PLAIN_JSON_BODIES", False)


def request_target() -> str:
    """The path with query exactly as on the request line (what the sender put in `target`)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


class DatabaseSenderKeys:
    """The agencies' registered `sign` keys. A revoked key fails at once, whatever the envelope's `iat` says."""

    def resolve(self, agency: str, skid: str, at: int) -> nacl.signing.VerifyKey:
        key = sign_key(db.session, agency=agency, kid=skid)
        if key is None or key.status == "pending":  # a pending key is not in use yet
            raise UnknownKey()
        if not key.verifies_at(utcnow()):  # revoked, or retired after its overlap
            raise KeyRevoked()
        return nacl.signing.VerifyKey(b64url_decode(key.x))


class _StoredDecides:
    """The replay cache as step 10 sees it over HTTP: not asked, not written. Whether a (sender, msg_id) was *stored*
    is the database's to say (`envelope_evidence`'s primary key, committed with the call), and only that decides: a
    stored call is answered with its outcome, one that stored nothing is carried out (once: the primary key
    serialises two attempts). The cache cannot be the judge: it may have lost its memory (a Redis restarted empty),
    and it has also seen the attempts that failed and stored nothing. So a claim there would be read by nobody, and
    would cost a transaction and a commit (fsync) of its own on every enveloped call."""

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        return None


class StoredOutcome(Exception):  # noqa: N818  (not an error: the way out of a view to the stored answer)
    """The request envelope was stored before (same sender, `msg_id`, client and content): answer that outcome."""

    def __init__(self, outcome: EnvelopeOutcome) -> None:
        super().__init__("stored outcome")
        self.outcome = outcome


class DuplicateEnvelope(Exception):  # noqa: N818
    """The INSERT of a request's evidence hit the primary key: another attempt with the same (sender, msg_id) was
    stored meanwhile (raised in place of the IntegrityError, so that no service mistakes it for its own conflict)."""


def _plaintext_hash(opened: OpenedEnvelope) -> str:
    return str(opened.evidence()["plaintext_hash"])


# Whether anything was stored for a (sender, msg_id): built once, run as Core (a new envelope's usual answer: no).
_STORED = select(or_(
    exists().where(EnvelopeEvidence.sender == bindparam("sender"), EnvelopeEvidence.msg_id == bindparam("msg_id")),
    exists().where(EnvelopeOutcome.sender == bindparam("sender"), EnvelopeOutcome.msg_id == bindparam("msg_id")),
))


def _stored_answer(opened: OpenedEnvelope) -> StoredOutcome | EnvelopeReplayed | None:
    """What to do with an envelope whose (sender, msg_id) is in the database: the stored outcome if the same client
    sends the same request again, 409 `envelope_replayed` otherwise; None if nothing was stored for it."""
    header = opened.header
    ids = {"sender": header.sender, "msg_id": header.msg_id}
    if not db.session.connection().execute(_STORED, ids).scalar():  # nearly always: one statement, no ORM
        return None
    outcome = db.session.get(EnvelopeOutcome, (header.sender, header.msg_id))
    if outcome is None:
        stored = db.session.scalar(select(EnvelopeEvidence.msg_id).where(
            EnvelopeEvidence.sender == header.sender, EnvelopeEvidence.msg_id == header.msg_id))
        return None if stored is None else EnvelopeReplayed()
    same = (outcome.client_id == current_caller().client_id and outcome.method == header.method
            and outcome.target == header.target and outcome.plaintext_hash == _plaintext_hash(opened))
    return StoredOutcome(outcome) if same else EnvelopeReplayed(
        "This msg_id was used before for another request; seal a new one for every request.")


def open_request() -> OpenedEnvelope:
    """Open this request's envelope once (checks 1-11), record its evidence, and return it.

    Step 10 is decided by the database (`_StoredDecides`): if this (sender, msg_id) was stored, the request is
    answered with the stored outcome (`StoredOutcome`) or refused (409 `envelope_replayed`), before the view runs."""
    opened: OpenedEnvelope | None = g.get("request_envelope")
    if opened is not None:
        return opened
    if request.mimetype != MEDIA_TYPE:
        raise UnsupportedMediaType(f"Send the body as an envelope ({MEDIA_TYPE}).")
    keystore: KeyRing = key_ring()
    opened = open_envelope(
        request.get_data(cache=True),
        receiver=RECEIVER,
        decrypt_keys=keystore.decryption_keyring(),
        method=request.method,
        target=request_target(),
        authenticated_agency=current_caller().agency,
        sender_keys=DatabaseSenderKeys(),
        replay=_StoredDecides(),
        max_bytes=current_app.config["ENVELOPE_MAX_BYTES"],
    )
    g.request_envelope = opened
    evidence = opened.evidence()
    audit_context.annotate(envelope=AuditEnvelope(
        msg_id=evidence["msg_id"], protected_hash=evidence["protected_hash"], sig=evidence["sig"],
        plaintext_hash=evidence["plaintext_hash"]))
    answer = _stored_answer(opened)
    if answer is not None:
        raise answer
    storage = keystore.active_secret()
    g.envelope_evidence = EnvelopeEvidence(
        sender=opened.header.sender, msg_id=opened.header.msg_id, protected=opened.protected, sig=evidence["sig"],
        plaintext_hash=evidence["plaintext_hash"], sealed_plaintext=storage.seal(opened.plaintext),
        storage_kid=storage.kid, request_id=g.get("request_id", ""),
    )
    db.session.add(g.envelope_evidence)
    if db.session.get_bind().dialect.name == "postgresql":
        # Inserted now: a second attempt with this msg_id still in flight waits here for the first one's end, then
        # hits the primary key (DuplicateEnvelope: answered with the first one's outcome) or goes on (the first
        # stored nothing). Not on SQLite, where a write now would hold the database's only write lock while a
        # view claims a jti in the replay cache's own transaction (key rotation); there the two attempts meet at
        # the later flush, and the outcome hook flushes before anything else is recorded.
        db.session.flush()
    return opened


class EnvelopeParser(FlaskParser):
    """webargs' Flask parser, reading a JSON body out of the request envelope."""

    def _raw_load_json(self, req: Any) -> Any:
        if envelopes_required(current_app):
            return open_request().json
        return super()._raw_load_json(req)


class EnvelopeBlueprint(Blueprint):  # type: ignore[misc]
    """flask-smorest blueprint whose JSON bodies arrive in envelopes."""

    ARGUMENTS_PARSER = EnvelopeParser()


def require_response_key() -> None:
    """Before anything runs: the caller's client must have an `enc` key for its responses."""
    caller = current_caller()
    # the authenticator found it with the client's status (exchange.auth.protect.read_client_state); others look it up
    key = caller.response_key or (newest_active_enc_key(db.session, caller.client_id) if caller.client_id else None)
    if key is None:
        raise NoResponseKey()
    g.response_key = key


def seal_response(response: Response) -> Response:
    """Seal a successful JSON response to the caller's `enc` key (after the audit entry exists)."""
    key: ClientKey | ResponseKey | None = g.get("response_key")
    if key is None or not 200 <= response.status_code < 300 or response.mimetype != "application/json":
        return response
    caller = current_caller()
    opened: OpenedEnvelope | None = g.get("request_envelope")
    target = request_target()
    if opened is not None:
        reference = opened.request_ref()
    else:
        reference = RequestRef.of_proof(caller.dpop_proof or "", method=request.method, target=target)
    receipt = request_state().receipt  # the recorder's, once the call's entry has its index
    if receipt is None:  # fail closed: no audited response leaves unsealed or unreceipted
        log.error("response without an audit receipt", extra={"code": "audit_unavailable"})
        raise ExchangeError("The response could not be sealed.")
    keystore: KeyRing = key_ring()
    signer = keystore.active("envelope-sign")
    header = EnvelopeHeader.for_response(
        sender=RECEIVER, skid=signer.kid, recipient=caller.agency, rkid=key.kid, request=reference, audit=receipt,
    )
    sealed = seal(header=header, plaintext=response.get_data(), signing_key=signer.signing_key,
                  recipient_key=nacl.public.PublicKey(b64url_decode(key.x)))
    response.set_data(sealed.to_json())
    response.mimetype = MEDIA_TYPE
    return response


def _replay(outcome: EnvelopeOutcome) -> Response:
    """The stored outcome as a new response (sealed after the commit like any other, answering this request)."""
    body = b""
    if outcome.sealed_body is not None and outcome.storage_kid is not None:
        keystore: KeyRing = current_app.extensions["exchange.keystore"]
        body = keystore.storage_key(outcome.storage_kid).open(outcome.sealed_body)
    headers = dict(outcome.headers)
    response = Response(body, status=outcome.status, mimetype=headers.pop("Content-Type", None))
    for name, value in headers.items():
        response.headers[name] = value
    g.envelope_replay = True
    caller = current_caller()
    audit_context.set_action("consult" if caller.agency == REGISTER_OWNER else "disclose")
    audit_context.touch(*outcome.record_ids)
    log.info("stored outcome answered again", extra={"code": "envelope_outcome_replayed"})
    return response


def _resolve_duplicate() -> Response:
    """A concurrent attempt with the same (sender, msg_id) was stored first: discard this one's work, then answer
    the stored outcome (or refuse it: another client, another request)."""
    from exchange.web.errors import error_response

    db.session.rollback()
    g.pop("envelope_evidence", None)
    g.pop("audit_record_ids", None)  # what this attempt's view touched was rolled back: not part of its answer
    opened: OpenedEnvelope | None = g.get("request_envelope")
    answer = _stored_answer(opened) if opened is not None else None
    if isinstance(answer, StoredOutcome):
        return _replay(answer.outcome)
    refused = answer if answer is not None else EnvelopeReplayed()
    return error_response(status=refused.status, code=refused.code, message=refused.message)


def _duplicate_evidence(context: Any) -> None:
    """Engine `handle_error`: the evidence row's primary key refused an INSERT -> `DuplicateEnvelope`."""
    statement = (context.statement or "").lstrip().upper()
    if isinstance(context.sqlalchemy_exception, IntegrityError) and statement.startswith(
            "INSERT INTO ENVELOPE_EVIDENCE"):
        raise DuplicateEnvelope() from context.sqlalchemy_exception


def record_outcome(response: Response) -> Response:
    """Before the audit hook and the commit: store the outcome of a successful call that came in an envelope, in
    the call's own transaction (and flush it with the evidence: a concurrent attempt stored first shows here)."""
    evidence: EnvelopeEvidence | None = g.get("envelope_evidence")
    opened: OpenedEnvelope | None = g.get("request_envelope")
    if evidence is None or opened is None or g.get("envelope_replay") or not 200 <= response.status_code < 400:
        return response
    try:
        body = response.get_data() if response.mimetype == "application/json" else b""
        storage = current_app.extensions["exchange.keystore"].active_secret()
        headers = {name: response.headers[name] for name in ("ETag", "Location") if name in response.headers}
        if response.mimetype:
            headers["Content-Type"] = response.mimetype
        db.session.add(EnvelopeOutcome(
            sender=opened.header.sender, msg_id=opened.header.msg_id, client_id=current_caller().client_id,
            method=opened.header.method, target=opened.header.target, plaintext_hash=_plaintext_hash(opened),
            status=response.status_code, headers=headers, sealed_body=storage.seal(body) if body else None,
            storage_kid=storage.kid if body else None, record_ids=list(audit_context.touched()),
            expires_at=datetime.fromtimestamp(opened.header.exp + REPLAY_MARGIN, UTC)))
        if random.random() < OUTCOME_PURGE_PROBABILITY:  # noqa: S311  (load spreading, not security)
            # Expired answers are never read again (their envelope fails step 4): drop them now and then.
            db.session.execute(delete(EnvelopeOutcome).where(EnvelopeOutcome.expires_at < utcnow()))
        db.session.flush()
    except DuplicateEnvelope:
        return _resolve_duplicate()
    except Exception as e:  # noqa: BLE001  (before the commit: nothing is stored, the call fails)
        from exchange.web.errors import error_response
        from exchange.web.pipeline import CommitFailed

        log.error("envelope outcome not recorded", extra={"code": CommitFailed.code,
                                                          "exception_type": type(e).__name__})
        return error_response(status=CommitFailed.status, code=CommitFailed.code,
                              message=CommitFailed.default_message)
    return response


def outcome_step(response: Response) -> Response:
    """The response pipeline's step before the audit entry: `record_outcome` for a `/v1/` call in an envelope."""
    if envelopes_required(current_app) and request.path.startswith(API_PREFIX):
        return record_outcome(response)
    return response


def seal_step(response: Response) -> Response:
    """The response pipeline's step after the commit and the audit entry's sequencing: `seal_response`."""
    if not (envelopes_required(current_app) and request.path.startswith(API_PREFIX)):
        return response
    try:
        return seal_response(response)
    except Exception as e:  # noqa: BLE001  (after the commit: the call is stored, its answer withheld)
        from exchange.web.errors import error_response

        log.error("response not sealed", extra={"code": ResponseWithheld.code, "exception_type": type(e).__name__})
        return error_response(status=ResponseWithheld.status, code=ResponseWithheld.code,
                              message=ResponseWithheld.default_message)


def install_envelope_outcomes(app: Flask) -> None:
    """Answer a stored request again (`StoredOutcome`, `DuplicateEnvelope`); the outcome itself is kept by the
    response pipeline's `outcome_step`."""
    event.listen(db.engine(app), "handle_error", _duplicate_evidence)

    @app.errorhandler(StoredOutcome)
    def _stored(e: StoredOutcome) -> Response:
        return _replay(e.outcome)

    @app.errorhandler(DuplicateEnvelope)
    def _duplicate(_e: DuplicateEnvelope) -> Response:
        return _resolve_duplicate()


def install_envelopes(app: Flask) -> None:
    """The envelope limits; the opening happens in the views' parser, the sealing in the response pipeline."""
    app.config.setdefault("ENVELOPE_MAX_BYTES", 1024 * 1024)
