"""A token cache that outlives the process: for command-line tools that make one call per run (`exchange call`).

An access token is bound to the DPoP key that asked for it (`cnf.jkt`), so the cache keeps that ephemeral key with
the token. It is written with mode 0600 (it is as sensitive as the token it holds, for as long as the token lives)
and trusted only for the same exchange, client id, scopes and `auth` key, and only until the token expires.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from exchange.partner.credentials import PartnerKey
from exchange.protocol import jose


@dataclass(frozen=True, kw_only=True)
class CachedToken:
    """An access token, when it expires (seconds since the epoch) and the DPoP key it is bound to."""

    access_token: str = field(repr=False)
    expires_at: float
    dpop_key: PartnerKey


@dataclass(frozen=True, kw_only=True)
class TokenScope:
    """What a cached token was issued for; a token is reused only for the very same."""

    base_url: str
    client_id: str
    scopes: tuple[str, ...]
    auth_kid: str

    def as_dict(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "client_id": self.client_id, "scopes": list(self.scopes),
                "auth_kid": self.auth_kid}


class TokenCache(Protocol):
    """Where `ExchangeClient(token_cache=...)` keeps its token between runs."""

    def load(self, scope: TokenScope) -> CachedToken | None: ...

    def save(self, scope: TokenScope, token: CachedToken) -> None: ...


class FileTokenCache:
    """One JSON file (mode 0600, replaced atomically) holding the last token of one client."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self, scope: TokenScope) -> CachedToken | None:
        try:
            data = json.loads(self.path.read_text(encoding="ascii"))
            if not isinstance(data, dict) or data.get("for") != scope.as_dict():
                return None
            return CachedToken(access_token=str(data["access_token"]), expires_at=float(data["expires_at"]),
                               dpop_key=PartnerKey(key=jose.OKPKey.import_key(data["dpop_key"])))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no cache, or one this version cannot read: a new token is fetched

    def save(self, scope: TokenScope, token: CachedToken) -> None:
        data = {"for": scope.as_dict(), "access_token": token.access_token, "expires_at": token.expires_at,
                "dpop_key": token.dpop_key.key.as_dict(private=True)}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")  # created with mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                json.dump(data, handle)
            os.replace(name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise


def token_scope(*, base_url: str, client_id: str, scopes: Sequence[str], auth: PartnerKey) -> TokenScope:
    return TokenScope(base_url=base_url, client_id=client_id, scopes=tuple(scopes), auth_kid=auth.kid)
