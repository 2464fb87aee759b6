"""Configuration from the environment (names in docs/operations.md).

`create_app(config)` takes a mapping that overrides these; tests pass one, production passes none.
No secret has a default here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise RuntimeError(f"{name} must be an integer, got {raw!r}") from e


def _flag_env(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise RuntimeError(f"{name} must be on or off, got {raw!r}")


# Generous: a partner's busiest batch stays far below; a flood (hundreds a second from one place) does not.
DEFAULT_RATE_LIMIT_PER_SOURCE = "100/second;3000/minute"
DEFAULT_RATE_LIMIT_PER_CLIENT = "100/second;3000/minute"


def from_environment(env: Mapping[str, str] | None = None, *, instance_path: str) -> dict[str, Any]:
    """Read the `EXCHANGE_*` variables into Flask config keys."""
    env = os.environ if env is None else env
    default_db = f"sqlite:///{Path(instance_path) / 'exchange.db'}"
    return {
        "DATABASE_URL": env.get("EXCHANGE_DATABASE_URL") or default_db,
        "REDIS_URL": env.get("EXCHANGE_REDIS_URL") or None,
        "KEYS_DIR": env.get("EXCHANGE_KEYS_DIR") or str(PROJECT_ROOT / "keys"),
        "ISSUER": env.get("EXCHANGE_ISSUER") or "http://127.0.0.1:5000",
        "AUDIT_ORIGIN": env.get("EXCHANGE_AUDIT_ORIGIN") or "exchange.local/audit",
        "AUDIT_CHECKPOINT_SECONDS": _int_env(env, "EXCHANGE_AUDIT_CHECKPOINT_SECONDS", 10),
        # witness.md §3: the witnesses the exchange submits its checkpoints to (a JSON array of {name, url, vkey}),
        # and how many cosignatures a served checkpoint waits for (default: a majority of them)
        "WITNESSES": env.get("EXCHANGE_WITNESSES") or None,
        "AUDIT_SERVE_COSIGNATURES": (_int_env(env, "EXCHANGE_AUDIT_SERVE_COSIGNATURES", 0)
                                     if env.get("EXCHANGE_AUDIT_SERVE_COSIGNATURES") else None),
        "WITNESS_TIMEOUT": _int_env(env, "EXCHANGE_WITNESS_TIMEOUT", 2),
        "MAX_CONTENT_LENGTH": _int_env(env, "EXCHANGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        "LOG_LEVEL": env.get("EXCHANGE_LOG_LEVEL") or "INFO",
        "SQL_ECHO": env.get("EXCHANGE_SQL_ECHO", "") == "1",
        # how long a worker trusts its copy of the key registry (a revocation reaches every worker within it)
        "KEY_CACHE_SECONDS": _int_env(env, "EXCHANGE_KEY_CACHE_SECONDS", 2),
        # how long a replaced key keeps verifying and decrypting (at least token + envelope lifetime + skew)
        "KEY_OVERLAP_SECONDS": _int_env(env, "EXCHANGE_KEY_OVERLAP_SECONDS", 660),
        # how long events are kept for `GET /v1/events` (an older cursor is 410 cursor_expired)
        "EVENT_RETENTION_DAYS": _int_env(env, "EXCHANGE_EVENT_RETENTION_DAYS", 30),
        # rate limits (flask-limiter syntax, several joined by ";"): per source address and per client
        "RATE_LIMITS_ENABLED": _flag_env(env, "EXCHANGE_RATE_LIMITS", True),
        "RATE_LIMIT_PER_SOURCE": env.get("EXCHANGE_RATE_LIMIT_PER_SOURCE") or DEFAULT_RATE_LIMIT_PER_SOURCE,
        "RATE_LIMIT_PER_CLIENT": env.get("EXCHANGE_RATE_LIMIT_PER_CLIENT") or DEFAULT_RATE_LIMIT_PER_CLIENT,
    }
