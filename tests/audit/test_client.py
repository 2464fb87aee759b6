"""The client library checks its own entry against a checkpoint, and the log's consistency over time, over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask

from exchange.audit import recorder
from exchange.identity import Caller
from exchange.protocol import merkle
from exchange.protocol.audit_errors import InvalidCheckpoint, InvalidProof, VerificationError
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.policy import AGENCY_SCOPES
from exchange.protocol.receipts import EntryReceipt, check_entry
from tests.audit.conftest import fill, rewind, stored_leaves
from tests.conftest import TEST_CALLER_KEY, AgencyClient, returnee_body

BASE = "http://exchange.test"


@pytest.fixture
def http(app: Flask) -> Iterator[httpx.Client]:
    """An HTTP client calling the app as an auditor (the caller goes in through the WSGI environ, as in every test)."""
    caller = Caller(agency="auditor", client_id="test-auditor", purpose="oversight",
                    scopes=AGENCY_SCOPES["auditor"])

    def as_auditor(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[TEST_CALLER_KEY] = caller
        result: Iterable[bytes] = app.wsgi_app(environ, start_response)
        return result

    with httpx.Client(transport=httpx.WSGITransport(app=as_auditor)) as client:
        yield client


def test_own_entry_is_included_and_the_log_only_grows(app: Flask, http: httpx.Client,
                                                       interior: AgencyClient) -> None:
    fill(app, 9)
    response = interior.post("/v1/returnees", json=returnee_body())
    receipt = EntryReceipt.from_headers(response.headers)
    assert receipt.index == 9
    verifiers, origin = recorder.verifiers(app), recorder.origin(app)
    first = check_entry(http, BASE, receipt, verifiers=verifiers, origin=origin)
    assert first.size == 10
    fill(app, 30, start=100)
    later = interior.get("/v1/returnees")
    second = check_entry(http, BASE, EntryReceipt.from_headers(later.headers), verifiers=verifiers, origin=origin,
                         kept=first)
    assert second.size > first.size
    assert check_entry(http, BASE, receipt, verifiers=verifiers, origin=origin, kept=second).size > second.size

    with pytest.raises(InvalidProof):
        check_entry(http, BASE, EntryReceipt(index=9, leaf_hash=bytes(32)), verifiers=verifiers, origin=origin)
    with pytest.raises(InvalidCheckpoint):
        check_entry(http, BASE, receipt, verifiers=[NoteVerifier(name=origin, public_key=bytes(32))], origin=origin)
    with pytest.raises(VerificationError, match="not in the latest checkpoint"):
        check_entry(http, BASE, EntryReceipt(index=10_000, leaf_hash=bytes(32)), verifiers=verifiers, origin=origin)
    with pytest.raises(VerificationError, match="names no audit entry"):
        EntryReceipt.from_headers({})


def test_a_rewritten_log_is_caught_against_the_kept_checkpoint(app: Flask, http: httpx.Client) -> None:
    fill(app, 20)
    verifiers, origin = recorder.verifiers(app), recorder.origin(app)
    receipt = EntryReceipt(index=3, leaf_hash=merkle.leaf_hash(stored_leaves(app)[3]))
    kept = check_entry(http, BASE, receipt, verifiers=verifiers, origin=origin)
    rewind(app, 12)  # the server rolls back to 12 entries ...
    with pytest.raises(VerificationError, match="shrank"):
        check_entry(http, BASE, receipt, verifiers=verifiers, origin=origin, kept=kept)
    fill(app, 30, start=500)  # ... and grows a different history past the kept size, signed again
    with pytest.raises(InvalidProof):
        check_entry(http, BASE, receipt, verifiers=verifiers, origin=origin, kept=kept)


def test_callers_without_the_audit_scope_are_refused(app: Flask) -> None:
    fill(app, 2)
    with httpx.Client(transport=httpx.WSGITransport(app=app.wsgi_app)) as anonymous, \
            pytest.raises(VerificationError, match="401 unauthenticated"):
        check_entry(anonymous, BASE, EntryReceipt(index=0, leaf_hash=bytes(32)), verifiers=recorder.verifiers(app),
                    origin=recorder.origin(app))
