"""CPU per token request in-process, and where it goes: the released app on a scratch database, no server.

    .venv/bin/python bench/token_cpu.py [--calls 300] [--rounds 3] [--rate-limits off|on]
                                        [--database-url postgresql+psycopg://root@127.0.0.1:5432/test] [--profile]

Sets up a scratch database as `run.py` does (demo returnees, the exchange's keys, an interior client), then sends
`POST /oauth/token` through Flask's test client with what `signers.TokenRequestSigner` signs (a fresh client
assertion and DPoP proof per request; signed before the timed section, so the partner's signing is not counted).
Prints, per round, the process CPU time per token (`time.process_time`: this process's threads, the database
server's own CPU on PostgreSQL not included) and the CPU of its parts, measured by wrapping them: the audit entry
(append and commit), the token view, the DPoP proof (verification and claim), the two `jti` claims, the client read,
the assertion (verification and claim), the token's signature and the per-source rate limit check. Parts nest (the
claims are inside the proof's and the assertion's figures, which are inside the view's). `--profile` prints a
cProfile (CPU time) of the last round instead of the parts.

No load, no contention, no fsync waits in the figures: it is the CPU a token costs, not the rate a server reaches
(`run.py --case "token issuance"` measures that).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from run import create_exchange_keys, load_register, register_client, scratch_database
from signers import TokenRequestSigner

ISSUER = "http://127.0.0.1:9999"
WARMUP = 20


class Parts:
    """CPU time spent inside wrapped callables, by name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - started

        return timed


def instrument(app: Any, parts: Parts) -> None:
    """Wrap the parts that exist in this tree (an older tree lacks some: they are left out)."""
    import exchange.auth.replay as replay
    import exchange.auth.server as server
    import exchange.auth.views as views

    app.view_functions["oauth.token"] = parts.wrap("token view", app.view_functions["oauth.token"])
    targets = [
        (views, "record_and_commit", "audit entry (append + commit)"),
        (views, "verify_dpop_proof", "DPoP proof (verify + claim)"),
        (getattr(replay, "TransactionalReplayCache", None), "claim", "the two jti claims"),
        (server, "client_for_token", "client and auth keys read"),
        (server.PrivateKeyJwt, "_verify_assertion", "assertion (verify + claim)"),
        (server, "issue_access_token", "access token signature"),
    ]
    for owner, attribute, name in targets:
        if owner is not None and hasattr(owner, attribute):
            setattr(owner, attribute, parts.wrap(name, getattr(owner, attribute)))
    hooks = app.before_request_funcs.get(None, [])
    for i, hook in enumerate(hooks):
        if getattr(hook, "__name__", "") == "_check_request_limit":
            hooks[i] = parts.wrap("per-source rate limit", hook)


@contextmanager
def exchange_app(database: str | None, rate_limits: str) -> Iterator[tuple[Any, Any]]:
    with tempfile.TemporaryDirectory(prefix="exchange-token-cpu-", ignore_cleanup_errors=True) as tmp, \
            scratch_database(database, Path(tmp)) as database_url:
        keys_dir = Path(tmp) / "keys"
        keys_dir.mkdir(mode=0o700)
        load_register(database_url, 20)
        master_key = create_exchange_keys(keys_dir, database_url)
        client = register_client(database_url, "interior")
        os.environ.update({
            "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_KEYS_DIR": str(keys_dir),
            "EXCHANGE_MASTER_KEY": master_key, "EXCHANGE_LOG_LEVEL": "WARNING", "EXCHANGE_ISSUER": ISSUER,
            "EXCHANGE_RATE_LIMITS": rate_limits,
            # as run.py: checked on every request, never reached
            "EXCHANGE_RATE_LIMIT_PER_SOURCE": "1000000/second", "EXCHANGE_RATE_LIMIT_PER_CLIENT": "1000000/second",
        })
        from exchange import create_app
        from exchange.db import db

        app = create_app()
        try:
            yield app, client
        finally:
            db.engine(app).dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per token request in-process, and its parts.")
    parser.add_argument("--calls", type=int, default=300, help="token requests per round (default 300)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-limits", choices=("off", "on"), default="on",
                        help="on (default, as in production): limits checked, never reached")
    parser.add_argument("--database-url", help="PostgreSQL server to create a scratch database on (default: SQLite)")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) of the last round")
    parser.add_argument("--limiter-cost", action="store_true",
                        help="instead of the parts: each round twice, the limiter switched on then off in the same "
                             "process, and the difference (what checking the limits costs a token)")
    args = parser.parse_args(argv)

    with exchange_app(args.database_url, args.rate_limits) as (app, client):
        http = app.test_client()
        signer = TokenRequestSigner(client, ISSUER).bind()

        def send(signed: Any) -> None:
            response = http.post("/oauth/token", data=signed.body, headers=list(signed.headers), base_url=ISSUER)
            if response.status_code != 200:
                raise SystemExit(f"token request refused: {response.status_code} {response.get_data(as_text=True)}")

        for _ in range(WARMUP):
            send(signer.sign("POST", "/oauth/token"))
        if args.limiter_cost:
            return limiter_cost(app, signer, send, args.calls, args.rounds)
        parts = Parts()
        if not args.profile:
            instrument(app, parts)
        profile = None
        for round_number in range(1, args.rounds + 1):
            requests = [signer.sign("POST", "/oauth/token") for _ in range(args.calls)]
            parts.cpu.clear()
            if args.profile and round_number == args.rounds:
                profile = cProfile.Profile(time.process_time)
                profile.enable()
            started = time.process_time()
            for signed in requests:
                send(signed)
            cpu = time.process_time() - started
            if profile is not None:
                profile.disable()
            print(f"round {round_number}: {cpu / args.calls * 1000:.3f} ms of CPU per token")
            for name, seconds in sorted(parts.cpu.items(), key=lambda item: -item[1]):
                print(f"    {name}: {seconds / args.calls * 1000:.3f} ms")
        if profile is not None:
            stats = pstats.Stats(profile, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(50)
    return 0


def limiter_cost(app: Any, signer: Any, send: Callable[[Any], None], calls: int, rounds: int) -> int:
    limiter = app.extensions["exchange.limits"].limiter

    def batch(enabled: bool) -> float:
        requests = [signer.sign("POST", "/oauth/token") for _ in range(calls)]
        limiter.enabled = enabled
        started = time.process_time()
        for signed in requests:
            send(signed)
        return (time.process_time() - started) / calls * 1000

    for round_number in range(1, rounds + 1):
        on, off = batch(True), batch(False)
        print(f"round {round_number}: limits on {on:.3f} ms, off {off:.3f} ms of CPU per token: "
              f"the limits cost {on - off:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
