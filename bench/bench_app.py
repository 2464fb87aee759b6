"""BENCH-ONLY WSGI entry point: the exchange with an authenticator that lets every loopback request in as interior.

NEVER deploy this module or point it at a real register. `UnsafeBenchAuthenticator` performs no authentication at
all: it answers every request from 127.0.0.1 with the same interior caller (all interior scopes, purpose
register-maintenance), so the "register read" case measures the register without the token machinery (no access
token, no DPoP proof, no replay-cache write, no sealed response). Set against the "secured read" case on the released
app, it shows what tokens, proofs and envelopes cost. Two guards keep it from being served by accident: the module
refuses to import unless the harness set `EXCHANGE_BENCH_UNSAFE_AUTH=1`, and the authenticator refuses any request
whose peer is not loopback (the harness binds gunicorn to 127.0.0.1 only).

Served by `bench/harness.py` as `gunicorn --pythonpath bench bench_app:app`; configured, like production, through
`EXCHANGE_DATABASE_URL`, `EXCHANGE_KEYS_DIR` and `EXCHANGE_LOG_LEVEL`.
"""

from __future__ import annotations

import os

from flask import Request

from exchange import create_app
from exchange.identity import Caller
from exchange.protocol.errors import Unauthenticated
from exchange.protocol.policy import AGENCY_SCOPES

UNSAFE_AUTH_FLAG = "EXCHANGE_BENCH_UNSAFE_AUTH"
# Every `/v1` view checks scopes and purpose (`exchange.auth.protect.protected`): the caller carries interior's.
BENCH_CALLER = Caller(agency="interior", client_id="bench", purpose="register-maintenance",
                      scopes=AGENCY_SCOPES["interior"])
LOOPBACK_PEERS = frozenset({"127.0.0.1", "::1"})


class UnsafeBenchAuthenticator:
    """BENCH-ONLY: no authentication. Every loopback request is `BENCH_CALLER` (interior, client "bench", all
    interior scopes, purpose register-maintenance)."""

    def authenticate(self, request: Request) -> Caller:
        if request.remote_addr not in LOOPBACK_PEERS:
            raise Unauthenticated("The bench authenticator only serves loopback.")
        return BENCH_CALLER


if os.environ.get(UNSAFE_AUTH_FLAG) != "1":
    raise RuntimeError(
        f"bench_app is a benchmark fixture with NO authentication; it loads only with {UNSAFE_AUTH_FLAG}=1, "
        "which bench/harness.py sets for its loopback-only gunicorn. Serve wsgi:app instead."
    )

# No envelopes either: this case is the register read alone, the baseline for the secured cases.
app = create_app({"AUTHENTICATOR": UnsafeBenchAuthenticator(), "UNSAFE_PLAIN_JSON_BODIES": True})
