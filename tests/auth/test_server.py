"""Against a real gunicorn with two workers: the replay caches and revocations are shared by every worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from exchange.auth.policy import AGENCY_SCOPES, PURPOSES
from exchange.client.credentials import PartnerKey, client_assertion, dpop_proof
from exchange.clients.services import ClientService
from exchange.db import make_engine
from exchange.keys.store import PURPOSES as KEY_PURPOSES
from exchange.keys.store import FileKeyStore
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


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    keys_dir = tmp_path_factory.mktemp("server-keys")
    store = FileKeyStore(keys_dir)
    for purpose in KEY_PURPOSES:
        store.ensure(purpose)
    with gunicorn(database_url=database_url, keys_dir=keys_dir, workers=2,
                  log=tmp_path_factory.mktemp("log") / "gunicorn.log") as base:
        yield base


@pytest.fixture
def remote(server: str, database_url: str, make_app: Any) -> Callable[[str], RemotePartner]:
    make_app()  # its teardown empties the tables after the test
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
                 "keys": [{"purpose": "auth", "jwk": partner.auth_key.public_jwk}]}, officer="TJ-SEC-1")
            session.commit()
        engine.dispose()
        return partner

    return make


def in_parallel(send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the same request from PARALLEL threads at once, each on its own connection (so both workers serve)."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda _: send(), range(PARALLEL)))


def test_token_and_authorised_calls_over_http(remote: Callable[[str], RemotePartner]) -> None:
    interior = remote("interior")
    token = interior.token()
    created = httpx.post(f"{interior.base}/v1/returnees", json=returnee_body(),
                         headers=interior.api_headers(token, "POST", "/v1/returnees"))
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{interior.base}/v1/returnees", headers=interior.api_headers(token, "GET", "/v1/returnees"))
    assert listed.status_code == 200 and listed.json()["total"] == 1


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
