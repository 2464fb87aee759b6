"""Outages of a dependency (issue: "an outage answers 503, never 500"): a real PostgreSQL cluster and a real Redis,
each started by these tests on a free port, are stopped under concurrent calls and started again.

While one is down every call that needs it answers 503 with its own code and `Retry-After`, changes nothing, and
is logged as one structured line without a traceback; once it is back the exchange recovers by itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.auth.replay import RedisReplayCache
from exchange.clients.services import ClientService
from exchange.db import db, make_engine
from exchange.identity import Caller
from exchange.partner.credentials import PartnerKey
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from exchange.register.models import Returnee
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import TEST_CALLER_KEY, returnee_body
from tests.dependencies import PgCluster, RedisServer, postgres_cluster, redis_instance, wait_until

PG_VERSION = "15"
INTERIOR = Caller(agency="interior", client_id="interior-1", purpose=min(PURPOSES["interior"]),
                  scopes=frozenset(AGENCY_SCOPES["interior"]))


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    yield from postgres_cluster()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_instance(tmp_path)


def make_partner(app: Flask, agency: str = "interior") -> Partner:
    key = PartnerKey.generate()
    client_id = f"{agency}-{uuid.uuid4().hex[:8]}"
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": client_id, "agency": agency, "name": f"{agency} test",
             "scopes": sorted(AGENCY_SCOPES[agency]), "keys": [{"purpose": "auth", "jwk": key.public_jwk}]},
            officer="TJ-SEC-1")
        session.commit()
    return Partner(http=app.test_client(), client_id=client_id, agency=agency,
                   scopes=frozenset(AGENCY_SCOPES[agency]), auth_key=key)


def assert_unavailable(response: Any, code: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["code"] == code
    assert int(response.headers["Retry-After"]) > 0


def assert_logged_once_per_failure(records: list[logging.LogRecord], code: str, failures: int) -> None:
    """One structured line per failed request, and no traceback anywhere."""
    assert not [r for r in records if r.exc_info or r.exc_text or "Traceback" in r.getMessage()]
    noted = [r for r in records if r.getMessage() == "dependency unavailable"]
    assert all(getattr(r, "code", None) == code for r in noted)
    assert len(noted) == failures
    assert not [r for r in records if r.levelno >= logging.ERROR and r.getMessage() != "dependency unavailable"]


def test_a_postgresql_outage_is_503_database_unavailable_everywhere_and_heals_by_itself(
    pg_cluster: PgCluster, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture,
) -> None:
    oauth_app = make_app(DATABASE_URL=pg_cluster.url, AUTHENTICATOR=None, ISSUER=ISSUER)
    stub_app = make_app(DATABASE_URL=pg_cluster.url)  # its callers need no database: the views meet the outage
    partner = make_partner(oauth_app)
    partner.get_token()
    interior = {"environ_base": {TEST_CALLER_KEY: INTERIOR}}
    stub = stub_app.test_client()
    assert stub.post("/v1/returnees", json=returnee_body(), **interior).status_code == 201
    engine = create_engine(pg_cluster.url)
    try:
        def returnees() -> int:
            with engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(Returnee)).scalar_one())

        before = returnees()
        engine.dispose()
        calls: list[Callable[[], Any]] = [
            lambda: oauth_app.test_client().get("/readyz"),
            lambda: oauth_app.test_client().get("/v1/returnees"),  # unauthenticated: its 401 cannot be audited
            lambda: partner.token_request(),
            lambda: partner.call("GET", "/v1/returnees"),
            lambda: partner.call("POST", "/v1/returnees", json=returnee_body()),
            lambda: stub_app.test_client().get("/v1/returnees", **interior),
            lambda: stub_app.test_client().post("/v1/returnees", json=returnee_body(), **interior),
        ]
        pg_cluster.stop()
        caplog.clear()
        with caplog.at_level(logging.INFO), ThreadPoolExecutor(max_workers=6) as pool:
            responses = list(pool.map(lambda call: call(), calls * 4))
        for response in responses:
            assert_unavailable(response, "database_unavailable")
        assert_logged_once_per_failure(caplog.records, "database_unavailable", len(responses))
        assert oauth_app.test_client().get("/healthz").status_code == 200  # alive, only not ready

        pg_cluster.start()
        wait_until(lambda: oauth_app.test_client().get("/readyz").status_code == 200, "/readyz ready again")
        assert returnees() == before  # fail closed: nothing was half-written during the outage
        assert partner.call("POST", "/v1/returnees", json=returnee_body()).status_code == 201
        assert stub_app.test_client().get("/v1/returnees", **interior).status_code == 200
        assert partner.token_request().status_code == 200
        assert returnees() == before + 1
    finally:
        engine.dispose()


def test_a_redis_outage_is_503_replay_cache_unavailable_and_heals_by_itself(
    redis_server: RedisServer, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(AUTHENTICATOR=None, ISSUER=ISSUER, REDIS_URL=redis_server.url)
    # a cache that has been up for an hour (a brand-new one first warms up, as after the restart below)
    app.extensions["exchange.replay"].client.set(RedisReplayCache.EPOCH_KEY, int(time.time()) - 3600)
    partner = make_partner(app)
    partner.get_token()
    assert partner.call("GET", "/v1/returnees").status_code == 200
    redis_server.stop()
    calls: list[Callable[[], Any]] = [
        lambda: partner.token_request(),
        lambda: partner.call("GET", "/v1/returnees"),
        lambda: partner.call("POST", "/v1/returnees", json=returnee_body()),
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO), ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda call: call(), calls * 4))
    for response in responses:
        assert_unavailable(response, "replay_cache_unavailable")  # fail closed: no call without its replay check
    assert_logged_once_per_failure(caplog.records, "replay_cache_unavailable", len(responses))
    with Session(app.extensions["exchange.db"]) as session:
        assert session.scalar(select(func.count()).select_from(Returnee)) == 0

    redis_server.start()  # empty: it kept nothing
    # Fail closed while the emptied cache warms up (it cannot yet tell a fresh proof from one used before the
    # restart): 503 with Retry-After, which the partner library waits out; then the calls pass again.
    warming = partner.call("GET", "/v1/returnees")
    assert_unavailable(warming, "replay_cache_unavailable")
    assert 1 <= int(warming.headers["Retry-After"]) <= 13
    time.sleep(int(warming.headers["Retry-After"]))
    assert partner.call("POST", "/v1/returnees", json=returnee_body()).status_code == 201
    assert partner.token_request().status_code == 200


def test_an_unreachable_sqlite_file_is_503_database_unavailable_and_heals(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "volume"
    folder.mkdir()
    url = f"sqlite:///{folder / 'exchange.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = make_app(DATABASE_URL=url)
    interior = {"environ_base": {TEST_CALLER_KEY: INTERIOR}}
    client = app.test_client()
    assert client.get("/v1/returnees", **interior).status_code == 200
    folder.rename(tmp_path / "unmounted")  # the volume goes away ...
    app.extensions["exchange.db"].dispose()  # ... and the worker has to open the file again
    caplog.clear()
    with caplog.at_level(logging.INFO):
        responses = [client.get("/v1/returnees", **interior), client.post("/v1/returnees", json=returnee_body(),
                                                                          **interior),
                     client.get("/v1/returnees"), client.get("/readyz")]
    for response in responses:
        assert_unavailable(response, "database_unavailable")
    assert_logged_once_per_failure(caplog.records, "database_unavailable", len(responses))
    (tmp_path / "unmounted").rename(folder)
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/returnees", json=returnee_body(), **interior).status_code == 201


def test_an_outage_after_the_commit_is_never_answered_503(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture,
) -> None:
    """A 503 promises that nothing was stored: a connection lost after the commit (here: in an after-commit step)
    is 500 `response_withheld` (stored; send the same envelope again for its outcome), and the write is there."""
    app = make_app()

    @app.before_request
    def _lose_the_connection_after_the_commit() -> None:
        def fail(_response: Any) -> Any:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

        db.after_commit(fail)

    client = app.test_client()
    with caplog.at_level(logging.INFO):
        response = client.post("/v1/returnees", json=returnee_body(), environ_base={TEST_CALLER_KEY: INTERIOR})
    assert response.status_code == 500
    assert response.get_json()["code"] == "response_withheld"
    assert "Retry-After" not in response.headers
    assert not [r for r in caplog.records if r.exc_info or r.exc_text]
    with Session(app.extensions["exchange.db"]) as session:
        assert session.scalar(select(func.count()).select_from(Returnee)) == 1
