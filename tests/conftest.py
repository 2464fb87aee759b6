"""Fixtures: one migrated database per test run (SQLite, or PostgreSQL when EXCHANGE_TEST_DATABASE_URL is set),
emptied after every test; an app per test; clients that act as a given agency.

Until the OAuth2 issue lands, the caller is injected through the WSGI environ (`exchange.test_caller`), which no
HTTP client can set: `UnsafeEnvironAuthenticator` exists only here, in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from exchange import create_app
from exchange.db import Base, make_engine
from exchange.identity import Caller
from exchange.keys.master import MasterSecret, new_master_key, unlock
from exchange.keys.ring import key_ring
from exchange.keys.store import FileKeyStore, InMemoryKeyStore
from exchange.protocol.errors import Unauthenticated
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from tests.server import own_database

TEST_CALLER_KEY = "exchange.test_caller"


class UnsafeEnvironAuthenticator:
    """Test-only: takes the caller from the WSGI environ, which a remote client cannot set."""

    def authenticate(self, request: Request) -> Caller:
        caller = request.environ.get(TEST_CALLER_KEY)
        if caller is None:
            raise Unauthenticated()
        assert isinstance(caller, Caller)
        return caller


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for this test run (SQLite, or one on EXCHANGE_TEST_DATABASE_URL's server)."""
    with own_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Factory: an app on the test database; config overrides the test defaults. Engines are closed afterwards."""
    apps: list[Flask] = []
    keystore = InMemoryKeyStore()  # the registry rows are emptied after each test; ensure_all makes new keys

    def make(**config: Any) -> Flask:
        keys_dir = tmp_path / f"keys-{len(apps)}"
        keys_dir.mkdir(mode=0o700)
        defaults = {"TESTING": True, "DATABASE_URL": database_url, "KEYS_DIR": str(keys_dir),
                    "AUTHENTICATOR": UnsafeEnvironAuthenticator(), "KEYSTORE": keystore,
                    # the register's own rules are tested with plain JSON; tests/envelope and the real-server tests
                    # run with envelopes, as production does
                    "UNSAFE_PLAIN_JSON_BODIES": True,
                    # the background checkpointer (witness.md §1) is driven by its own tests (Checkpointer.tick)
                    "AUDIT_BACKGROUND": False,
                    # the limiter runs on every call, with limits no test's loop of calls reaches (a matrix sends
                    # hundreds a second); tests/test_limits.py sets small ones to test it
                    "RATE_LIMIT_PER_SOURCE": "100000/second", "RATE_LIMIT_PER_CLIENT": "100000/second"}
        app = create_app({**defaults, **config})
        key_ring(app).ensure_all()  # what `exchange init` does
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["exchange.db"].dispose()
    engine: Engine = make_engine(database_url)  # every test starts from empty tables
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def master_key() -> str:
    return new_master_key()


@pytest.fixture
def file_keys(tmp_path: Path, master_key: str, monkeypatch: pytest.MonkeyPatch) -> FileKeyStore:
    """A real sealed key store, and the environment that unlocks it for the CLI (EXCHANGE_KEYS_DIR, _MASTER_KEY)."""
    directory = tmp_path / "file-keys"
    store = FileKeyStore(directory, master=unlock(directory, MasterSecret(key=master_key), create=True))
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", str(directory))
    monkeypatch.setenv("EXCHANGE_MASTER_KEY", master_key)
    return store


@pytest.fixture
def file_app(make_app: Callable[..., Flask], file_keys: FileKeyStore) -> Flask:
    """An app whose keys are in `file_keys`, shared with the CLI run in the same test."""
    return make_app(KEYSTORE=file_keys, KEYS_DIR=str(file_keys.directory))


def route_scopes(app: Flask, method: str, path: str) -> frozenset[str]:
    """The scopes the view behind `method path` requires (its `protected` decorator)."""
    endpoint, _ = app.url_map.bind("localhost").match(path.split("?")[0], method=method)
    view = app.view_functions[endpoint]
    handler = getattr(view.view_class, method.lower())  # type: ignore[attr-defined]
    scopes: frozenset[str] = handler.exchange_scopes
    return scopes


def refusal_code(client: AgencyClient, method: str, path: str) -> str:
    """The exact 403 code a refused agency gets: its token lacks the route's scope, or need-to-know refuses it."""
    assert client.caller is not None
    has_scope = client.caller.scopes & route_scopes(client.client.application, method, path)
    return "not_permitted" if has_scope else "insufficient_scope"


class AgencyClient:
    """A test client that calls as one agency."""

    def __init__(self, client: FlaskClient, caller: Caller | None) -> None:
        self.client = client
        self.caller = caller

    def _environ(self) -> dict[str, Any]:
        return {TEST_CALLER_KEY: self.caller} if self.caller else {}

    def open(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.open(path, method=method, environ_base=self._environ(), **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.open("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.open("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.open("DELETE", path, **kwargs)


@pytest.fixture
def as_agency(app: Flask) -> Callable[..., AgencyClient]:
    """Factory: `as_agency("border", officer="TJ-PS-1")` -> a client calling as that agency."""

    def make(agency: str | None, *, officer: str | None = None, scopes: frozenset[str] | None = None,
             purpose: str | None = "") -> AgencyClient:
        """A client with all its agency's scopes and its first purpose of use, unless told otherwise."""
        if agency is None:
            return AgencyClient(app.test_client(), None)
        caller = Caller(
            agency=agency, client_id=f"test-{agency}", officer=officer,
            scopes=AGENCY_SCOPES.get(agency, frozenset()) if scopes is None else scopes,
            purpose=min(PURPOSES.get(agency, {""})) if purpose == "" else purpose,
        )
        return AgencyClient(app.test_client(), caller)

    return make


@pytest.fixture
def interior(as_agency: Callable[..., AgencyClient]) -> AgencyClient:
    return as_agency("interior", officer="TJ-MVD-04411")


@pytest.fixture
def border(as_agency: Callable[..., AgencyClient]) -> AgencyClient:
    return as_agency("border", officer="TJ-PS-017")


@pytest.fixture
def prosecutor(as_agency: Callable[..., AgencyClient]) -> AgencyClient:
    return as_agency("prosecutor", officer="TJ-GP-213")


def returnee_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "person_name": {"given": "Гулмурод", "surname": "Халимов"},
        "name_variants": [{"value": "Gulmurod Khalimov", "script": "latn", "kind": "transliteration"}],
        "birth_date": "1975-05-14",
        "sex": "male",
        "citizenship": "TJ",
        "identifications": [{"category": "passport", "id": "400123456", "issuer_country": "TJ"}],
    }
    body.update(overrides)
    return body


@pytest.fixture
def make_returnee(interior: AgencyClient) -> Callable[..., dict[str, Any]]:
    """Factory: registers a returnee as interior and returns its interior view (with `_etag`)."""

    def make(**overrides: Any) -> dict[str, Any]:
        response = interior.post("/v1/returnees", json=returnee_body(**overrides))
        assert response.status_code == 201, response.get_json()
        data: dict[str, Any] = response.get_json()
        data["_etag"] = response.headers["ETag"]
        return data

    return make
