"""The replay seam (protocol.md §2-4): a jti or msg_id is accepted once within its lifetime.

`ReplayCache` is what the DPoP, client-assertion and envelope checks need; `InMemoryReplayCache` serves one process
(the partner library, tests). The shared implementations (database, Redis) live with the server in
`exchange.auth.replay`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from exchange.protocol.auth_errors import Replayed


class ReplayCache(Protocol):
    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        """Record `jti` until `expires_at` (Unix seconds); raise `Replayed` if it is already recorded."""
        ...


class InMemoryReplayCache:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        now = int(time.time())
        with self._lock:
            seen = self._seen.get((namespace, jti))
            if seen is not None and seen >= now:
                raise Replayed(jti)
            self._seen[(namespace, jti)] = expires_at
