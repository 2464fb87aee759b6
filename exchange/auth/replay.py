"""Replay caches for `jti`s (client assertions, DPoP proofs), shared by every worker of the exchange.

`claim(namespace, jti, expires_at)` records a jti or raises `Replayed` if it was recorded before and has not expired.
The database cache is the default (one INSERT on a primary key, in its own transaction so that a refused request
cannot un-see a jti); `EXCHANGE_REDIS_URL` selects Redis (`SET NX EX` in a Lua script that fails closed when Redis
lost its memory). The in-memory cache is for single-process tools and unit tests only.

The OAuth endpoints are the exception (`TransactionalReplayCache`): every request there, refused or not, commits its
audit entry, so their claims ride in that transaction (one commit per token request) and are seen from then on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.auth.models import SeenJti
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.errors import ReplayCacheUnavailable
from exchange.protocol.replay import ReplayCache

_CLAIM = insert(SeenJti)  # built once; the values are bound per claim
# In a caller's transaction a duplicate must not abort it (PostgreSQL would refuse every later statement): a claim
# that inserts no row is a replay. A duplicate being inserted by a transaction not yet committed is waited for.
# (RETURNING, not the row count: psycopg reports -1 for it.)
_CLAIM_IN = {"sqlite": sqlite_insert(SeenJti).on_conflict_do_nothing().returning(SeenJti.jti),
             "postgresql": postgresql_insert(SeenJti).on_conflict_do_nothing().returning(SeenJti.jti)}


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

    def claim_in(self, connection: Connection, namespace: str, jti: str, expires_at: int) -> None:
        """Claim in the caller's transaction: the jti is seen once that transaction commits, and not if it rolls
        back (use it only where the claim commits with the request's outcome whatever that is, as the token
        endpoint's audit entry does). Saves the claim's own transaction and commit."""
        statement = _CLAIM_IN.get(connection.dialect.name)
        if statement is None:  # another database: its own transaction, as `claim`
            self.claim(namespace, jti, expires_at)
            return
        if random.random() < self.purge_probability:  # noqa: S311  (load spreading, not security)
            connection.execute(delete(SeenJti).where(SeenJti.expires_at < datetime.now(UTC)))
        expires = datetime.fromtimestamp(expires_at, UTC)
        claimed = connection.execute(statement, {"namespace": namespace, "jti": jti, "expires_at": expires}).first()
        if claimed is None:
            raise Replayed(jti)


class TransactionalReplayCache:
    """The token endpoint's replay cache: with the database cache, its claims (the DPoP proof's and the client
    assertion's `jti`) are made in the request's own transaction, which the endpoint's audit entry commits, refusal
    or token alike: one commit per token request instead of three. A request whose entry cannot be written is
    answered 503 and its transaction rolled back, claims included: it issued nothing, and a retry must come with a
    fresh proof and assertion anyway (the partner library makes new ones). Other caches (Redis) claim as they do."""

    def __init__(self, cache: ReplayCache, session: Callable[[], Session]) -> None:
        self.cache = cache
        self.session = session

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        if isinstance(self.cache, DatabaseReplayCache):
            self.cache.claim_in(self.session().connection(), namespace, jti, expires_at)
        else:
            self.cache.claim(namespace, jti, expires_at)


# How long before its `expires_at` a jti of each namespace may first have been presented: a DPoP proof is accepted
# from iat - 10 s and remembered until iat + 70 s (80); a client assertion from iat - 10 s until exp + 10 s, with
# exp - iat <= 60 (80); a key-rotation proof while |now - iat| <= 60 s and remembered until iat + 120 s (180). Any
# other namespace: the longest envelope window (iat - 10 s to exp + 60 s, exp - iat <= 300: 370).
FIRST_USE_BEFORE_EXPIRY: dict[str, int] = {"dpop": 80, "assertion": 80, "key-rotation": 180}
DEFAULT_FIRST_USE_BEFORE_EXPIRY = 370

# For how long after the cache lost its memory a FRESH jti of each namespace is still refused by the rule above (its
# earliest first use minus its shortest lifetime): during that time the cache cannot tell a fresh credential from a
# replayed one, so the refusal is 503 `replay_cache_unavailable` with Retry-After (the partner library retries it
# with a new proof), not a replay error. After it, a refusal can only be a credential presented before the reset.
# Envelope `msg_id`s have none: the database, not this cache, decides whether an envelope was stored.
# (Each is that span plus 2 s for the partner's clock running behind ours.)
WARM_UP_SECONDS: dict[str, int] = {"dpop": 12, "assertion": 22, "key-rotation": 62}

# KEYS[1] the jti, KEYS[2] the epoch; ARGV: ttl, earliest first use of the jti, now. Returns 1 (claimed), 0 (seen)
# or 2 (it may have been used before the cache's memory begins: refused, fail closed).
_CLAIM_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[3])
  epoch = ARGV[3]
end
if tonumber(ARGV[2]) <= tonumber(epoch) then
  return {2, tonumber(epoch)}
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return {1, tonumber(epoch)}
end
return {0, tonumber(epoch)}
"""


class RedisReplayCache:
    """`SET NX EX` per jti, failing closed when Redis lost its memory (restarted without persistence, flushed,
    evicted): the first claim on an empty Redis writes an epoch marker, the time its memory begins, and a jti that
    could have been presented before that time (`FIRST_USE_BEFORE_EXPIRY` before its expiry) is refused as a
    replay for the rest of its lifetime, atomically with the claim (one Lua script). Fresh proofs and assertions
    pass again some 10 s after the restart. Envelope `msg_id`s do not depend on it: the database decides whether
    an envelope was stored (`exchange.envelope.http`)."""

    EPOCH_KEY = "exchange:jti-epoch"

    def __init__(self, url: str) -> None:
        import redis

        # bounded waits: a stopped or unreachable Redis is a 503 within seconds, not a hung worker
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._claim = self.client.register_script(_CLAIM_SCRIPT)

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        import redis

        now = int(time.time())
        ttl = max(1, expires_at - now)
        first_use = expires_at - FIRST_USE_BEFORE_EXPIRY.get(namespace, DEFAULT_FIRST_USE_BEFORE_EXPIRY)
        try:
            result = self._claim(keys=[f"exchange:jti:{namespace}:{jti}", self.EPOCH_KEY], args=[ttl, first_use, now])
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise ReplayCacheUnavailable() from e  # fail closed: no call is accepted without its replay check
        status, epoch = int(result[0]), int(result[1])
        warm_up = WARM_UP_SECONDS.get(namespace)
        if status == 2 and warm_up is not None:
            warm_until = epoch + warm_up
            if now <= warm_until:
                raise ReplayCacheUnavailable(
                    "The exchange's replay cache restarted moments ago and cannot yet tell a fresh credential from a "
                    "used one; retry with a new proof after Retry-After.", retry_after=warm_until - now + 1)
        if status != 1:
            raise Replayed(jti)
