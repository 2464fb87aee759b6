"""Against a real gunicorn with two workers: the replay caches and revocations are shared by every worker."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import nacl.public
import nacl.signing
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.db import make_engine
from exchange.keys.master import new_master_key
from exchange.keys.models import ExchangeKeyRecord
from exchange.keys.ring import PublishedKey, provision
from exchange.keys.store import FileKeyStore
from exchange.partner.credentials import PartnerKey, client_assertion, dpop_proof
from exchange.protocol.encoding import b64url, b64url_decode_strict
from exchange.protocol.envelope import (
    MEDIA_TYPE,
    EnvelopeHeader,
    RequestRef,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    ed25519_kid,
    open_response,
    seal_json,
)
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from exchange.protocol.replay import InMemoryReplayCache
from tests.conftest import returnee_body
from tests.server import gunicorn

pytestmark = pytest.mark.server
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PARALLEL = 8


@dataclass
class RemotePartner:
    base: str
    client_id: str
    agency: str
    auth_key: PartnerKey
    dpop_key: PartnerKey
    sign_key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    enc_key: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)

    def exchange_key(self, purpose: str) -> dict[str, Any]:
        keys = httpx.get(f"{self.base}/.well-known/jwks.json").json()["keys"]
        key: dict[str, Any] = next(k for k in keys if k["purpose"] == purpose)
        return key

    def seal(self, method: str, path: str, value: Any) -> bytes:
        enc = self.exchange_key("envelope-enc")
        header = EnvelopeHeader.for_request(sender=self.agency, skid=ed25519_kid(self.sign_key.verify_key),
                                            recipient="exchange", rkid=enc["kid"], method=method, target=path)
        sealed = seal_json(header=header, value=value, signing_key=self.sign_key,
                           recipient_key=nacl.public.PublicKey(b64url_decode_strict(enc["x"])))
        self.last_request = RequestRef.of_envelope(sealed)
        return sealed.to_json()

    def open(self, response: httpx.Response, request: RequestRef) -> Any:
        assert response.headers["Content-Type"] == MEDIA_TYPE, response.text
        signer = self.exchange_key("envelope-sign")
        opened = open_response(response.content, request=request, receiver=self.agency,
                               decrypt_keys=decrypt_keyring([self.enc_key]), sender="exchange",
                               sender_keys=StaticSenderKeys([SenderKey(agency="exchange", verify_key=(
                                   nacl.signing.VerifyKey(b64url_decode_strict(signer["x"]))))]),
                               replay=InMemoryReplayCache())
        assert opened.header.audit is not None and opened.header.audit.index >= 0
        return opened.json

    def assertion(self) -> str:
        return client_assertion(client_id=self.client_id, issuer=self.base, key=self.auth_key)

    def token_form(self, assertion: str | None = None) -> dict[str, str]:
        return {"grant_type": "client_credentials", "scope": " ".join(sorted(AGENCY_SCOPES[self.agency])),
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion or self.assertion()}

    def token_proof(self) -> str:
        return dpop_proof(key=self.dpop_key, method="POST", url=f"{self.base}/oauth/token")

    def token(self) -> str:
        response = httpx.post(f"{self.base}/oauth/token", data=self.token_form(),
                              headers={"DPoP": self.token_proof()})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def api_headers(self, token: str, method: str, path: str) -> dict[str, str]:
        proof = dpop_proof(key=self.dpop_key, method=method, url=f"{self.base}{path}", access_token=token,
                           purpose=min(PURPOSES[self.agency]))
        return {"Authorization": f"DPoP {token}", "DPoP": proof}


@dataclass(frozen=True)
class ServerKeys:
    store: FileKeyStore
    registry: tuple[PublishedKey, ...]


@pytest.fixture(scope="module")
def server_keys(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> ServerKeys:
    keys_dir = tmp_path_factory.mktemp("server-keys")
    engine = make_engine(database_url)
    ring = provision(keys_dir, engine, master_key=new_master_key())
    registry = ring.snapshot(refresh=True).keys
    engine.dispose()
    assert isinstance(ring.store, FileKeyStore)
    return ServerKeys(store=ring.store, registry=registry)


@pytest.fixture(scope="module")
def server(database_url: str, server_keys: ServerKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    master_key = base64.b64encode(server_keys.store._master_key().kek).decode()
    with gunicorn(database_url=database_url, keys_dir=server_keys.store.directory, master_key=master_key, workers=2,
                  log=tmp_path_factory.mktemp("log") / "gunicorn.log") as base:
        yield base


@pytest.fixture
def remote(server: str, server_keys: ServerKeys, database_url: str, make_app: Any) -> Callable[[str], RemotePartner]:
    # Each test ends with empty tables (make_app's teardown): put the server's key registry back as it was, so
    # that its workers keep signing and verifying with the keys they know.
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        if session.scalar(select(func.count()).select_from(ExchangeKeyRecord)) == 0:
            session.add_all(ExchangeKeyRecord(kid=k.kid, purpose=k.purpose, algorithm=k.algorithm, x=k.x,
                                              created_at=k.created_at, activate_at=k.activate_at)
                            for k in server_keys.registry)
    engine.dispose()
    make_app(KEYSTORE=server_keys.store)  # its teardown empties the tables after the test
    count = 0

    def make(agency: str) -> RemotePartner:
        nonlocal count
        count += 1
        partner = RemotePartner(base=server, client_id=f"{agency}-remote-{count}", agency=agency,
                                auth_key=PartnerKey.generate(), dpop_key=PartnerKey.generate())
        engine = make_engine(database_url)
        with Session(engine) as session:
            ClientService(session=session).register(
                {"client_id": partner.client_id, "agency": agency, "name": "remote test",
                 "scopes": sorted(AGENCY_SCOPES[agency]),
                 "keys": [{"purpose": "auth", "jwk": partner.auth_key.public_jwk},
                          {"purpose": "sign", "jwk": {"kty": "OKP", "crv": "Ed25519",
                                                      "x": b64url(bytes(partner.sign_key.verify_key))}},
                          {"purpose": "enc", "jwk": {"kty": "OKP", "crv": "X25519",
                                                     "x": b64url(bytes(partner.enc_key.public_key))}}]},
                officer="TJ-SEC-1")
            session.commit()
        engine.dispose()
        return partner

    return make


def in_parallel(send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the same request from PARALLEL threads at once, each on its own connection (so both workers serve)."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda _: send(), range(PARALLEL)))


def test_token_and_enveloped_calls_over_http(remote: Callable[[str], RemotePartner]) -> None:
    interior = remote("interior")
    token = interior.token()
    body = interior.seal("POST", "/v1/returnees", returnee_body())
    created = httpx.post(f"{interior.base}/v1/returnees", content=body,
                         headers={**interior.api_headers(token, "POST", "/v1/returnees"), "Content-Type": MEDIA_TYPE})
    assert created.status_code == 201, created.text
    assert interior.open(created, interior.last_request)["status"] == "reported"
    headers = interior.api_headers(token, "GET", "/v1/returnees")
    listed = httpx.get(f"{interior.base}/v1/returnees", headers=headers)
    request = RequestRef.of_proof(headers["DPoP"], method="GET", target="/v1/returnees")
    assert listed.status_code == 200 and interior.open(listed, request)["total"] == 1
    plain = httpx.post(f"{interior.base}/v1/returnees", json=returnee_body(),
                       headers=interior.api_headers(token, "POST", "/v1/returnees"))
    assert (plain.status_code, plain.json()["code"]) == (415, "unsupported_media_type")


def test_a_dpop_proof_is_accepted_once_across_workers(remote: Callable[[str], RemotePartner]) -> None:
    interior = remote("interior")
    token = interior.token()
    headers = interior.api_headers(token, "GET", "/v1/returnees")
    responses = in_parallel(lambda: httpx.get(f"{interior.base}/v1/returnees", headers=headers))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [401] * (PARALLEL - 1), [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 401} == {"dpop_replay"}


def test_a_client_assertion_is_accepted_once_across_workers(remote: Callable[[str], RemotePartner]) -> None:
    border = remote("border")
    assertion = border.assertion()
    responses = in_parallel(lambda: httpx.post(f"{border.base}/oauth/token", data=border.token_form(assertion),
                                               headers={"DPoP": border.token_proof()}))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [401] * (PARALLEL - 1), [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 401} == {"invalid_client"}


def test_a_revoked_token_fails_on_every_worker_at_once(remote: Callable[[str], RemotePartner]) -> None:
    prosecutor = remote("prosecutor")
    token = prosecutor.token()
    ok = httpx.get(f"{prosecutor.base}/v1/returnees", headers=prosecutor.api_headers(token, "GET", "/v1/returnees"))
    assert ok.status_code == 200
    revoked = httpx.post(f"{prosecutor.base}/oauth/revoke",
                         data={"token": token, "client_assertion_type": ASSERTION_TYPE,
                               "client_assertion": prosecutor.assertion()})
    assert revoked.status_code == 200, revoked.text
    responses = in_parallel(lambda: httpx.get(f"{prosecutor.base}/v1/returnees",
                                              headers=prosecutor.api_headers(token, "GET", "/v1/returnees")))
    assert {(r.status_code, r.json()["code"]) for r in responses} == {(401, "invalid_token")}
