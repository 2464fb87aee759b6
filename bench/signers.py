"""Per-request signing for the cases that go through the released token machinery (protocol.md §2-4).

A partner signs every call: a fresh client assertion (private_key_jwt, RFC 7523) and DPoP proof (RFC 9449) for each
token request, a fresh DPoP proof bound to its access token for each API call, and a freshly sealed envelope (signed
with its `sign` key, encrypted to the exchange's `envelope-enc` key) for each request body. These signers do the same
in the load generator, with `exchange.partner.credentials` and `exchange.partner.envelopes` (the code a partner would
use), so the measured latency includes what a partner pays for its signatures and seals. See `harness.Signer` for the
contract.

The signers are plain, picklable data (private JWK dicts, ids, the issuer URL): they cross into the spawned
load-generator process; `bind()` parses the keys once per load thread there. The issuer must be the base URL the
server is reached at and its `EXCHANGE_ISSUER` (the harness sets both from the port): DPoP `htu` and the assertion's
`aud` are checked against it.

Bench-only: the keys here are generated per run for a scratch database and never leave the run's memory.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from harness import Signed

from exchange.partner.credentials import PartnerKey, client_assertion, dpop_proof
from exchange.partner.envelopes import PartnerEncryptionKey, PartnerKeys, PublishedKeys, seal_request
from exchange.protocol import jose
from exchange.protocol.encoding import b64url
from exchange.protocol.envelope import MEDIA_TYPE

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a secret)
RENEW_BEFORE_S = 30.0  # renew the access token (lifetime 300 s) when less than this is left
FORM = "application/x-www-form-urlencoded"
JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True)
class PartnerClient:
    """An agency client as the load generator sees it: its id, scopes and private keys (as JWK dicts, picklable).

    `auth_jwk` is the `auth` key registered with the exchange (signs client assertions); `sign_jwk` the registered
    Ed25519 `sign` key (signs request envelopes, `skid`); `enc_jwk` the registered X25519 `enc` key (the exchange
    seals its responses to it; the load generator never opens them); `dpop_jwk` is the key the client's tokens are
    bound to (signs DPoP proofs; not registered, as RFC 9449 intends). All private OKP JWKs (`kty`, `crv`, `x`, `d`)."""

    client_id: str
    agency: str
    scopes: tuple[str, ...]
    auth_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    dpop_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    sign_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    enc_jwk: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def generate(cls, *, client_id: str, agency: str, scopes: tuple[str, ...]) -> PartnerClient:
        keys = PartnerKeys.generate()  # auth, sign (Ed25519) and enc (X25519), as the partner library makes them
        return cls(client_id=client_id, agency=agency, scopes=scopes,
                   auth_jwk=keys.auth.key.as_dict(private=True),
                   dpop_jwk=PartnerKey.generate().key.as_dict(private=True),
                   sign_jwk=keys.sign.key.as_dict(private=True),
                   enc_jwk={**keys.enc.public_jwk, "d": b64url(bytes(keys.enc.private_key))})

    def auth_key(self) -> PartnerKey:
        return PartnerKey(key=jose.OKPKey.import_key(dict(self.auth_jwk)))

    def dpop_key(self) -> PartnerKey:
        return PartnerKey(key=jose.OKPKey.import_key(dict(self.dpop_jwk)))

    def partner_keys(self) -> PartnerKeys:
        """The long-lived keys as `exchange.partner.envelopes` takes them (`seal_request`, `open_reply`)."""
        return PartnerKeys(auth=self.auth_key(), sign=PartnerKey(key=jose.OKPKey.import_key(dict(self.sign_jwk))),
                           enc=PartnerEncryptionKey.from_jwk(self.enc_jwk))

    def registration(self) -> list[dict[str, Any]]:
        """The public `auth`, `sign` and `enc` keys as `ClientService.register` / `POST /v1/clients` take them."""
        return self.partner_keys().registration()


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


# ---- sealed writes: Authorization: DPoP <token> + DPoP proof + a request envelope ----------------------------------


def returnee_record(unique: str) -> dict[str, Any]:
    """A small, realistic `POST /v1/returnees` body (about 350 bytes of JSON): a fictional person reported with one
    passport, whose number is built from `unique` (a hex string) so that no two requests register the same document."""
    n = int(unique[-4:], 16)
    given, surname, latin, sex = _NAMES[n % len(_NAMES)]
    return {
        "person_name": {"given": given, "surname": surname, "patronymic": None},
        "name_variants": [{"value": latin, "script": "latn", "kind": "transliteration"}],
        "birth_date": f"19{85 + n % 12}-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "birth_place": ("Dushanbe", "Kulob", "Khujand", "Vahdat")[n % 4],
        "sex": sex,
        "citizenship": "TJ",
        "identifications": [{"category": "passport", "id": f"B{unique}", "issuer_country": "TJ",
                             "expires": "2031-05-31"}],
    }


_NAMES = (("Фарҳод", "Раҳимов", "Farhod Rakhimov", "male"), ("Зарина", "Каримова", "Zarina Karimova", "female"),
          ("Беҳруз", "Саидов", "Behruz Saidov", "male"), ("Дилноза", "Назарова", "Dilnoza Nazarova", "female"))


class JwksFetchFailed(RuntimeError):
    """The exchange's JWKS could not be fetched, or lists no usable `envelope-enc` key."""


def fetch_published_keys(host: str, port: int, timeout: float = 10.0) -> PublishedKeys:
    """`GET /.well-known/jwks.json` of the server, as the partner library reads it (`PublishedKeys.from_jwks`)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", JWKS_PATH)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise JwksFetchFailed(f"GET {JWKS_PATH} -> {response.status}: {body[:300]!r}")
    try:
        published = PublishedKeys.from_jwks(json.loads(body), fetched_at=time.time())
    except ValueError as e:
        raise JwksFetchFailed(f"GET {JWKS_PATH}: not a JWKS: {e}") from e
    if published.enc is None:
        raise JwksFetchFailed(f"GET {JWKS_PATH}: no envelope-enc key listed")
    return published


@dataclass(frozen=True)
class SealedApiSigner:
    """Signs API calls that carry a body, as the partner library sends them: `Authorization: DPoP <token>`, a fresh
    DPoP proof (`ath`, `purpose`) and a freshly sealed request envelope per request (`seal_request`: a new `msg_id`,
    Ed25519 with the client's `sign` key, SealedBox to the exchange's `envelope-enc` key), with
    `Content-Type: application/vnd.exchange.envelope.v1+json`.

    `make_body(unique)` builds each request's JSON value; `unique` differs for every request of every load thread
    (a random per-thread tag and a counter). It must be picklable (a module-level function). Each load thread fetches
    the exchange's JWKS once, in `bind()` (in the latency of its first request, with its first token); the response
    envelopes are not opened (the load generator measures; `exchange.partner.envelopes.open_reply` would)."""

    client: PartnerClient
    issuer: str
    purpose: str
    make_body: Callable[[str], Any] = returnee_record
    renew_before: float = RENEW_BEFORE_S

    def bind(self) -> _BoundSealedApi:
        return _BoundSealedApi(_Keys(self.client, self.issuer), self.purpose, self.renew_before, self.make_body)


class _BoundSealedApi(_BoundDPoPApi):
    def __init__(self, keys: _Keys, purpose: str, renew_before: float, make_body: Callable[[str], Any]) -> None:
        super().__init__(keys, purpose, renew_before)
        self.partner = keys.client.partner_keys()
        self.exchange = fetch_published_keys(self.host, self.port)
        self.make_body = make_body
        self.tag = os.urandom(4).hex()  # per thread (and per process: each load run spawns a new one)
        self.counter = itertools.count()

    def sign(self, method: str, path: str) -> Signed:
        authorised = super().sign(method, path)
        value = self.make_body(f"{self.tag}{next(self.counter):06x}")
        # `target` is the path (and query) exactly as on the request line: http.client sends `path` unchanged.
        body, _request = seal_request(agency=self.keys.client.agency, keys=self.partner, exchange=self.exchange,
                                      method=method, target=path, value=value, now=int(time.time()))
        return Signed(headers=(*authorised.headers, ("Content-Type", MEDIA_TYPE)), body=body)
