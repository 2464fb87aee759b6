"""Idempotent writes end to end: the client library sends a write's envelope again after a failure between the
commit and the response, and the exchange answers the stored outcome. Whatever fails after the commit, no answer says
that nothing was stored (503), and exactly one record exists after the retry."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from flask import Flask, Response, has_request_context, request
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from exchange import logs
from exchange.audit import recorder
from exchange.audit.models import AuditEntry
from exchange.audit.services import AuditLog
from exchange.clients.services import ClientService
from exchange.envelope import http as envelope_http
from exchange.envelope.models import EnvelopeEvidence, EnvelopeOutcome
from exchange.partner.api import ExchangeClient
from exchange.partner.envelopes import PartnerKeys, PublishedKeys, seal_request
from exchange.protocol.audit_errors import AuditUnavailable
from exchange.register.models import Returnee
from tests.auth.conftest import Partner
from tests.conftest import returnee_body

ISSUER = "http://localhost"


class Recording(httpx.BaseTransport):
    """The app over WSGI, keeping every (status, code) the client library saw."""

    def __init__(self, app: Flask) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.answers: list[tuple[int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.startswith("/v1/"):
            response.read()
            code = response.json().get("code") if response.headers.get("Content-Type") == "application/json" else None
            self.answers.append((response.status_code, code))
        return response


@pytest.fixture
def released_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False)


def register(app: Flask, client_id: str, agency: str = "interior") -> PartnerKeys:
    keys = PartnerKeys.generate()
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": client_id, "agency": agency, "name": "test", "keys": keys.registration(),
             "scopes": ["events:read", "returnees:read", "returnees:write"]}, officer="TJ-SEC-1")
        session.commit()
    return keys


@pytest.fixture
def interior(released_app: Flask) -> Iterator[tuple[ExchangeClient, Recording]]:
    keys = register(released_app, "interior-registry")
    transport = Recording(released_app)
    client = ExchangeClient(ISSUER, client_id="interior-registry", agency="interior", keys=keys,
                            purpose="register-maintenance", transport=transport, sleep=lambda _: None)
    yield client, transport
    client.close()


def counts(app: Flask) -> tuple[int, int, int]:
    with Session(app.extensions["exchange.db"]) as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0  # type: ignore[return-value]
                     for model in (Returnee, EnvelopeEvidence, EnvelopeOutcome))


def once(real: Callable[..., Any], failure: Callable[[], BaseException]) -> Callable[..., Any]:
    """`real`, except that its first call raises `failure()`."""
    calls: list[int] = []

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise failure()
        return real(*args, **kwargs)
    return patched


def lost_connection() -> OperationalError:
    error = OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
    error.connection_invalidated = True
    return error


def inject_settle(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    monkeypatch.setattr(recorder, "deferred", lambda session: True)  # sequenced after the commit, on SQLite too
    monkeypatch.setattr(AuditLog, "settle", once(AuditLog.settle, AuditUnavailable))
    return "audit_pending"


def inject_database_drop(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    """The database goes away between the commit and the sequencing: sequencing fails, and so does the rollback
    before the failure is recorded (the defect: that rollback raised in `request_finished`, Flask ran the hooks
    again and the stored call was answered 503)."""
    monkeypatch.setattr(recorder, "deferred", lambda session: True)
    real_rollback = Session.rollback
    failing = {"rollbacks": 0}

    def rollback(self: Session) -> None:
        if failing["rollbacks"]:
            failing["rollbacks"] -= 1
            raise lost_connection()
        real_rollback(self)

    def settle(self: AuditLog, queued: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(AuditLog, "settle", real_settle)
        failing["rollbacks"] = 3  # every rollback until the failure is recorded, and the teardown's
        raise AuditUnavailable()

    real_settle = AuditLog.settle
    monkeypatch.setattr(Session, "rollback", rollback)
    monkeypatch.setattr(AuditLog, "settle", settle)
    return "audit_pending"


def inject_receipt(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    monkeypatch.setattr(recorder, "deferred", lambda session: True)
    monkeypatch.setattr(recorder, "_with_entry", once(recorder._with_entry, RuntimeError))
    return "response_withheld"


def inject_sealing(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    monkeypatch.setattr(envelope_http, "seal", once(envelope_http.seal, ValueError))
    return "response_withheld"


def inject_commit_answer_lost(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    """The COMMIT is applied, then the connection drops before its answer arrives."""
    real = Session.commit
    calls: list[int] = []

    def commit(self: Session) -> None:
        real(self)
        if has_request_context() and request.path == "/v1/returnees" and not calls:
            calls.append(1)
            raise lost_connection()

    monkeypatch.setattr(Session, "commit", commit)
    return "commit_unknown"


def inject_late_hook(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    """An after-request hook that runs after the commit raises: Flask handles it as a 500 and runs every hook again;
    the audit log is unavailable by then."""
    state = {"raised": False}

    def boom(response: Response) -> Response:
        if not state["raised"] and response.status_code == 201:
            state["raised"] = True
            monkeypatch.setattr(AuditLog, "append", once(AuditLog.append, AuditUnavailable))
            monkeypatch.setattr(AuditLog, "enqueue", once(AuditLog.enqueue, AuditUnavailable))
            raise RuntimeError("late hook")
        return response

    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # as in production (TESTING propagates them)
    app.after_request_funcs.setdefault(None, []).insert(0, boom)  # registered first: runs last, after the commit
    return "response_withheld"


def inject_access_log(monkeypatch: pytest.MonkeyPatch, app: Flask) -> str:
    monkeypatch.setattr(logs.access_log, "info", once(logs.access_log.info, OSError))
    return ""  # a log line that cannot be written changes nothing: the first answer is the outcome


INJECTIONS = [inject_settle, inject_database_drop, inject_receipt, inject_sealing, inject_commit_answer_lost,
              inject_late_hook, inject_access_log]


@pytest.mark.parametrize("inject", INJECTIONS, ids=[f.__name__.removeprefix("inject_") for f in INJECTIONS])
def test_a_failure_after_the_commit_is_never_503_and_the_retry_gets_the_one_stored_record(
    released_app: Flask, interior: tuple[ExchangeClient, Recording], monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch, Flask], str],
) -> None:
    client, transport = interior
    expected = inject(monkeypatch, released_app)
    result = client.returnees.create(returnee_body())
    monkeypatch.undo()
    assert result.status == 201 and result.location and result.etag == '"1"'
    assert all(status != 503 for status, _ in transport.answers), transport.answers
    if expected:
        assert transport.answers == [(500, expected), (201, None)], transport.answers
    else:
        assert transport.answers == [(201, None)]
    assert counts(released_app) == (1, 1, 1), "one record, one envelope, one outcome"
    assert result.location.endswith(result.data["id"])
    got = client.returnees.get(result.data["id"])
    assert got.data["register_number"] == result.data["register_number"]


def test_the_stored_outcome_is_the_first_answer_not_the_current_record(
    released_app: Flask, interior: tuple[ExchangeClient, Recording], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the lost answer and the retry someone changed the record: the retry still gets what the write
    answered (its status, body, ETag and Location), not the record as it is now."""
    client, transport = interior
    real = envelope_http.seal_response
    changed: list[str] = []

    def change_then_fail(response: Response) -> Response:
        if not changed:
            changed.append(json.loads(response.get_data())["id"])
            with Session(released_app.extensions["exchange.db"]) as session:
                returnee = session.get(Returnee, uuid.UUID(changed[0]))
                assert returnee is not None
                returnee.risk_level = "high"
                session.commit()
            raise ValueError("sealing failed")
        return real(response)

    monkeypatch.setattr(envelope_http, "seal_response", change_then_fail)
    result = client.returnees.create(returnee_body())
    assert transport.answers == [(500, "response_withheld"), (201, None)]
    assert (result.status, result.etag, result.data["id"], result.data["version"]) == (201, '"1"', changed[0], 1)
    assert result.data["risk_level"] != "high"
    assert client.returnees.get(changed[0]).etag == '"2"'
    assert counts(released_app) == (1, 1, 1)


# ---- the same envelope sent directly, by several threads at once ---------------------------------------------------


@pytest.fixture
def raw_partner(released_app: Flask) -> tuple[Partner, PartnerKeys]:
    keys = register(released_app, "interior-raw")
    partner = Partner(http=released_app.test_client(), client_id="interior-raw", agency="interior",
                      scopes=frozenset({"returnees:read", "returnees:write"}), auth_key=keys.auth)
    return partner, keys


def sealed_body(app: Flask, keys: PartnerKeys, value: Any) -> bytes:
    enc = app.extensions["exchange.keystore"].active_encryption("envelope-enc")
    published = PublishedKeys(enc=enc.public_key, sign=(), fetched_at=0)
    body, _ = seal_request(agency="interior", keys=keys, exchange=published, method="POST", target="/v1/returnees",
                           value=value, now=int(time.time()))
    return body


def post(partner: Partner, body: bytes) -> Any:
    return partner.call("POST", "/v1/returnees", data=body,
                        content_type="application/vnd.exchange.envelope.v1+json")


def test_the_same_envelope_sent_at_once_by_several_threads_is_stored_once(
    released_app: Flask, raw_partner: tuple[Partner, PartnerKeys],
) -> None:
    partner, keys = raw_partner
    partner.get_token()
    body = sealed_body(released_app, keys, returnee_body())
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: post(partner, body), range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 8, [r.get_json() for r in responses if r.status_code != 201]
    assert len({r.headers["Location"] for r in responses}) == 1
    assert counts(released_app) == (1, 1, 1)
    record_id = responses[0].headers["Location"].rsplit("/", 1)[1]
    with Session(released_app.extensions["exchange.db"]) as session:
        entries = [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf))]
    calls = [e for e in entries if e["path"] == "/v1/returnees"]
    assert sorted(e["action"] for e in calls) == ["collect"] + ["consult"] * 7
    assert all(e["record_ids"] == [record_id] for e in calls), "an answer given again names only the stored record"


def test_another_client_of_the_same_agency_cannot_reuse_the_msg_id(
    released_app: Flask, raw_partner: tuple[Partner, PartnerKeys],
) -> None:
    partner, keys = raw_partner
    body = sealed_body(released_app, keys, returnee_body())
    assert post(partner, body).status_code == 201
    other_keys = register(released_app, "interior-other")
    other = Partner(http=released_app.test_client(), client_id="interior-other", agency="interior",
                    scopes=frozenset({"returnees:read", "returnees:write"}), auth_key=other_keys.auth)
    response = post(other, body)  # signed by the first client's key, which is the agency's too
    assert (response.status_code, response.get_json()["code"]) == (409, "envelope_replayed")
    assert counts(released_app) == (1, 1, 1)


def test_an_envelope_whose_call_stored_nothing_is_carried_out_when_sent_again(
    released_app: Flask, raw_partner: tuple[Partner, PartnerKeys], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first try failed before the commit (503: nothing stored); the same envelope is then carried out, once."""
    partner, keys = raw_partner
    body = sealed_body(released_app, keys, returnee_body())
    partner.get_token()
    monkeypatch.setattr(AuditLog, "enqueue", once(AuditLog.enqueue, AuditUnavailable))
    monkeypatch.setattr(AuditLog, "append", once(AuditLog.append, AuditUnavailable))
    first = post(partner, body)
    assert (first.status_code, first.get_json()["code"]) == (503, "audit_unavailable")
    assert counts(released_app) == (0, 0, 0)
    assert post(partner, body).status_code == 201
    again = post(partner, body)
    assert again.status_code == 201
    assert counts(released_app) == (1, 1, 1)


def test_a_refused_call_keeps_no_outcome(released_app: Flask, raw_partner: tuple[Partner, PartnerKeys]) -> None:
    partner, keys = raw_partner
    body = sealed_body(released_app, keys, {"person_name": {}})
    first = post(partner, body)
    assert (first.status_code, first.get_json()["code"]) == (422, "validation_failed")
    again = post(partner, body)
    assert (again.status_code, again.get_json()["code"]) == (422, "validation_failed")
    assert counts(released_app) == (0, 0, 0)


def test_expired_outcomes_are_purged(
    released_app: Flask, raw_partner: tuple[Partner, PartnerKeys], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    partner, keys = raw_partner
    assert post(partner, sealed_body(released_app, keys, returnee_body())).status_code == 201
    with Session(released_app.extensions["exchange.db"]) as session:
        [kept] = session.scalars(select(EnvelopeOutcome)).all()
        kept_id = kept.msg_id
        session.add(EnvelopeOutcome(sender="interior", msg_id="expired", client_id="x", method="POST", target="/",
                                    plaintext_hash="h", status=201, headers={}, record_ids=[],
                                    expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    monkeypatch.setattr(envelope_http, "OUTCOME_PURGE_PROBABILITY", 1.0)
    assert post(partner, sealed_body(released_app, keys, returnee_body(birth_date="1980-02-02"))).status_code == 201
    with Session(released_app.extensions["exchange.db"]) as session:
        msg_ids = set(session.scalars(select(EnvelopeOutcome.msg_id)))
    assert kept_id in msg_ids and "expired" not in msg_ids and len(msg_ids) == 2
