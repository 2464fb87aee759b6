"""Per-request signing for the cases that go through the released token machinery (protocol.md §2-3).

A partner signs every call: a fresh client assertion (private_key_jwt, RFC 7523) and DPoP proof (RFC 9449) for each
token request, a fresh DPoP proof bound to its access token for each API call. These signers do the same in the load
generator, with `exchange.client.credentials` (the code a partner would use), so the measured latency includes what
a partner pays for its signatures. See `harness.Signer` for the contract.

The signers are plain, picklable data (private JWK dicts, ids, the issuer URL): they cross into the spawned
load-generator process; `bind()` parses the keys once per load thread there. The issuer must be the base URL the
server is reached at and its `EXCHANGE_ISSUER` (the harness sets both from the port): DPoP `htu` and the assertion's
`aud` are checked against it.

Bench-only: the keys here are generated per run for a scratch database and never leave the run's memory.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from harness import Signed

from exchange.auth import jose
from exchange.client.credentials import PartnerKey, client_assertion, dpop_proof

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a secret)
RENEW_BEFORE_S = 30.0  # renew the access token (lifetime 300 s) when less than this is left
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class PartnerClient:
    """An agency client as the load generator sees it: its id, scopes and private keys (as JWK dicts, picklable).

    `auth_jwk` is the `auth` key registered with the exchange (signs client assertions); `dpop_jwk` is the key the
    client's tokens are bound to (signs DPoP proofs; not registered, as RFC 9449 intends)."""

    client_id: str
    agency: str
    scopes: tuple[str, ...]
    auth_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    dpop_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def generate(cls, *, client_id: str, agency: str, scopes: tuple[str, ...]) -> PartnerClient:
        return cls(client_id=client_id, agency=agency, scopes=scopes,
                   auth_jwk=PartnerKey.generate().key.as_dict(private=True),
                   dpop_jwk=PartnerKey.generate().key.as_dict(private=True))

    def auth_key(self) -> PartnerKey:
        return PartnerKey(key=jose.OKPKey.import_key(dict(self.auth_jwk)))

    def dpop_key(self) -> PartnerKey:
        return PartnerKey(key=jose.OKPKey.import_key(dict(self.dpop_jwk)))


class _Keys:
    """A client's keys parsed once, and the token request a partner sends (fresh assertion and proof each time)."""

    def __init__(self, client: PartnerClient, issuer: str) -> None:
        self.client = client
        self.issuer = issuer.rstrip("/")
        self.auth = client.auth_key()
        self.dpop = client.dpop_key()
        self.scope = " ".join(sorted(client.scopes))

    def token_request(self) -> Signed:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(client_id=self.client.client_id, issuer=self.issuer, key=self.auth),
        }
        proof = dpop_proof(key=self.dpop, method="POST", url=self.issuer + TOKEN_PATH)
        return Signed(headers=(("Content-Type", FORM), ("DPoP", proof)), body=urlencode(form).encode("ascii"))


# ---- token issuance: POST /oauth/token -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequestSigner:
    """Signs `POST /oauth/token`: the whole form (fresh client assertion) and a fresh DPoP proof, per request."""

    client: PartnerClient
    issuer: str

    def bind(self) -> _BoundTokenRequest:
        return _BoundTokenRequest(_Keys(self.client, self.issuer))


class _BoundTokenRequest:
    def __init__(self, keys: _Keys) -> None:
        self.keys = keys

    def sign(self, method: str, path: str) -> Signed:
        if (method, path) != ("POST", TOKEN_PATH):
            raise ValueError(f"TokenRequestSigner signs POST {TOKEN_PATH} only, not {method} {path}")
        return self.keys.token_request()


# ---- authorised API calls: Authorization: DPoP <token> + DPoP proof -----------------------------------------------


@dataclass(frozen=True)
class DPoPApiSigner:
    """Signs API calls: `Authorization: DPoP <token>` and a fresh DPoP proof (with `ath` and `purpose`) per request.

    Each load thread gets its own token on its first request and renews it, in the thread, when less than
    `renew_before` seconds of its lifetime are left; that request's latency includes the token request."""

    client: PartnerClient
    issuer: str
    purpose: str
    renew_before: float = RENEW_BEFORE_S

    def bind(self) -> _BoundDPoPApi:
        return _BoundDPoPApi(_Keys(self.client, self.issuer), self.purpose, self.renew_before)


class TokenRequestFailed(RuntimeError):
    """The exchange refused the signer's token request (or answered it with something that is not a token)."""


class _BoundDPoPApi:
    def __init__(self, keys: _Keys, purpose: str, renew_before: float) -> None:
        self.keys = keys
        self.purpose = purpose
        self.renew_before = renew_before
        self.token: str | None = None
        self.renew_at = 0.0  # time.monotonic() after which the token is renewed
        self.renewals = 0
        target = urlsplit(self.keys.issuer)
        if target.scheme != "http" or target.hostname is None:
            raise ValueError(f"the bench talks plain HTTP to loopback; issuer {self.keys.issuer!r}")
        self.host, self.port = target.hostname, target.port or 80

    def sign(self, method: str, path: str) -> Signed:
        if self.token is None or time.monotonic() >= self.renew_at:
            self.renew()
        assert self.token is not None
        proof = dpop_proof(key=self.keys.dpop, method=method, url=self.keys.issuer + path.split("?", 1)[0],
                           access_token=self.token, purpose=self.purpose)
        return Signed(headers=(("Authorization", f"DPoP {self.token}"), ("DPoP", proof)))

    def renew(self) -> None:
        request = self.keys.token_request()
        requested = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", TOKEN_PATH, body=request.body, headers=dict(request.headers))
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise TokenRequestFailed(f"POST {TOKEN_PATH} -> {response.status}: {body[:300]!r}")
        try:
            answer = json.loads(body)
            token, lifetime = str(answer["access_token"]), float(answer["expires_in"])
        except (ValueError, KeyError, TypeError) as e:
            raise TokenRequestFailed(f"POST {TOKEN_PATH} -> 200 without a usable token: {body[:300]!r}") from e
        self.token = token
        self.renew_at = requested + lifetime - self.renew_before  # counted from before the request: errs early
        self.renewals += 1
