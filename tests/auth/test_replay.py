"""The replay caches: database (default), Redis (EXCHANGE_REDIS_URL) and in-memory, one contract."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from exchange.auth.replay import DatabaseReplayCache, RedisReplayCache
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.replay import InMemoryReplayCache, ReplayCache

REDIS_URL = os.environ.get("EXCHANGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_cache() -> RedisReplayCache:
    cache = RedisReplayCache(REDIS_URL)
    try:
        cache.client.ping()
    except Exception as e:  # noqa: BLE001  (any connection failure means: no Redis here)
        if os.environ.get("CI"):
            raise  # CI starts Redis; a missing one there is a failure, not a skip
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {type(e).__name__}")
    # a cache whose memory began long ago (else a fresh jti is refused for its first seconds: see test_redis_reset)
    cache.client.set(RedisReplayCache.EPOCH_KEY, int(time.time()) - 3600, nx=True)
    return cache


@pytest.fixture(params=["database", "redis", "memory"])
def cache(request: pytest.FixtureRequest, app: Flask) -> Iterator[ReplayCache]:
    makers: dict[str, Callable[[], ReplayCache]] = {
        "database": lambda: DatabaseReplayCache(app.extensions["exchange.db"], purge_probability=1.0),
        "redis": redis_cache,
        "memory": InMemoryReplayCache,
    }
    yield makers[request.param]()


def test_a_jti_is_accepted_once_per_namespace(cache: ReplayCache) -> None:
    jti, later = uuid.uuid4().hex, int(time.time()) + 60
    cache.claim("dpop", jti, later)
    with pytest.raises(Replayed):
        cache.claim("dpop", jti, later)
    cache.claim("assertion", jti, later)  # namespaces are separate
    with pytest.raises(Replayed):
        cache.claim("assertion", jti, later)


def test_many_distinct_jtis_pass(cache: ReplayCache) -> None:
    later = int(time.time()) + 60
    for _ in range(50):
        cache.claim("dpop", uuid.uuid4().hex, later)


def test_database_cache_purges_expired_entries(app: Flask) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from exchange.auth.models import SeenJti

    cache = DatabaseReplayCache(app.extensions["exchange.db"], purge_probability=1.0)
    cache.claim("dpop", "expired-" + uuid.uuid4().hex, int(time.time()) - 5)
    cache.claim("dpop", "fresh-" + uuid.uuid4().hex, int(time.time()) + 60)
    with Session(app.extensions["exchange.db"]) as session:
        # the second claim purged the first, expired one
        assert session.scalar(select(func.count()).select_from(SeenJti)) == 1


def test_app_uses_redis_when_configured(make_app: Callable[..., Flask]) -> None:
    redis_cache()  # skips (outside CI) when there is no Redis
    app = make_app(REDIS_URL=REDIS_URL)
    assert isinstance(app.extensions["exchange.replay"], RedisReplayCache)
