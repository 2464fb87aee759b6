"""A partner checks that the exchange recorded its own calls: `GET /v1/audit/receipts/{index}` and the client
library's `exchange.audit.verify`, against the released app (tokens, DPoP, envelopes) over `httpx.WSGITransport`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.partner.api import ExchangeClient
from exchange.partner.envelopes import PartnerKeys
from exchange.partner.errors import ExchangeClientError, ResponseVerificationError
from exchange.protocol.checkpoint import Checkpoint, SignedCheckpoint
from exchange.protocol.encoding import b64url
from exchange.protocol.envelope import AuditReceipt
from tests.conftest import returnee_body

ISSUER = "http://localhost"


@pytest.fixture
def released_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False)


@pytest.fixture
def connect(released_app: Flask) -> Iterator[Callable[[str], ExchangeClient]]:
    clients: list[ExchangeClient] = []

    def make(agency: str) -> ExchangeClient:
        keys = PartnerKeys.generate()
        client_id = f"{agency}-{len(clients) + 1}"
        with Session(released_app.extensions["exchange.db"]) as session:
            ClientService(session=session).register(
                {"client_id": client_id, "agency": agency, "name": f"{agency} test",
                 "scopes": sorted(_scopes(agency)), "keys": keys.registration()}, officer="TJ-SEC-1")
            session.commit()
        client = ExchangeClient(ISSUER, client_id=client_id, agency=agency, keys=keys,
                                purpose=min(_purposes(agency)), transport=httpx.WSGITransport(app=released_app))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _scopes(agency: str) -> frozenset[str]:
    from exchange.protocol.policy import AGENCY_SCOPES

    return AGENCY_SCOPES[agency]


def _purposes(agency: str) -> frozenset[str]:
    from exchange.protocol.policy import PURPOSES

    return PURPOSES[agency]


def _leaf_hash(leaf: bytes) -> str:
    return b64url(hashlib.sha256(b"\x00" + leaf).digest())


def test_a_partner_verifies_its_own_entry_and_that_the_log_only_grew(
        connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None

    first = interior.audit.verify(created.audit)
    assert first.size > created.audit.index

    # later calls; the next check proves the entry of the read and the consistency with the kept checkpoint
    for _ in range(3):
        read = interior.returnees.get(created.data["id"])
    assert read.audit is not None
    second = interior.audit.verify(read.audit)
    assert second.size > first.size > 0
    # an explicitly kept checkpoint works the same (e.g. one stored by another process of the agency)
    assert interior.audit.verify(created.audit, kept=first).size >= second.size


def test_the_receipt_endpoint_answers_hashes_only_and_is_itself_audited(
        connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    answer = interior.call("GET", f"/v1/audit/receipts/{created.audit.index}")
    assert set(answer.data) == {"index", "leaf_hash", "checkpoint", "size", "inclusion"}  # no kept checkpoint named
    assert answer.data["leaf_hash"] == created.audit.leaf_hash
    assert "Халимов" not in str(answer.data) and "Gulmurod" not in str(answer.data)
    assert answer.audit is not None and answer.audit.index > created.audit.index  # the proof request has its entry


def test_another_agencys_entry_is_not_found(connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    border = connect("border")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    with pytest.raises(ExchangeClientError) as refused:
        border.call("GET", f"/v1/audit/receipts/{created.audit.index}")
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    with pytest.raises(ExchangeClientError) as missing:
        interior.call("GET", "/v1/audit/receipts/999999")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_a_kept_checkpoint_beyond_the_log_is_refused(connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    with pytest.raises(ExchangeClientError) as refused:
        interior.call("GET", f"/v1/audit/receipts/{created.audit.index}", params={"since": 10_000})
    assert (refused.value.status, refused.value.code) == (422, "validation_failed")


def test_a_receipt_that_is_not_in_the_log_fails_verification(connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    forged = AuditReceipt(index=created.audit.index, leaf_hash=_leaf_hash(b'{"forged":true}'))
    with pytest.raises(ResponseVerificationError) as failed:
        interior.audit.verify(forged)
    assert failed.value.code == "audit_proof_invalid"


def test_a_forked_kept_checkpoint_fails_verification(connect: Callable[[str], ExchangeClient]) -> None:
    """A client that kept a checkpoint of another history (a fork shown to it earlier) must notice."""
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    kept = interior.audit.verify(created.audit)
    forked_root = hashlib.sha256(b"another history").digest()
    fork = SignedCheckpoint(checkpoint=Checkpoint(origin=kept.checkpoint.origin, size=kept.size, root=forked_root),
                            note=kept.note)
    interior.returnees.get(created.data["id"])
    with pytest.raises(ResponseVerificationError) as failed:
        interior.audit.verify(created.audit, kept=fork)
    assert failed.value.code == "audit_proof_invalid"
    # the client keeps the last checkpoint it verified, not the one that failed
    assert interior._connection.kept_checkpoint == kept


def test_a_kept_checkpoint_of_another_log_fails_verification(connect: Callable[[str], ExchangeClient]) -> None:
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    kept = interior.audit.verify(created.audit)
    elsewhere = SignedCheckpoint(checkpoint=Checkpoint(origin="other.example/log", size=kept.size, root=kept.root),
                                 note=kept.note)
    with pytest.raises(ResponseVerificationError) as failed:
        interior.audit.verify(created.audit, kept=elsewhere)
    assert failed.value.code == "audit_proof_invalid"


def test_no_proof_against_a_checkpoint_the_witnesses_have_not_cosigned_yet(
    released_app: Flask, connect: Callable[[str], ExchangeClient]
) -> None:
    """With witnesses, a partner that requires their quorum could not accept a proof against a checkpoint without
    it: the answer is 409 `checkpoint_pending` (come back), never a proof that fails its verification."""
    interior = connect("interior").using(purpose="register-maintenance")
    created = interior.returnees.create(returnee_body())
    assert created.audit is not None
    released_app.config["AUDIT_SERVE_COSIGNATURES"] = 2  # witnesses awaited; none has cosigned anything yet
    with pytest.raises(ExchangeClientError) as pending:
        interior.call("GET", f"/v1/audit/receipts/{created.audit.index}")
    assert (pending.value.status, pending.value.code) == (409, "checkpoint_pending")
    released_app.config["AUDIT_SERVE_COSIGNATURES"] = 0  # no witnesses: the latest checkpoint, signed on demand
    answer = interior.call("GET", f"/v1/audit/receipts/{created.audit.index}")
    assert answer.status == 200 and answer.data["size"] > created.audit.index
