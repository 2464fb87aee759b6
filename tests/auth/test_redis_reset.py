"""Losing the replay cache never reopens a replay: a Redis of our own, restarted empty (no persistence) between the
first use of a DPoP proof, a client assertion or an envelope and its replay."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.auth import replay
from exchange.auth.replay import RedisReplayCache
from exchange.clients.services import ClientService
from exchange.partner.credentials import client_assertion, dpop_proof
from exchange.partner.envelopes import PartnerKeys, PublishedKeys, seal_request
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.errors import ReplayCacheUnavailable
from exchange.register.models import Returnee
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import returnee_body
from tests.server import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class OwnRedis:
    """A redis-server of this test's own, without persistence, on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart_empty(self) -> None:
        self.stop()
        self.start()
        assert redis.Redis.from_url(self.url).dbsize() == 0


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def later(seconds: int) -> Iterator[None]:
    """The replay cache's clock `seconds` ahead (only its clock: the proofs' own checks keep the real time)."""
    real = time.time
    with mock.patch.object(replay.time, "time", lambda: real() + seconds):
        yield


def after_the_reset(cache: RedisReplayCache) -> int:
    """Seconds (integer, as iat is) strictly after the epoch the restarted cache wrote: a proof issued then cannot
    have been used before the reset. Waits for the next second at most."""
    epoch = int(cache.client.get(RedisReplayCache.EPOCH_KEY) or 0)
    while int(time.time()) <= epoch:
        time.sleep(0.05)
    return int(time.time())


def test_a_used_jti_stays_used_after_redis_restarts_empty(own_redis: OwnRedis) -> None:
    cache = RedisReplayCache(own_redis.url)
    cache.client.set(RedisReplayCache.EPOCH_KEY, int(time.time()) - 3600)  # a cache with a long memory
    now = int(time.time())
    cache.claim("dpop", "proof-1", now + 70)  # a DPoP proof issued now
    cache.claim("assertion", "assertion-1", now + 70)
    own_redis.restart_empty()
    # fail closed while the emptied cache warms up: it cannot tell these from fresh ones, so "retry later" (503)
    for namespace, jti in (("dpop", "proof-1"), ("assertion", "assertion-1"), ("dpop", "proof-2")):
        with pytest.raises(ReplayCacheUnavailable) as refused:
            cache.claim(namespace, jti, now + 70)
        assert 1 <= (refused.value.retry_after or 0) <= 23
    # once warm (the cache's clock 25 s on), a jti that could have been presented before the reset is a replay
    with later(25):
        for namespace, jti in (("dpop", "proof-1"), ("assertion", "assertion-1")):
            with pytest.raises(Replayed):
                cache.claim(namespace, jti, now + 70)
    fresh = after_the_reset(cache)
    cache.claim("dpop", "proof-3", fresh + 10 + 70)  # iat = now + 10: cannot have been presented before the reset
    with pytest.raises(Replayed):
        cache.claim("dpop", "proof-3", fresh + 10 + 70)


@pytest.fixture
def redis_app(make_app: Callable[..., Flask], own_redis: OwnRedis) -> Flask:
    app = make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False, REDIS_URL=own_redis.url)
    cache = app.extensions["exchange.replay"]
    assert isinstance(cache, RedisReplayCache)
    cache.client.set(RedisReplayCache.EPOCH_KEY, int(time.time()) - 3600)
    return app


def register(app: Flask, client_id: str) -> tuple[Partner, PartnerKeys]:
    keys = PartnerKeys.generate()
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": client_id, "agency": "interior", "name": "test", "keys": keys.registration(),
             "scopes": ["returnees:read", "returnees:write"]}, officer="TJ-SEC-1")
        session.commit()
    return Partner(http=app.test_client(), client_id=client_id, agency="interior",
                   scopes=frozenset({"returnees:read", "returnees:write"}), auth_key=keys.auth), keys


def returnees(app: Flask) -> int:
    with Session(app.extensions["exchange.db"]) as session:
        return session.scalar(select(func.count()).select_from(Returnee)) or 0


def test_proofs_assertions_and_envelopes_used_before_a_restart_are_refused_after_it(
    redis_app: Flask, own_redis: OwnRedis
) -> None:
    partner, keys = register(redis_app, "interior-1")
    other, _ = register(redis_app, "interior-2")
    assertion = client_assertion(client_id=partner.client_id, issuer=ISSUER, key=partner.auth_key)
    token_proof = dpop_proof(key=partner.dpop_key, method="POST", url=f"{ISSUER}/oauth/token")
    issued = partner.token_request(assertion=assertion, proof=token_proof)
    assert issued.status_code == 200
    partner.token = issued.get_json()["access_token"]
    other.get_token()
    read_proof = dpop_proof(key=partner.dpop_key, method="GET", url=f"{ISSUER}/v1/returnees",
                            access_token=partner.token, purpose=partner.purpose)
    assert partner.call("GET", "/v1/returnees", proof=read_proof).status_code == 200
    enc = redis_app.extensions["exchange.keystore"].active_encryption("envelope-enc")
    body, _ = seal_request(agency="interior", keys=keys, exchange=PublishedKeys(enc=enc.public_key, sign=(),
                           fetched_at=0), method="POST", target="/v1/returnees", value=returnee_body(),
                           now=int(time.time()))
    envelope_type = "application/vnd.exchange.envelope.v1+json"
    created = partner.call("POST", "/v1/returnees", data=body, content_type=envelope_type)
    assert created.status_code == 201

    own_redis.restart_empty()

    # while the emptied cache warms up, every credential it cannot vouch for is refused with "retry later"
    again = partner.token_request(assertion=assertion, proof=token_proof)
    assert (again.status_code, again.get_json()["code"]) == (503, "replay_cache_unavailable")
    assert again.headers["Retry-After"]
    replayed = partner.call("GET", "/v1/returnees", proof=read_proof)
    assert (replayed.status_code, replayed.get_json()["code"]) == (503, "replay_cache_unavailable")
    cache = redis_app.extensions["exchange.replay"]
    fresh = after_the_reset(cache)
    new_proof = dpop_proof(key=partner.dpop_key, method="POST", url=f"{ISSUER}/oauth/token", now=fresh + 10)
    reused = partner.token_request(assertion=assertion, proof=new_proof)
    assert (reused.status_code, reused.get_json()["code"]) == (503, "replay_cache_unavailable")
    # once warm (the cache's clock 15 s on), the same credentials are replays: refused for good
    with later(15):
        replayed = partner.call("GET", "/v1/returnees", proof=read_proof)
    assert (replayed.status_code, replayed.get_json().get("code")) == (401, "dpop_replay"), replayed.get_json()

    def call(who: Partner) -> Any:
        proof = dpop_proof(key=who.dpop_key, method="POST", url=f"{ISSUER}/v1/returnees", access_token=who.token,
                           purpose=who.purpose, now=fresh + 10)
        return who.call("POST", "/v1/returnees", proof=proof, data=body, content_type=envelope_type)

    # the envelope again: the stored outcome (its client), refused (another client), never stored twice, never 500
    same = call(partner)
    assert (same.status_code, same.headers["Location"]) == (201, created.headers["Location"])
    stranger = call(other)
    assert (stranger.status_code, stranger.get_json()["code"]) == (409, "envelope_replayed")
    assert returnees(redis_app) == 1
