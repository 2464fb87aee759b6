"""Replay caches for `jti`s (client assertions, DPoP proofs), shared by every worker of the exchange.

`claim(namespace, jti, expires_at)` records a jti or raises `Replayed` if it was recorded before and has not expired.
The database cache is the default (one INSERT on a primary key, in its own transaction so that a refused request
cannot un-see a jti); `EXCHANGE_REDIS_URL` selects Redis (`SET NX EX`). The in-memory cache is for single-process
tools and unit tests only.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from exchange.auth.models import SeenJti
from exchange.protocol.auth_errors import Replayed

_CLAIM = insert(SeenJti)  # built once; the values are bound per claim


class DatabaseReplayCache:
    def __init__(self, engine: Engine, *, purge_probability: float = 0.01) -> None:
        self.engine = engine
        self.purge_probability = purge_probability

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        expires = datetime.fromtimestamp(expires_at, UTC)
        try:
            with self.engine.begin() as connection:
                if random.random() < self.purge_probability:  # noqa: S311  (load spreading, not security)
                    connection.execute(delete(SeenJti).where(SeenJti.expires_at < datetime.now(UTC)))
                connection.execute(_CLAIM, {"namespace": namespace, "jti": jti, "expires_at": expires})
        except IntegrityError as e:
            raise Replayed(jti) from e


class RedisReplayCache:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()))
        if not self.client.set(f"exchange:jti:{namespace}:{jti}", b"1", nx=True, ex=ttl):
            raise Replayed(jti)
