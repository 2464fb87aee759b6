"""Envelopes on the wire: every receiver check refuses with its exact code, stores nothing, and is audited."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nacl.public
import nacl.signing
import pytest
from flask import Flask
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.clients.services import ClientService
from exchange.envelope.models import EnvelopeEvidence
from exchange.keys.ring import key_ring
from exchange.partner.envelopes import PartnerKeys
from exchange.protocol.envelope import (
    MEDIA_TYPE,
    EnvelopeHeader,
    SealedEnvelope,
    ed25519_kid,
    seal,
    seal_json,
    unsafe_seal_raw,
    x25519_kid,
)
from exchange.register.models import Returnee
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import returnee_body

PATH = "/v1/returnees"


@dataclass
class Sender:
    partner: Partner
    keys: PartnerKeys
    exchange_enc: nacl.public.PublicKey
    exchange_rkid: str

    def header(self, **overrides: Any) -> EnvelopeHeader:
        fields: dict[str, Any] = {"sender": "interior", "skid": ed25519_kid(self.keys.signing_key.verify_key),
                                  "recipient": "exchange", "rkid": self.exchange_rkid, "method": "POST",
                                  "target": PATH}
        fields.update(overrides)
        return EnvelopeHeader.for_request(**fields)

    def sealed(self, value: Any = None, **overrides: Any) -> SealedEnvelope:
        return seal_json(header=self.header(**overrides), value=returnee_body() if value is None else value,
                         signing_key=self.keys.signing_key, recipient_key=self.exchange_enc)

    def post(self, body: bytes, content_type: str = MEDIA_TYPE) -> Any:
        return self.partner.call("POST", PATH, data=body, content_type=content_type)


@pytest.fixture
def enveloped_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False, ENVELOPE_MAX_BYTES=64 * 1024)


@pytest.fixture
def sender(enveloped_app: Flask) -> Iterator[Sender]:
    keys = PartnerKeys.generate()
    with Session(enveloped_app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": "interior-registry", "agency": "interior", "name": "registry", "keys": keys.registration(),
             "scopes": ["returnees:read", "returnees:write"]}, officer="TJ-SEC-1")
        session.commit()
    enc = key_ring(enveloped_app).active_encryption("envelope-enc")
    partner = Partner(http=enveloped_app.test_client(), client_id="interior-registry", agency="interior",
                      scopes=frozenset({"returnees:read", "returnees:write"}), auth_key=keys.auth)
    yield Sender(partner=partner, keys=keys, exchange_enc=enc.public_key, exchange_rkid=enc.kid)


def stored(app: Flask) -> tuple[int, int]:
    with Session(app.extensions["exchange.db"]) as session:
        return (session.scalar(select(func.count()).select_from(Returnee)) or 0,
                session.scalar(select(func.count()).select_from(EnvelopeEvidence)) or 0)


def last_entry(app: Flask) -> dict[str, Any]:
    with Session(app.extensions["exchange.db"]) as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.idx.desc())).first()
        assert entry is not None
        return dict(json.loads(entry.leaf))


def flip(text: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_sealed_request_is_accepted_with_evidence_and_a_sealed_audited_reply(
    sender: Sender, enveloped_app: Flask
) -> None:
    request_header = sender.header()
    sealed = seal_json(header=request_header, value=returnee_body(), signing_key=sender.keys.signing_key,
                       recipient_key=sender.exchange_enc)
    response = sender.post(sealed.to_json())
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.mimetype == MEDIA_TYPE
    reply = json.loads(response.get_data())
    header = json.loads(base64.urlsafe_b64decode(reply["protected"] + "=="))
    assert header["reply_to"] == request_header.msg_id and header["recipient"] == "interior"
    assert header["audit"]["index"] == int(response.headers["Audit-Index"])
    assert stored(enveloped_app) == (1, 1)
    entry = last_entry(enveloped_app)
    assert entry["envelope"]["msg_id"] == request_header.msg_id and entry["action"] == "collect"
    with Session(enveloped_app.extensions["exchange.db"]) as session:
        evidence = session.scalars(select(EnvelopeEvidence)).one()
    assert evidence.protected == sealed.protected
    assert b"Gulmurod" not in evidence.sealed_plaintext and "Гулмурод".encode() not in evidence.sealed_plaintext
    storage = key_ring(enveloped_app).active_secret()
    assert json.loads(storage.open(evidence.sealed_plaintext))["person_name"]["given"] == "Гулмурод"


def test_an_enveloped_write_is_stored_in_one_commit(sender: Sender, enveloped_app: Flask) -> None:
    commits = []
    engine = enveloped_app.extensions["exchange.db"]

    def count(_connection: Any) -> None:
        commits.append(1)

    sender.partner.get_token()
    event.listen(engine, "commit", count)
    try:
        response = sender.post(sender.sealed().to_json())
    finally:
        event.remove(engine, "commit", count)
    assert response.status_code == 201, response.get_data(as_text=True)
    # the returnee, the envelope's evidence and outcome, the DPoP proof's claim and the audit entry together: the
    # msg_id is the evidence's key (the replay cache is not written), the proof is claimed in the call's transaction
    # (on PostgreSQL the queued entry is then sequenced in a transaction of its own, outside the session)
    assert len(commits) == 1
    assert stored(enveloped_app) == (1, 1)


def defect_bodies(s: Sender, app: Flask) -> dict[str, tuple[Callable[[], bytes], int, str]]:
    stranger = nacl.signing.SigningKey.generate()
    other_enc = nacl.public.PrivateKey.generate().public_key

    def tampered_ciphertext() -> bytes:
        sealed = s.sealed()
        return SealedEnvelope(protected=sealed.protected, ciphertext=flip(sealed.ciphertext, 40)).to_json()

    def tampered_header() -> bytes:
        sealed = s.sealed()
        header = json.loads(base64.urlsafe_b64decode(sealed.protected + "=="))
        header["msg_id"] = "A" * 22
        forged = base64.urlsafe_b64encode(json.dumps(header, separators=(",", ":")).encode()).rstrip(b"=").decode()
        return SealedEnvelope(protected=forged, ciphertext=sealed.ciphertext).to_json()

    def raw(header: dict[str, Any], recipient_key: nacl.public.PublicKey | None = None) -> bytes:
        return unsafe_seal_raw(header_bytes=json.dumps(header).encode(), plaintext=b"{}",
                               signing_key=s.keys.signing_key,
                               recipient_key=recipient_key or s.exchange_enc).to_json()

    def forwarded() -> bytes:
        # signed by interior for the border, then re-sealed to the exchange by the border: the signed header
        # still names the border as recipient
        return seal(header=s.header(recipient="border"), plaintext=json.dumps(returnee_body()).encode(),
                    signing_key=s.keys.signing_key, recipient_key=s.exchange_enc).to_json()

    good = s.header().to_dict()
    return {
        "tampered ciphertext": (tampered_ciphertext, 400, "envelope_undecryptable"),
        "tampered header": (tampered_header, 401, "envelope_bad_signature"),
        "wrong recipient key": (lambda: raw({**good, "rkid": x25519_kid(other_enc)}), 400,
                                "envelope_wrong_recipient"),
        "sealed to another key": (lambda: raw(good, other_enc), 400, "envelope_undecryptable"),
        "forwarded": (forwarded, 400, "envelope_wrong_recipient"),
        "another endpoint": (lambda: s.sealed(target="/v1/hotline-contacts").to_json(), 400, "envelope_misdirected"),
        "another method": (lambda: s.sealed(method="PATCH").to_json(), 400, "envelope_misdirected"),
        "expired": (lambda: s.sealed(now=int(time.time()) - 1000).to_json(), 400, "envelope_expired"),
        "from the future": (lambda: s.sealed(now=int(time.time()) + 600).to_json(), 400, "envelope_expired"),
        "sender is not the token's agency": (lambda: s.sealed(sender="border").to_json(), 403,
                                             "envelope_sender_mismatch"),
        "unknown signing key": (lambda: seal_json(header=s.header(skid=ed25519_kid(stranger.verify_key)), value={},
                                                  signing_key=stranger, recipient_key=s.exchange_enc).to_json(),
                                401, "unknown_key"),
        "unknown v": (lambda: raw({**good, "v": 2}), 400, "envelope_unsupported"),
        "unknown suite": (lambda: raw({**good, "suite": "rsa+aes"}), 400, "envelope_unsupported"),
        "malformed base64": (lambda: b'{"protected": "%%%", "ciphertext": "AAAA"}', 400, "envelope_malformed"),
        "malformed JSON": (lambda: b'{"protected": ', 400, "envelope_malformed"),
        "extra member": (lambda: json.dumps({**json.loads(s.sealed().to_json()), "x": 1}).encode(), 400,
                         "envelope_malformed"),
        "oversized": (lambda: s.sealed(value={**returnee_body(), "birth_place": "x" * 70_000}).to_json(), 413,
                      "envelope_too_large"),
        "content not a returnee": (lambda: s.sealed(value={"nickname": "x"}).to_json(), 422, "validation_failed"),
    }


DEFECTS = ["tampered ciphertext", "tampered header", "wrong recipient key", "sealed to another key", "forwarded",
           "another endpoint", "another method", "expired", "from the future", "sender is not the token's agency",
           "unknown signing key", "unknown v", "unknown suite", "malformed base64", "malformed JSON", "extra member",
           "oversized", "content not a returnee"]


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_receiver_check_refuses_stores_nothing_and_is_audited(
    sender: Sender, enveloped_app: Flask, defect: str
) -> None:
    build, status, code = defect_bodies(sender, enveloped_app)[defect]
    response = sender.post(build())
    body = response.get_json()
    assert (response.status_code, body["code"]) == (status, code), body
    assert response.mimetype == "application/json"  # errors are never enveloped
    assert stored(enveloped_app) == (0, 0)
    entry = last_entry(enveloped_app)
    assert (entry["outcome"], entry["reason"], entry["status"]) == ("failure", code, status)
    if code != "validation_failed":  # only an envelope that passed checks 1-10 leaves its evidence in the entry
        assert entry.get("envelope") is None


def test_the_same_envelope_again_gets_the_stored_outcome_and_stores_nothing_more(
    sender: Sender, enveloped_app: Flask
) -> None:
    body = sender.sealed().to_json()
    first = sender.post(body)
    assert first.status_code == 201
    again = sender.post(body)
    assert again.status_code == 201 and again.mimetype == MEDIA_TYPE
    assert (again.headers["Location"], again.headers["ETag"]) == (first.headers["Location"], first.headers["ETag"])
    assert again.headers["Audit-Index"] != first.headers["Audit-Index"], "a fresh answer, audited on its own"
    assert stored(enveloped_app) == (1, 1)
    entry = last_entry(enveloped_app)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("consult", "success", 201)
    assert entry["record_ids"] == [first.headers["Location"].rsplit("/", 1)[1]]


def test_a_msg_id_used_for_another_request_is_409(sender: Sender, enveloped_app: Flask) -> None:
    header = sender.header()
    assert sender.post(sender.sealed(msg_id=header.msg_id).to_json()).status_code == 201
    other = sender.sealed(returnee_body(birth_date="1980-01-01"), msg_id=header.msg_id).to_json()
    response = sender.post(other)
    assert (response.status_code, response.get_json()["code"]) == (409, "envelope_replayed")
    assert stored(enveloped_app) == (1, 1)


def test_revoked_signing_key_fails_the_very_next_request(sender: Sender, enveloped_app: Flask) -> None:
    assert sender.post(sender.sealed().to_json()).status_code == 201
    with Session(enveloped_app.extensions["exchange.db"]) as session:
        ClientService(session=session).revoke_key("interior-registry", ed25519_kid(sender.keys.signing_key.verify_key),
                                                 reason="laptop lost")
        session.commit()
    response = sender.post(sender.sealed().to_json())
    assert (response.status_code, response.get_json()["code"]) == (401, "key_revoked")
    assert stored(enveloped_app) == (1, 1)


def test_plain_json_is_refused(sender: Sender, enveloped_app: Flask) -> None:
    response = sender.post(json.dumps(returnee_body()).encode(), content_type="application/json")
    assert (response.status_code, response.get_json()["code"]) == (415, "unsupported_media_type")
    assert stored(enveloped_app) == (0, 0)


def test_a_client_without_an_enc_key_is_refused_before_anything_runs(enveloped_app: Flask) -> None:
    keys = PartnerKeys.generate()
    with Session(enveloped_app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": "interior-lonely", "agency": "interior", "name": "no enc key", "scopes": ["returnees:read"],
             "keys": [{"purpose": "auth", "jwk": keys.auth.public_jwk}]}, officer="TJ-SEC-1")
        session.commit()
    lonely = Partner(http=enveloped_app.test_client(), client_id="interior-lonely", agency="interior",
                     scopes=frozenset({"returnees:read"}), auth_key=keys.auth)
    response = lonely.call("GET", PATH)
    assert (response.status_code, response.get_json()["code"]) == (400, "no_encryption_key")
