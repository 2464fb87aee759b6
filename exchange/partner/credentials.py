"""Partner credentials: an agency's Ed25519 keys, its client assertions (RFC 7523) and DPoP proofs (RFC 9449).

Everything a partner system signs for protocol v1 §2-3, in one place, usable without the server's code or database.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.protocol import jose


@dataclass(frozen=True, kw_only=True)
class PartnerKey:
    """An Ed25519 private key of a partner (its `auth` or `sign` key). `repr` never shows the private part."""

    key: jose.OKPKey = field(repr=False)

    @classmethod
    def generate(cls) -> PartnerKey:
        return cls(key=jose.OKPKey.generate_key("Ed25519", private=True))

    @classmethod
    def load(cls, path: Path) -> PartnerKey:
        return cls(key=jose.OKPKey.import_key(json.loads(path.read_text(encoding="ascii"))))

    def save(self, path: Path) -> None:
        """Write the private JWK to `path` with mode 0600 (created so; never readable by others)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            json.dump(self.key.as_dict(private=True), handle)

    @property
    def public_jwk(self) -> dict[str, Any]:
        data = self.key.as_dict(private=False)
        return {"kty": "OKP", "crv": data["crv"], "x": data["x"]}

    @property
    def kid(self) -> str:
        from exchange.protocol.encoding import okp_thumbprint

        return okp_thumbprint(self.public_jwk["crv"], self.public_jwk["x"])


def new_jti() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def client_assertion(
    *, client_id: str, issuer: str, key: PartnerKey, lifetime: int = 60, now: int | None = None,
    jti: str | None = None, extra: dict[str, Any] | None = None,
) -> str:
    """A private_key_jwt client assertion: iss = sub = client_id, aud = the issuer, short-lived, unique jti."""
    now = int(time.time()) if now is None else now
    claims = {"iss": client_id, "sub": client_id, "aud": issuer, "jti": jti or new_jti(), "iat": now,
              "exp": now + lifetime, **(extra or {})}
    return jose.encode({"typ": "JWT", "kid": key.kid}, claims, key.key)


def rotation_proof(*, client_id: str, url: str, current: PartnerKey, new_kid: str, now: int | None = None) -> str:
    """The proof for `POST /v1/clients/me/keys`: signed by the current active key, naming the new key."""
    claims = {"iss": client_id, "aud": url, "new_kid": new_kid, "jti": new_jti(),
              "iat": int(time.time()) if now is None else now}
    return jose.encode({"typ": "JWT", "kid": current.kid}, claims, current.key)


def dpop_proof(
    *, key: PartnerKey, method: str, url: str, access_token: str | None = None, purpose: str | None = None,
    case_ref: str | None = None, officer: str | None = None, now: int | None = None, jti: str | None = None,
) -> str:
    """A DPoP proof for one request; `purpose`, `case_ref`, `officer` are protocol v1's extra claims."""
    claims: dict[str, Any] = {"jti": jti or new_jti(), "htm": method, "htu": url,
                              "iat": int(time.time()) if now is None else now}
    if access_token is not None:
        claims["ath"] = jose.sha256_b64(access_token)
    for name, value in (("purpose", purpose), ("case_ref", case_ref), ("officer", officer)):
        if value is not None:
            claims[name] = value
    return jose.encode({"typ": "dpop+jwt", "jwk": key.public_jwk}, claims, key.key)
