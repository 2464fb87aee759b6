"""CPU per call in-process, and where it goes: the released app on a scratch database, no server.

    .venv/bin/python bench/call_cpu.py [--case token|read|write] [--calls 300] [--rounds 3] [--rate-limits off|on]
                                       [--database-url postgresql+psycopg://root@127.0.0.1:5432/test] [--profile]

Sets up a scratch database as `run.py` does (demo returnees, the exchange's keys, an interior client), then sends
`run.py`'s cases through Flask's test client, signed as its signers sign them, before the timed section (the
partner's signing is not counted):

- `token`: `POST /oauth/token` as `signers.TokenRequestSigner` signs it (a fresh client assertion and DPoP proof);
- `read`: `GET /v1/returnees/<id>` over the demo returnees with a token and a fresh DPoP proof (`DPoPApiSigner`);
- `write`: `POST /v1/returnees` with a token, a fresh proof and a freshly sealed request envelope
  (`SealedApiSigner`, `signers.returnee_record`).

Prints, per round, the process CPU time per call (`time.process_time`: this process's threads, the database
server's own CPU on PostgreSQL not included) and, for tokens, the CPU of its parts, measured by wrapping them: the
audit entry (append and commit), the token view, the DPoP proof (verification and claim), the two `jti` claims, the
client read, the assertion (verification and claim), the token's signature and the per-source rate limit check.
Parts nest (the claims are inside the proof's and the assertion's figures, which are inside the view's).
`--profile` prints a cProfile (CPU time) of the last round instead of the parts.

No load, no contention, no fsync waits in the figures: it is the CPU a call costs, not the rate a server reaches
(`run.py` measures that). The Flask test client's own work (building the WSGI environ, reading the response) is
in the figures; it is the same before and after a change, so compare pairs measured in the same minutes.
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

import signers
from run import READ_PURPOSE, WRITE_PURPOSE, create_exchange_keys, load_register, register_client, scratch_database
from signers import DPoPApiSigner, SealedApiSigner, TokenRequestSigner

from exchange.partner.envelopes import PublishedKeys

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
def exchange_app(database: str | None, rate_limits: str) -> Iterator[tuple[Any, Any, tuple[Any, ...]]]:
    with tempfile.TemporaryDirectory(prefix="exchange-token-cpu-", ignore_cleanup_errors=True) as tmp, \
            scratch_database(database, Path(tmp)) as database_url:
        keys_dir = Path(tmp) / "keys"
        keys_dir.mkdir(mode=0o700)
        returnees = load_register(database_url, 20)
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
            yield app, client, returnees
        finally:
            db.engine(app).dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per call in-process (and a token's parts).")
    parser.add_argument("--case", choices=("token", "read", "write"), default="token")
    parser.add_argument("--calls", type=int, default=300, help="calls per round (default 300)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-limits", choices=("off", "on"), default="on",
                        help="on (default, as in production): limits checked, never reached")
    parser.add_argument("--database-url", help="PostgreSQL server to create a scratch database on (default: SQLite)")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) of the last round")
    parser.add_argument("--limiter-cost", action="store_true",
                        help="instead of the parts: each round twice, the limiter switched on then off in the same "
                             "process, and the difference (what checking the limits costs a token)")
    args = parser.parse_args(argv)

    with exchange_app(args.database_url, args.rate_limits) as (app, client, returnees):
        http = app.test_client()
        method, paths, expected, signer = case(args.case, http, client, returnees)

        def send(signed: Any, path: str) -> None:
            response = http.open(path, method=method, data=signed.body, headers=list(signed.headers),
                                 base_url=ISSUER)
            if response.status_code != expected:
                raise SystemExit(f"{method} {path} refused: {response.status_code} {response.get_data(as_text=True)}")

        def batch(calls: int) -> list[tuple[Any, str]]:
            chosen = [paths[i % len(paths)] for i in range(calls)]
            return [(signer.sign(method, path), path) for path in chosen]

        for signed, path in batch(WARMUP):
            send(signed, path)
        if args.limiter_cost:
            if args.case != "token":
                raise SystemExit("--limiter-cost measures token requests (--case token)")
            return limiter_cost(app, signer, lambda signed: send(signed, "/oauth/token"), args.calls, args.rounds)
        parts = Parts()
        if not args.profile and args.case == "token":
            instrument(app, parts)
        profile = None
        for round_number in range(1, args.rounds + 1):
            requests = batch(args.calls)
            parts.cpu.clear()
            if args.profile and round_number == args.rounds:
                profile = cProfile.Profile(time.process_time)
                profile.enable()
            started = time.process_time()
            for signed, path in requests:
                send(signed, path)
            cpu = time.process_time() - started
            if profile is not None:
                profile.disable()
            print(f"round {round_number}: {cpu / args.calls * 1000:.3f} ms of CPU per {args.case} call")
            for name, seconds in sorted(parts.cpu.items(), key=lambda item: -item[1]):
                print(f"    {name}: {seconds / args.calls * 1000:.3f} ms")
        if profile is not None:
            stats = pstats.Stats(profile, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(50)
    return 0


def case(name: str, http: Any, client: Any, returnees: tuple[Any, ...]) -> tuple[str, list[str], int, Any]:
    """The case's method, paths, expected status and a bound signer that gets its token and keys in-process."""
    if name == "token":
        return "POST", ["/oauth/token"], 200, TokenRequestSigner(client, ISSUER).bind()

    def token_in_process(bound: Any) -> None:
        request = bound.keys.token_request()
        response = http.post("/oauth/token", data=request.body, headers=list(request.headers), base_url=ISSUER)
        if response.status_code != 200:
            raise SystemExit(f"token request refused: {response.status_code} {response.get_data(as_text=True)}")
        answer = response.get_json()
        bound.token, bound.renew_at = answer["access_token"], time.monotonic() + answer["expires_in"] - 30

    if name == "read":
        bound = DPoPApiSigner(client, ISSUER, READ_PURPOSE).bind()
        bound.renew = lambda: token_in_process(bound)  # type: ignore[method-assign]
        return "GET", [f"/v1/returnees/{returnee}" for returnee in returnees], 200, bound

    def jwks_in_process(_host: str, _port: int, timeout: float = 10.0) -> Any:
        jwks = http.get("/.well-known/jwks.json", base_url=ISSUER).get_json()
        return PublishedKeys.from_jwks(jwks, fetched_at=time.time())

    signers.fetch_published_keys = jwks_in_process  # type: ignore[assignment]
    sealed = SealedApiSigner(client, ISSUER, WRITE_PURPOSE).bind()
    sealed.renew = lambda: token_in_process(sealed)  # type: ignore[method-assign]
    return "POST", ["/v1/returnees"], 201, sealed


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
