"""Envelopes on the wire (protocol.md §4): request bodies opened, data-bearing responses sealed.

- A request body is opened when its view parses it (`EnvelopeParser`), that is after the token, the DPoP proof, the
  scope and the purpose were checked: a caller who may not call a route learns nothing from its envelope checks.
  Every accepted envelope leaves evidence (signed header, signature, plaintext hash, and the plaintext sealed at rest
  with the `storage` key) in the request's own transaction, and its evidence in the audit entry.
- A 2xx JSON response to a `/v1` call is sealed to the calling client's registered `enc` key, signed with the
  exchange's `envelope-sign` key, answering the request envelope (`reply_to`, `request_hash`) or, for a bodiless
  request, the DPoP proof; it carries the `audit` receipt of the call's audit entry. That the client has an `enc` key
  is checked before anything runs (`require_response_key`), so a response is never left unsealable after a commit.
- Error bodies are never enveloped (protocol.md §5).

`UNSAFE_PLAIN_JSON_BODIES` (tests of the register's own rules only; never read from the environment) turns all of
this off.
"""

from __future__ import annotations

import logging
from typing import Any

import nacl.public
import nacl.signing
from flask import Flask, Response, current_app, g, request
from flask_smorest import Blueprint
from sqlalchemy import select
from webargs.flaskparser import FlaskParser

from exchange.audit.services import Envelope as AuditEnvelope
from exchange.clients.models import Client, ClientKey
from exchange.db import db, utcnow
from exchange.envelope.models import EnvelopeEvidence
from exchange.keys.ring import KeyRing
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.envelope import (
    MEDIA_TYPE,
    AuditReceipt,
    EnvelopeHeader,
    OpenedEnvelope,
    RequestRef,
    open_envelope,
    seal,
)
from exchange.protocol.envelope_errors import KeyRevoked, UnknownKey
from exchange.protocol.errors import ExchangeError, UnsupportedMediaType
from exchange.protocol.receipts import INDEX_HEADER, LEAF_HASH_HEADER, LOG_HEADER, SIGNATURE_HEADER, TIME_HEADER
from exchange.web import audit_context
from exchange.web.caller import ResponseKey, current_caller

log = logging.getLogger("exchange.envelope")
RECEIVER = "exchange"
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
        key = db.session.scalar(
            select(ClientKey).join(Client).where(Client.agency == agency, ClientKey.kid == skid,
                                                 ClientKey.purpose == "sign")
        )
        if key is None or key.status == "pending":  # a pending key is not in use yet
            raise UnknownKey()
        if not key.verifies_at(utcnow()):  # revoked, or retired after its overlap
            raise KeyRevoked()
        return nacl.signing.VerifyKey(b64url_decode(key.x))


def open_request() -> OpenedEnvelope:
    """Open this request's envelope once (checks 1-11), record its evidence, and return it."""
    opened: OpenedEnvelope | None = g.get("request_envelope")
    if opened is not None:
        return opened
    if request.mimetype != MEDIA_TYPE:
        raise UnsupportedMediaType(f"Send the body as an envelope ({MEDIA_TYPE}).")
    keystore: KeyRing = current_app.extensions["exchange.keystore"]
    opened = open_envelope(
        request.get_data(cache=True),
        receiver=RECEIVER,
        decrypt_keys=keystore.decryption_keyring(),
        method=request.method,
        target=request_target(),
        authenticated_agency=current_caller().agency,
        sender_keys=DatabaseSenderKeys(),
        replay=current_app.extensions["exchange.replay"],
        max_bytes=current_app.config["ENVELOPE_MAX_BYTES"],
    )
    g.request_envelope = opened
    evidence = opened.evidence()
    storage = keystore.active_secret()
    db.session.add(EnvelopeEvidence(
        sender=opened.header.sender, msg_id=opened.header.msg_id, protected=opened.protected, sig=evidence["sig"],
        plaintext_hash=evidence["plaintext_hash"], sealed_plaintext=storage.seal(opened.plaintext),
        storage_kid=storage.kid, request_id=g.get("request_id", ""),
    ))
    audit_context.annotate(envelope=AuditEnvelope(
        msg_id=evidence["msg_id"], protected_hash=evidence["protected_hash"], sig=evidence["sig"],
        plaintext_hash=evidence["plaintext_hash"]))
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
    key = caller.response_key or db.session.scalar(
        select(ClientKey).join(Client)
        .where(Client.client_id == caller.client_id, ClientKey.purpose == "enc", ClientKey.status == "active")
        .order_by(ClientKey.created_at.desc())
    )
    if key is None:
        raise NoResponseKey()
    g.response_key = key


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value)


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
    index, leaf_hash = response.headers.get(INDEX_HEADER), response.headers.get(LEAF_HASH_HEADER)
    if index is None or leaf_hash is None:  # fail closed: no audited response leaves unsealed or unreceipted
        log.error("response without an audit receipt", extra={"code": "audit_unavailable"})
        raise ExchangeError("The response could not be sealed.")
    keystore: KeyRing = current_app.extensions["exchange.keystore"]
    signer = keystore.active("envelope-sign")
    header = EnvelopeHeader.for_response(
        sender=RECEIVER, skid=signer.kid, recipient=caller.agency, rkid=key.kid, request=reference,
        audit=AuditReceipt(index=int(index), leaf_hash=leaf_hash, time=_int_or_none(response.headers.get(TIME_HEADER)),
                           log=response.headers.get(LOG_HEADER), sig=response.headers.get(SIGNATURE_HEADER)),
    )
    sealed = seal(header=header, plaintext=response.get_data(), signing_key=signer.signing_key,
                  recipient_key=nacl.public.PublicKey(b64url_decode(key.x)))
    response.set_data(sealed.to_json())
    response.mimetype = MEDIA_TYPE
    return response


def install_envelopes(app: Flask) -> None:
    """Call between `install_unit_of_work(app)` and `install_audit(app)`: Flask runs after-request functions in
    reverse order, so the audit hook queues the call's entry first; responses are sealed after the commit, once the
    entry has its index (`db.after_commit`, run in the order registered: the audit log's first)."""
    app.config.setdefault("ENVELOPE_MAX_BYTES", 1024 * 1024)

    def _seal_committed(response: Response) -> Response:
        try:
            return seal_response(response)
        except ExchangeError as e:
            from exchange.web.errors import error_response

            return error_response(status=e.status, code=e.code, message=e.message)

    @app.after_request
    def _seal(response: Response) -> Response:
        if envelopes_required(app) and request.path.startswith(API_PREFIX):
            db.after_commit(_seal_committed)
        return response
