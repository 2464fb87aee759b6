"""Partners with real credentials against the released authenticator (OAuth2 + DPoP), through the test client."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.partner.credentials import PartnerKey, client_assertion, dpop_proof
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES

ISSUER = "http://localhost"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Partner:
    """One agency client: its keys, a way to get tokens, and a way to call the API with DPoP proofs."""

    http: FlaskClient
    client_id: str
    agency: str
    scopes: frozenset[str]
    auth_key: PartnerKey
    dpop_key: PartnerKey = field(default_factory=PartnerKey.generate)
    token: str | None = None

    @property
    def purpose(self) -> str:
        return min(PURPOSES[self.agency])

    def token_request(self, *, scope: Iterable[str] | None = None, assertion: str | None = None,
                      proof: str | None = None, form: dict[str, str] | None = None) -> Any:
        data = {
            "grant_type": "client_credentials",
            "scope": " ".join(sorted(self.scopes if scope is None else scope)),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or client_assertion(client_id=self.client_id, issuer=ISSUER,
                                                              key=self.auth_key),
            **(form or {}),
        }
        proof = proof if proof is not None else dpop_proof(key=self.dpop_key, method="POST",
                                                           url=f"{ISSUER}/oauth/token")
        return self.http.post("/oauth/token", data=data, headers={"DPoP": proof})

    def get_token(self, scope: Iterable[str] | None = None) -> str:
        response = self.token_request(scope=scope)
        assert response.status_code == 200, response.get_json()
        self.token = response.get_json()["access_token"]
        return self.token

    def call(self, method: str, path: str, *, purpose: str | None = "", proof: str | None = None,
             scheme: str = "DPoP", headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        token = self.token or self.get_token()
        if proof is None:
            proof = dpop_proof(key=self.dpop_key, method=method, url=f"{ISSUER}{path.split('?')[0]}",
                               access_token=token, purpose=self.purpose if purpose == "" else purpose,
                               officer="TJ-TEST-001")
        all_headers = {"Authorization": f"{scheme} {token}", "DPoP": proof, **(headers or {})}
        return self.http.open(path, method=method, headers=all_headers, **kwargs)


@pytest.fixture
def oauth_app(make_app: Callable[..., Flask]) -> Flask:
    """The app with the released authenticator; tables are emptied by the `app` fixture's teardown."""
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER)


@pytest.fixture
def partner(oauth_app: Flask) -> Callable[..., Partner]:
    """Factory: `partner("border")` registers a client of that agency (all its scopes unless told) and returns it."""
    count = 0

    def make(agency: str, *, scopes: Iterable[str] | None = None, status: str = "active") -> Partner:
        nonlocal count
        count += 1
        key = PartnerKey.generate()
        granted = frozenset(AGENCY_SCOPES[agency] if scopes is None else scopes)
        with Session(oauth_app.extensions["exchange.db"]) as session:
            service = ClientService(session=session)
            client = service.register({"client_id": f"{agency}-{count}", "agency": agency, "name": f"{agency} test",
                                       "scopes": sorted(granted),
                                       "keys": [{"purpose": "auth", "jwk": key.public_jwk}]}, officer="TJ-SEC-1")
            if status != "active":
                service.update(client.client_id, {"status": status, "status_reason": "test"}, if_match=None,
                               officer="TJ-SEC-1")
            session.commit()
        return Partner(http=oauth_app.test_client(), client_id=f"{agency}-{count}", agency=agency, scopes=granted,
                       auth_key=key)

    return make
