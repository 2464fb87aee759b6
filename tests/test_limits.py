"""Rate limits: per source address before any work, per client once it is known; 429 `rate_limited` with
`Retry-After`; a flood is audited as one entry per limit, key and window, not one per request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.config import from_environment
from exchange.identity import Caller
from exchange.protocol.errors import Unauthenticated
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from tests.auth.conftest import ISSUER
from tests.conftest import TEST_CALLER_KEY
from tests.dependencies import RedisServer, redis_instance

INTERIOR = Caller(agency="interior", client_id="interior-1", purpose=min(PURPOSES["interior"]),
                  scopes=frozenset(AGENCY_SCOPES["interior"]))


class CountingRefuser:
    """An authenticator that refuses everyone, counting how often it was asked (token verification's stand-in)."""

    def __init__(self) -> None:
        self.calls = 0

    def authenticate(self, request: Request) -> Caller:
        self.calls += 1
        raise Unauthenticated("forged")


def entries(app: Flask) -> list[dict[str, Any]]:
    with Session(app.extensions["exchange.db"]) as session:
        return [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx))]


def assert_rate_limited(response: Any, window_seconds: int = 60) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.get_json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds


def test_a_forged_token_flood_from_one_source_is_refused_before_verification_and_audited_once(
    make_app: Callable[..., Flask],
) -> None:
    refuser = CountingRefuser()
    app = make_app(AUTHENTICATOR=refuser, RATE_LIMIT_PER_SOURCE="5/minute")
    client = app.test_client()
    responses = [client.get("/v1/returnees", headers={"Authorization": "DPoP forged"}) for _ in range(40)]
    assert [r.status_code for r in responses[:5]] == [401] * 5
    for response in responses[5:]:
        assert_rate_limited(response)
    assert refuser.calls == 5  # the 35 refused were stopped before any token was looked at
    logged = entries(app)
    assert [e["reason"] for e in logged] == ["unauthenticated"] * 5 + ["rate_limited"]
    denial = logged[-1]
    assert (denial["action"], denial["outcome"], denial["status"], denial["source_ip"]) == (
        "deny", "failure", 429, "127.0.0.1")
    assert denial["request_id"] == responses[5].headers["X-Request-ID"]  # the window's first refusal

    # another source is not affected; /healthz is never limited
    other = client.get("/v1/returnees", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 401
    assert client.get("/healthz").status_code == 200
    assert len(entries(app)) == 7


def test_unknown_paths_and_the_token_endpoint_count_against_the_source(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTHENTICATOR=None, ISSUER=ISSUER, RATE_LIMIT_PER_SOURCE="3/minute")
    client = app.test_client()
    codes = [client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code for _ in range(3)]
    assert 429 not in codes
    assert_rate_limited(client.post("/oauth/token", data={"grant_type": "client_credentials"}))
    assert_rate_limited(client.get("/v1/no-such-thing", headers={"Authorization": "DPoP forged"}))
    assert_rate_limited(client.get("/readyz"))
    refused = [e for e in entries(app) if e["reason"] == "rate_limited"]
    assert len(refused) == 1 and refused[0]["path"] == "/oauth/token"


def test_a_client_over_its_limit_is_refused_before_its_view_runs(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATE_LIMIT_PER_CLIENT="3/minute")
    client = app.test_client()
    as_interior = {"environ_base": {TEST_CALLER_KEY: INTERIOR}}
    assert [client.get("/v1/returnees", **as_interior).status_code for _ in range(3)] == [200] * 3
    for _ in range(10):
        assert_rate_limited(client.post("/v1/returnees", json={}, **as_interior))  # not a 422: no view ran
    refused = [e for e in entries(app) if e["reason"] == "rate_limited"]
    assert len(refused) == 1
    assert (refused[0]["client_id"], refused[0]["agency"], refused[0]["method"]) == ("interior-1", "interior", "POST")
    # the client's limit is its own: another client from the same address goes on
    border = Caller(agency="border", client_id="border-1", purpose=min(PURPOSES["border"]),
                    scopes=frozenset(AGENCY_SCOPES["border"]))
    assert client.get("/v1/returnees", environ_base={TEST_CALLER_KEY: border}).status_code == 200


def test_each_window_gets_its_own_entry(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    import limits.storage.memory as memory
    import limits.strategies as strategies

    now = [1_000_000_000.0]
    monkeypatch.setattr(memory.time, "time", lambda: now[0])
    monkeypatch.setattr(strategies.time, "time", lambda: now[0], raising=False)
    import exchange.limits as exchange_limits

    monkeypatch.setattr(exchange_limits.time, "time", lambda: now[0])
    app = make_app(AUTHENTICATOR=CountingRefuser(), RATE_LIMIT_PER_SOURCE="2/minute")
    client = app.test_client()
    for _ in range(10):
        client.get("/v1/returnees")
    now[0] += 60
    for _ in range(10):
        client.get("/v1/returnees")
    refused = [e for e in entries(app) if e["reason"] == "rate_limited"]
    assert len(refused) == 2


def test_limits_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTHENTICATOR=CountingRefuser(), RATE_LIMITS_ENABLED=False, RATE_LIMIT_PER_SOURCE="1/minute")
    client = app.test_client()
    assert {client.get("/v1/returnees").status_code for _ in range(5)} == {401}


def test_configuration_comes_from_the_environment() -> None:
    config = from_environment({"EXCHANGE_RATE_LIMITS": "off", "EXCHANGE_RATE_LIMIT_PER_SOURCE": "7/second",
                               "EXCHANGE_RATE_LIMIT_PER_CLIENT": "9/minute"}, instance_path="/nowhere")
    assert (config["RATE_LIMITS_ENABLED"], config["RATE_LIMIT_PER_SOURCE"], config["RATE_LIMIT_PER_CLIENT"]) == (
        False, "7/second", "9/minute")
    assert from_environment({}, instance_path="/nowhere")["RATE_LIMITS_ENABLED"] is True
    with pytest.raises(RuntimeError, match="EXCHANGE_RATE_LIMITS"):
        from_environment({"EXCHANGE_RATE_LIMITS": "perhaps"}, instance_path="/nowhere")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_instance(tmp_path)


def test_with_redis_the_limit_is_shared_by_every_worker_and_audited_once(
    make_app: Callable[..., Flask], redis_server: RedisServer,
) -> None:
    workers = [make_app(AUTHENTICATOR=CountingRefuser(), REDIS_URL=redis_server.url,
                        RATE_LIMIT_PER_SOURCE="4/minute") for _ in range(2)]
    codes = [workers[i % 2].test_client().get("/v1/returnees").status_code for i in range(12)]
    assert codes == [401] * 4 + [429] * 8
    refused = [e for e in entries(workers[0]) if e["reason"] == "rate_limited"]
    assert len(refused) == 1


def test_worker_windows_count_per_key_and_start_afresh_when_the_window_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import exchange.limits as exchange_limits
    from exchange.limits import WorkerWindows

    now = [1_000_000_000.0]
    monkeypatch.setattr(exchange_limits.time, "time", lambda: now[0])
    windows = WorkerWindows()
    assert [windows.incr("a", 60) for _ in range(3)] == [1, 2, 3]
    assert windows.incr("b", 60) == 1  # each key its own window
    assert (windows.get("a"), windows.get_expiry("a")) == (3, now[0] + 60)
    now[0] += 59.5
    assert windows.incr("a", 60) == 4  # the same window: it started with the first request
    now[0] += 0.5
    assert (windows.get("a"), windows.get_expiry("a")) == (0, now[0])  # over: nothing counted, nothing to wait for
    assert windows.incr("a", 60) == 1
    windows.clear("a")
    assert windows.get("a") == 0
    now[0] += 61  # the next count sweeps the ended windows away (at most once a second)
    windows.incr("c", 60)
    assert set(windows._windows) == {"c"}
    assert windows.reset() == 1 and windows.get("c") == 0


def test_the_limits_are_counted_in_worker_memory_without_redis(make_app: Callable[..., Flask]) -> None:
    from exchange.limits import WorkerWindows, rate_limits

    app = make_app(AUTHENTICATOR=CountingRefuser())
    assert isinstance(rate_limits(app).limiter.limiter.storage, WorkerWindows)
