"""The partner-agency client of the Returnee Exchange: typed methods over protocol v1, no raw envelopes.

    from exchange.partner.api import ExchangeClient

    with ExchangeClient.from_files("https://exchange.example", "interior-case-system", "interior",
                                   Path("/etc/exchange-client"), purpose="amnesty-vetting",
                                   officer="TJ-MVD-04411") as exchange:
        page = exchange.returnees.list(status="arrived", page_size=50)
        returnee = exchange.returnees.get(page.data["items"][0]["id"])
        exchange.returnees.transition(returnee.data["id"], "under_vetting", if_match=returnee.etag)
        exchange.using(purpose="reintegration", case_ref="MVD-2015-77").returnees.get(returnee.data["id"])

What one call does (protocol.md §1-5):

1. Discovery, once: `/.well-known/oauth-authorization-server` (its `issuer` must be the base URL, RFC 8414 §3.3, unless
   `issuer=` names another) and the JWKS, cached for `jwks_ttl` seconds and fetched again at once when the exchange
   answers `envelope_wrong_recipient` to a request or a response is signed by a key it does not list (keys rotate);
   at most once per call.
2. A DPoP-bound token (client credentials, private_key_jwt with the `auth` key, a DPoP proof of the client's
   ephemeral key), renewed when less than 30 s remain, and once more if the exchange answers 401 `invalid_token`.
3. A fresh DPoP proof per request: `htm`, `htu` (issuer + path, no query), `iat`, `ath`, `jti`, and `purpose`
   (required), `case_ref`, `officer`. A body (POST/PATCH) is sealed: signed with the `sign` key, encrypted to the
   exchange's `envelope-enc` key, for this method and request target (path with query exactly as sent).
4. A 2xx with a body must be an envelope sealed to the `enc` key, signed by a published `envelope-sign` key,
   answering this very request (`reply_to`, `request_hash`), fresh and never seen before; and its signed `audit`
   receipt must agree with the `Audit-Index`/`Audit-Leaf-Hash` headers. Anything else raises
   `ResponseVerificationError` and the content is dropped: unverified data is never returned.
5. Errors raise the typed exceptions of `exchange.partner.errors`, carrying the exchange's `code`.

Retries (`RetryPolicy`: 3 tries, exponential backoff with jitter capped at 2 s, `Retry-After` honoured up to 15 s)
happen only where repeating cannot store something twice. Every try has a fresh DPoP proof; a write's envelope is
sealed once and sent again unchanged (same `msg_id`), and the exchange answers a repeated `msg_id` whose call it
stored with that call's outcome (same record, status, ETag, Location; a fresh response envelope) instead of storing
it again, and carries it out if nothing was stored. So a write is as safe to repeat as a read:

- 503 (nothing was stored: `commit_failed`, key store or audit log unavailable): every method.
- 500 `audit_pending`, `response_withheld`, `commit_unknown` (stored, or maybe stored, the answer withheld), a
  gateway's 502/504, and any transport error: reads and writes in an envelope. Connection errors before sending
  (refused, connect timeout, no free connection): every request.
- Never a 4xx (apart from the one token renewal and the one JWKS refetch, which re-seals the same `msg_id` to the
  new key), never another 5xx (`internal_error` is a fault, not an outage).

Why httpx directly and not authlib's `OAuth2Client` (`authlib.integrations.httpx_client`): its token auth only knows
the `bearer` scheme (`TokenAuth.SIGN_METHODS`; a `token_type` of `DPoP` raises `UnsupportedTokenTypeError`) and has no
place for a per-request proof bound to the token (`ath`) and the request (`htm`/`htu`); its `PrivateKeyJWT` signs
assertions valid for an hour (the exchange allows 60 s) through joserfc's default registry, which warns on `EdDSA`
(see `exchange/auth/jose.py`). Bending it to DPoP would mean replacing the parts that matter, so the token request is
a plain form POST here, with the assertion and proofs of `exchange.partner.credentials`.

Every object here is safe to share between threads; `using()` makes a view with other call context (purpose,
case reference, officer) over the same connection, token and caches.
"""

from __future__ import annotations

import email.utils
import enum
import json
import os
import random
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, TypedDict, TypeVar, Unpack, cast

import httpx

from exchange.partner.credentials import PartnerKey, client_assertion, dpop_proof, rotation_proof
from exchange.partner.envelopes import (
    PartnerEncryptionKey,
    PartnerKeys,
    PublishedKeys,
    ResponseReplayCache,
    open_reply,
    seal_request,
)
from exchange.partner.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    ExchangeClientError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailed,
    PreconditionRequired,
    ResponseVerificationError,
    ServerError,
    TokenError,
    UnavailableError,
    ValidationError,
    error_from_response,
)
from exchange.partner.receipts import ReceiptFolder
from exchange.partner.tokens import CachedToken, TokenCache, token_scope
from exchange.protocol.audit_errors import VerificationError as AuditVerificationError
from exchange.protocol.checkpoint import NoteVerifier, SignedCheckpoint
from exchange.protocol.cosignature import WitnessPolicy, verify_witnessed
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.envelope import MEDIA_TYPE, AuditReceipt, OpenedEnvelope, RequestRef
from exchange.protocol.envelope_errors import EnvelopeError, UnknownKey
from exchange.protocol.files import atomic_write
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from exchange.protocol.receipts import INDEX_HEADER, LEAF_HASH_HEADER, SignedReceipt, verify_receipt

__all__ = [  # the error types are re-exported for convenience
    "AuthError",
    "BadRequestError",
    "BorderCrossings",
    "BorderInstructions",
    "CallContext",
    "Clients",
    "ConflictError",
    "ConnectionFailed",
    "Events",
    "ExchangeClient",
    "ExchangeClientError",
    "ForbiddenError",
    "HotlineContacts",
    "NotFoundError",
    "PartnerEncryptionKey",
    "PartnerKeys",
    "PreconditionFailed",
    "PreconditionRequired",
    "ProsecutorialDecisions",
    "ResponseVerificationError",
    "Result",
    "RetryPolicy",
    "Returnees",
    "Screening",
    "ServerError",
    "TokenError",
    "UnavailableError",
    "ValidationError",
    "VettingAssessments",
]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCEPT: Final = f"{MEDIA_TYPE}, application/json"
USER_AGENT: Final = "returnee-exchange-client/1"
MAX_RESPONSE_BYTES: Final = 16 << 20  # a page of 100 full interior views fits many times over
RENEW_MARGIN: Final = 30  # renew a token when fewer seconds than this remain
DEFAULT_TOKEN_LIFETIME: Final = 60  # if the token response names no expires_in
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# 500s after which the call is stored (or may be): the same request (same envelope) gets its outcome.
STORED_ANSWER_WITHHELD: Final = frozenset({"audit_pending", "response_withheld", "commit_unknown"})
# Transport errors after which the request cannot have reached the exchange: safe to repeat even a write.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport errors worth repeating an idempotent request after (not: unsupported protocol, bad URL, ...).
_TRANSIENT: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

ETag = int | str
ParamValue = str | int | float | bool | datetime | date | uuid.UUID
T = TypeVar("T")


class _Missing(enum.Enum):
    NO_BODY = enum.auto()


NO_BODY: Final = _Missing.NO_BODY


# --- configuration and results ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded retries: `attempts` tries in all; before try n+1 a delay drawn from [c/2, c] with
    c = min(max_delay, base_delay * 2**(n-1)), or `Retry-After` if the exchange asks for longer. A `Retry-After`
    above `max_retry_after` is not waited for: the 503 is raised at once (`UnavailableError`)."""

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 2.0
    max_retry_after: float = 15.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("attempts >= 1 and non-negative delays")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The delay before retry number `retry` (1 for the second try)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)  # noqa: S311  (jitter, not security)


NO_RETRY: Final = RetryPolicy(attempts=1)


@dataclass(frozen=True, kw_only=True)
class CallContext:
    """What a call declares about itself in its DPoP proof: `purpose` (required by the exchange), `case_ref`,
    `officer` (the human operator, logged, never trusted for authorisation)."""

    purpose: str | None = None
    case_ref: str | None = None
    officer: str | None = None


@dataclass(frozen=True, kw_only=True)
class Result:
    """A verified answer: `data` is the opened envelope's JSON (the caller's agency view), `audit` the signed
    receipt of the audit entry that recorded the call. `etag`, `location` and `request_id` are the response's
    headers. `repr` leaves `data` out (it holds personal data)."""

    data: Any = field(repr=False)
    status: int
    etag: str | None = None
    location: str | None = None
    request_id: str | None = None
    audit: AuditReceipt | None = None
    msg_id: str | None = None  # the response envelope's msg_id

    @property
    def version(self) -> int | None:
        """The record version named by a strong ETag (`"3"` -> 3)."""
        if self.etag and len(self.etag) > 2 and self.etag[0] == self.etag[-1] == '"' and self.etag[1:-1].isdigit():
            return int(self.etag[1:-1])
        return None


@dataclass(frozen=True)
class _Metadata:
    issuer: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class _Attempt:
    request: RequestRef
    token: str


def _if_match(value: ETag) -> str:
    """`If-Match` from a version (3), an ETag as received ('"3"'), a bare version string ("3"), or "*"."""
    if isinstance(value, bool):
        raise TypeError("if_match is a version, an ETag or '*'")
    if isinstance(value, int):
        return f'"{value}"'
    text = value.strip()
    if text == "*" or (len(text) >= 2 and text[0] == text[-1] == '"'):
        return text
    if text.isdigit():
        return f'"{text}"'
    raise ValueError("if_match is a version, an ETag as received (such as '\"3\"') or '*'")


def _param(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _query(params: Mapping[str, ParamValue | None] | None) -> str:
    """`?a=b&c=d`, everything outside the unreserved characters percent-encoded, so that the target sealed in the
    envelope is byte for byte the request target httpx sends."""
    pairs = [(name, _param(value)) for name, value in (params or {}).items() if value is not None]
    if not pairs:
        return ""
    return "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe="")


def _segment(value: str | uuid.UUID) -> str:
    text = str(value)
    if not text:
        raise ValueError("an empty id")
    return urllib.parse.quote(text, safe="")


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip().lower()


def _answer_withheld(response: httpx.Response) -> bool:
    """A 500 saying the call was (or may have been) stored but its answer withheld, or a gateway's 502/504."""
    if response.status_code in (502, 504):
        return True
    if response.status_code != 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("code") in STORED_ANSWER_WITHHELD


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP-date), None if absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# --- the connection: discovery, tokens, sending, verifying ------------------------------------------------------------

class _Connection:
    """Shared by an `ExchangeClient` and its `using()` views: the HTTP client, keys, caches and token."""

    def __init__(
        self, *, base_url: str, client_id: str, agency: str, keys: PartnerKeys, scopes: Sequence[str],
        issuer: str | None, http: httpx.Client, owns_http: bool, retry: RetryPolicy, jwks_ttl: float,
        max_response_bytes: int, clock: Callable[[], float], sleep: Callable[[float], None], rng: random.Random,
        token_cache: TokenCache | None = None,
    ) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.agency = agency
        self.keys = keys
        self.scopes = scopes
        self.kept_checkpoint: SignedCheckpoint | None = None  # the last audit checkpoint this client verified
        self.receipts: ReceiptFolder | None = None  # where verified audit receipts are kept (witness.md §2)
        self.witnesses = WitnessPolicy.none()  # the verifier's own quorum (witness.md §4)
        self.expected_issuer = issuer
        self.http = http
        self.owns_http = owns_http
        self.retry = retry
        self.jwks_ttl = jwks_ttl
        self.max_response_bytes = max_response_bytes
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.dpop_key = PartnerKey.generate()  # ephemeral: tokens are bound to this client instance
        self.replay = ResponseReplayCache(clock)
        self._discovery_lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._metadata: _Metadata | None = None
        self._published: PublishedKeys | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_margin = float(RENEW_MARGIN)
        self.token_cache = token_cache
        self.token_scope = token_scope(base_url=base_url, client_id=client_id, scopes=scopes, auth=keys.auth)
        cached = token_cache.load(self.token_scope) if token_cache is not None else None
        if cached is not None:  # a token of an earlier run, with the DPoP key it is bound to
            self.dpop_key, self._token, self._token_expires_at = cached.dpop_key, cached.access_token, cached.expires_at

    # -- sending, with bounded retries --

    def send(self, prepare: Callable[[], tuple[httpx.Request, T]], *, idempotent: bool) -> tuple[httpx.Response, T]:
        """Send `prepare()`'s request (a new one for every try: fresh DPoP proof; a write's envelope is the same),
        retrying as the module docstring says. `idempotent`: repeating the request cannot store anything twice (a
        read, or a write in an envelope, which the exchange deduplicates by its msg_id). Returns the last response;
        raises `ConnectionFailed` if no HTTP answer came back."""
        policy = self.retry
        for attempt in range(1, policy.attempts + 1):
            request, context = prepare()
            last = attempt == policy.attempts
            try:
                response = self.http.send(request)
            except httpx.TransportError as e:
                retryable = isinstance(e, _NOT_SENT) or (idempotent and isinstance(e, _TRANSIENT))
                if retryable and not last:
                    self.sleep(policy.backoff(attempt, self.rng))
                    continue
                raise ConnectionFailed("connection_failed", 0,
                                       f"No answer from the exchange ({type(e).__name__}).") from e
            if idempotent and not last and _answer_withheld(response):
                response.close()  # stored (or maybe stored), its answer lost: the same request gets it back
                self.sleep(policy.backoff(attempt, self.rng))
                continue
            if response.status_code == 503 and not last:
                delay = policy.backoff(attempt, self.rng)
                asked = _retry_after(response, self.clock())
                if asked is not None:
                    if asked > policy.max_retry_after:
                        return response, context
                    delay = max(delay, asked)
                response.close()
                self.sleep(delay)
                continue
            return response, context
        raise AssertionError("unreachable: the last try returns or raises")

    def get_json(self, url: str) -> Any:
        response, _ = self.send(lambda: (self.http.build_request("GET", url, headers=self._headers()), None),
                                idempotent=True)
        if not response.is_success:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError as e:
            raise ResponseVerificationError("discovery_invalid", f"GET {url} did not answer JSON.",
                                            response.headers.get("X-Request-ID")) from e

    @staticmethod
    def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Accept": ACCEPT, "User-Agent": USER_AGENT, **(extra or {})}

    # -- discovery --

    def metadata(self) -> _Metadata:
        with self._discovery_lock:
            if self._metadata is None:
                body = self.get_json(f"{self.base_url}/.well-known/oauth-authorization-server")
                if not isinstance(body, dict):
                    raise ResponseVerificationError("discovery_invalid", "The metadata is not a JSON object.")
                issuer, token_endpoint = body.get("issuer"), body.get("token_endpoint")
                jwks_uri = body.get("jwks_uri") or f"{self.base_url}/.well-known/jwks.json"
                if not (isinstance(issuer, str) and issuer and isinstance(token_endpoint, str) and token_endpoint
                        and isinstance(jwks_uri, str)):
                    raise ResponseVerificationError("discovery_invalid",
                                                    "The metadata lacks issuer, token_endpoint or jwks_uri.")
                expected = self.expected_issuer or self.base_url
                if issuer != expected:
                    raise ResponseVerificationError(
                        "issuer_mismatch", f"The exchange names itself {issuer!r}, not {expected!r} (RFC 8414 §3.3): "
                        "the server's EXCHANGE_ISSUER must be the URL partners use (its operator sets it and restarts "
                        f"it); pass issuer={issuer!r} only if you reach that exchange through another address.")
                self._metadata = _Metadata(issuer=issuer, token_endpoint=token_endpoint, jwks_uri=jwks_uri)
            return self._metadata

    def published_keys(self, *, refresh: bool = False) -> PublishedKeys:
        """The exchange's envelope keys, from the cache unless `refresh` or older than `jwks_ttl`."""
        jwks_uri = self.metadata().jwks_uri
        with self._discovery_lock:
            now = self.clock()
            published = self._published
            if refresh or published is None or now - published.fetched_at >= self.jwks_ttl:
                try:
                    published = PublishedKeys.from_jwks(self.get_json(jwks_uri), fetched_at=now)
                except ValueError as e:
                    raise ResponseVerificationError("discovery_invalid", "The exchange's JWKS is not usable.") from e
                self._published = published
            return published

    # -- tokens --

    def token(self) -> str:
        """A token with more than 30 s (or half its lifetime) left: the cached one or a new one."""
        with self._token_lock:
            if self._token is None or self._token_expires_at - self.clock() < self._token_margin:
                self._token = None
                self._token, lifetime = self._fetch_token()
                self._token_expires_at = self.clock() + lifetime
                self._token_margin = min(float(RENEW_MARGIN), lifetime / 2)
                if self.token_cache is not None:
                    self.token_cache.save(self.token_scope, CachedToken(
                        access_token=self._token, expires_at=self._token_expires_at, dpop_key=self.dpop_key))
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` (the exchange refused it), unless another thread already replaced it."""
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        meta = self.metadata()

        def prepare() -> tuple[httpx.Request, None]:
            now = int(self.clock())
            form = {"grant_type": "client_credentials", "scope": " ".join(self.scopes),
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": client_assertion(client_id=self.client_id, issuer=meta.issuer,
                                                         key=self.keys.auth, now=now)}
            proof = dpop_proof(key=self.dpop_key, method="POST", url=meta.token_endpoint, now=now)
            headers = self._headers({"DPoP": proof, "Accept": "application/json"})
            return self.http.build_request("POST", meta.token_endpoint, data=form, headers=headers), None

        started = self.clock()
        # A token request stores nothing that matters if repeated (a new assertion, a new proof, another token).
        response, _ = self.send(prepare, idempotent=True)
        if not response.is_success:
            raise error_from_response(response, token_endpoint=True)
        request_id = response.headers.get("X-Request-ID")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise TokenError("invalid_token_response", response.status_code,
                             "The token endpoint answered without an access_token.", None, request_id)
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "dpop":
            raise TokenError("unexpected_token_type", response.status_code,
                             "The token endpoint issued a token that is not DPoP-bound.", None, request_id)
        expires_in = body.get("expires_in")
        lifetime = (float(expires_in) if isinstance(expires_in, int) and not isinstance(expires_in, bool)
                    and expires_in > 0 else float(DEFAULT_TOKEN_LIFETIME))
        return body["access_token"], lifetime - (self.clock() - started)

    # -- API calls --

    def call(
        self, method: str, path: str, *, context: CallContext, params: Mapping[str, ParamValue | None] | None = None,
        body: Any = NO_BODY, if_match: ETag | None = None, signed_text: bool = False, timeout: float | None = None,
    ) -> Result:
        method = method.upper()
        if not context.purpose:
            choices = ", ".join(sorted(PURPOSES.get(self.agency, ())))
            raise ValueError(f"declare a purpose of use for {method} {path}: a client of agency {self.agency!r} "
                             f"calls for one of {choices} (ExchangeClient(purpose=...) or client.using(purpose=...)); "
                             f"if this client is not {self.agency!r}'s, pass the agency it was registered for")
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError("path is an absolute path without query; pass filters as params")
        url = httpx.URL(self.base_url + path + _query(params))
        target = url.raw_path.decode("ascii")  # path and query exactly as httpx puts them on the request line
        htu = self.metadata().issuer + urllib.parse.unquote(path)
        has_body = body is not NO_BODY
        extra = {"If-Match": _if_match(if_match)} if if_match is not None else {}
        # The envelope is sealed once and sent again unchanged by every retry: the exchange answers a repeated
        # msg_id with the stored outcome, so a retry can never store the write twice. Only a new envelope-enc key
        # (envelope_wrong_recipient: nothing was opened) re-seals it, with the same msg_id.
        sealed: dict[str, tuple[bytes, RequestRef]] = {}

        def prepare() -> tuple[httpx.Request, _Attempt]:
            token = self.token()
            now = int(self.clock())
            proof = dpop_proof(key=self.dpop_key, method=method, url=htu, access_token=token,
                               purpose=context.purpose, case_ref=context.case_ref, officer=context.officer, now=now)
            headers = self._headers({"Authorization": f"DPoP {token}", "DPoP": proof, **extra})
            content: bytes | None = None
            if has_body:
                published = self.published_keys()
                kid = published.enc_kid or ""
                if kid not in sealed:
                    msg_id = next((ref.reply_to for _, ref in sealed.values()), None)
                    try:
                        sealed[kid] = seal_request(agency=self.agency, keys=self.keys, exchange=published,
                                                   method=method, target=target, value=body, now=now, msg_id=msg_id)
                    except ValueError as e:  # no envelope-enc key published (or a value that is not JSON)
                        if published.enc is None:
                            raise ResponseVerificationError(
                                "discovery_invalid", "The exchange's JWKS lists no envelope-enc key.") from e
                        raise
                content, ref = sealed[kid]
                headers["Content-Type"] = MEDIA_TYPE
            else:
                ref = RequestRef.of_proof(proof, method=method, target=target)
            options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            return (self.http.build_request(method, url, headers=headers, content=content, **options),
                    _Attempt(ref, token))

        renewed = refetched = False
        while True:
            response, attempt = self.send(prepare, idempotent=method in IDEMPOTENT or has_body)
            if response.is_success:
                if signed_text and _media_type(response) == "text/plain":
                    # A document that carries its own signature (a signed checkpoint note), which the caller
                    # verifies: the one kind of answer the exchange does not envelope.
                    return Result(data=response.text, status=response.status_code,
                                  request_id=response.headers.get("X-Request-ID"))
                return self._read(response, attempt.request)
            error = error_from_response(response)
            if error.status == 401 and error.code == "invalid_token" and not renewed:
                renewed = True  # expired early, revoked, or the exchange restarted: one new token, one more try
                self.invalidate(attempt.token)
                continue
            if has_body and error.code == "envelope_wrong_recipient" and not refetched:
                refetched = True  # the exchange rotated its envelope-enc key: seal to the new one, once
                self.published_keys(refresh=True)
                continue
            raise error

    def _read(self, response: httpx.Response, request: RequestRef) -> Result:
        request_id = response.headers.get("X-Request-ID")
        headers = {"status": response.status_code, "etag": response.headers.get("ETag"),
                   "location": response.headers.get("Location"), "request_id": request_id}
        if not response.content:
            return Result(data=None, **headers)
        if _media_type(response) != MEDIA_TYPE:
            raise ResponseVerificationError("response_not_enveloped",
                                            "The exchange answered without an envelope; the answer was discarded.",
                                            request_id)
        opened = self._open(response.content, request, request_id)
        audit = opened.header.audit
        index, leaf_hash = response.headers.get(INDEX_HEADER), response.headers.get(LEAF_HASH_HEADER)
        if audit is None or (index is not None and index != str(audit.index)) or (
                leaf_hash is not None and leaf_hash != audit.leaf_hash):
            raise ResponseVerificationError("audit_receipt_mismatch",
                                            "The audit headers disagree with the signed audit receipt.", request_id)
        self._keep_receipt(audit, request_id)
        return Result(data=opened.json, audit=audit, msg_id=opened.header.msg_id, **headers)

    def _keep_receipt(self, audit: AuditReceipt, request_id: str | None) -> None:
        """Verify the receipt's signature by the exchange's `audit` key and keep it (witness.md §2)."""
        if audit.time is None or audit.log is None or audit.sig is None:
            raise ResponseVerificationError("audit_receipt_unsigned",
                                            "The response's audit receipt is not signed by the log.", request_id)
        receipt = SignedReceipt(index=audit.index, leaf_hash=b64url_decode(audit.leaf_hash), time=audit.time,
                                log=audit.log, sig=b64url_decode(audit.sig))
        try:
            try:
                receipt.verify(self.published_keys().audit)
            except AuditVerificationError:  # the exchange may have rotated its audit key since the JWKS was fetched
                receipt.verify(self.published_keys(refresh=True).audit)
        except AuditVerificationError as e:
            raise ResponseVerificationError("audit_receipt_invalid", f"The audit receipt does not verify: {e}",
                                            request_id) from e
        if self.receipts is not None:
            self.receipts.keep(receipt)

    def _open(self, body: bytes, request: RequestRef, request_id: str | None) -> OpenedEnvelope:
        try:
            try:
                return self._open_with(body, request, self.published_keys())
            except UnknownKey:
                # Signed by a key we do not know yet: the exchange may have rotated its envelope-sign key. Step 8
                # fails before the replay check (10), so the same envelope can be opened again.
                return self._open_with(body, request, self.published_keys(refresh=True))
        except EnvelopeError as e:
            raise ResponseVerificationError(e.code, f"The response failed verification: {e.message}",
                                            request_id) from e

    def _open_with(self, body: bytes, request: RequestRef, published: PublishedKeys) -> OpenedEnvelope:
        return open_reply(body, request=request, agency=self.agency, keys=self.keys, exchange=published,
                          replay=self.replay, now=int(self.clock()), max_bytes=self.max_response_bytes)

    def close(self) -> None:
        if self.owns_http:
            self.http.close()


# --- the client -------------------------------------------------------------------------------------------------------

class ExchangeClient:
    """A partner agency's client of the exchange. See the module docstring for what each call does.

    `base_url`: the exchange (its issuer, such as `https://exchange.example`); `client_id`, `agency`: as registered;
    `keys`: the client's `auth`, `sign` and `enc` keys; `scopes`: what to ask tokens for (default: every scope of the
    agency; ask only for what the client was granted); `purpose`, `case_ref`, `officer`: the default call context
    (`purpose` defaults to the agency's only purpose of use where it has one). `http` or `transport`: an httpx client
    or transport to use (tests pass `httpx.MockTransport`); `retry`: the retry policy; `jwks_ttl`: how long the
    exchange's keys are cached; `max_response_bytes`: the largest response envelope opened; `clock`, `sleep`, `rng`:
    for tests; `token_cache`: where to keep the token between runs (`exchange.partner.tokens.FileTokenCache`, for
    tools that make one call per process)."""

    def __init__(
        self, base_url: str, *, client_id: str, agency: str, keys: PartnerKeys, scopes: Iterable[str] | None = None,
        purpose: str | None = None, case_ref: str | None = None, officer: str | None = None,
        issuer: str | None = None, http: httpx.Client | None = None, transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0, retry: RetryPolicy | None = None, jwks_ttl: float = 300.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES, clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
        token_cache: TokenCache | None = None,
        receipts: Path | str | None = None, witnesses: WitnessPolicy | None = None,
    ) -> None:
        if scopes is None:
            if agency not in AGENCY_SCOPES:
                raise ValueError(f"unknown agency {agency!r}: the agencies are {', '.join(sorted(AGENCY_SCOPES))} "
                                 "(or pass scopes= for a client with other scopes)")
            scopes = AGENCY_SCOPES[agency]
        scope_list = sorted(set(scopes))
        if not scope_list:
            raise ValueError("ask for at least one scope")
        if http is not None and transport is not None:
            raise ValueError("pass http or transport, not both")
        own = http is None
        if http is None:
            http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        if purpose is None and len(PURPOSES.get(agency, ())) == 1:
            purpose = next(iter(PURPOSES[agency]))
        connection = _Connection(
            base_url=base_url.rstrip("/"), client_id=client_id, agency=agency, keys=keys, scopes=scope_list,
            issuer=issuer.rstrip("/") if issuer else None, http=http, owns_http=own,
            retry=retry or RetryPolicy(), jwks_ttl=jwks_ttl, max_response_bytes=max_response_bytes, clock=clock,
            sleep=sleep, rng=rng or random.Random(),  # noqa: S311  (jitter, not security)
            token_cache=token_cache,
        )
        if receipts is not None:
            connection.receipts = ReceiptFolder(receipts)
        if witnesses is not None:
            connection.witnesses = witnesses
        self._bind(connection, CallContext(purpose=purpose, case_ref=case_ref, officer=officer))

    def _bind(self, connection: _Connection, context: CallContext) -> None:
        self._connection = connection
        self.context = context
        self.returnees = Returnees(self)
        self.hotline_contacts = HotlineContacts(self)
        self.border_instructions = BorderInstructions(self)
        self.border_crossings = BorderCrossings(self)
        self.vetting_assessments = VettingAssessments(self)
        self.prosecutorial_decisions = ProsecutorialDecisions(self)
        self.screening = Screening(self)
        self.events = Events(self)
        self.clients = Clients(self)
        self.audit = Audit(self)

    @classmethod
    def from_files(cls, base_url: str, client_id: str, agency: str, key_dir: Path | str,
                   **options: Any) -> ExchangeClient:
        """A client whose keys are `auth.jwk.json`, `sign.jwk.json` and `enc.jwk.json` in `key_dir` (private JWKs;
        make them with `PartnerKeys.generate().save(key_dir)`). `options` as for the constructor."""
        return cls(base_url, client_id=client_id, agency=agency, keys=PartnerKeys.load(Path(key_dir)), **options)

    @property
    def client_id(self) -> str:
        return self._connection.client_id

    @property
    def agency(self) -> str:
        return self._connection.agency

    @property
    def dpop_jkt(self) -> str:
        """The thumbprint of this instance's DPoP key (the `cnf.jkt` of its tokens)."""
        return self._connection.dpop_key.kid

    def using(self, *, purpose: str | None = None, case_ref: str | None = None,
              officer: str | None = None) -> ExchangeClient:
        """A view of this client with another call context (what is not given is inherited), sharing its
        connection, token and caches: `client.using(purpose="amnesty-review", case_ref="GP-17").returnees.get(id)`."""
        changes = {k: v for k, v in (("purpose", purpose), ("case_ref", case_ref), ("officer", officer)) if v}
        view = object.__new__(ExchangeClient)
        view._bind(self._connection, replace(self.context, **changes))
        return view

    def call(self, method: str, path: str, *, params: Mapping[str, ParamValue | None] | None = None,
             body: Any = NO_BODY, if_match: ETag | None = None) -> Result:
        """Any `/v1` call, sealed and verified like the typed ones: `path` without query, `params` its query,
        `body` a JSON value to seal (omit it for a bodiless request)."""
        return self._connection.call(method, path, context=self.context, params=params, body=body,
                                     if_match=if_match)

    def published_keys(self) -> PublishedKeys:
        """The exchange's published envelope keys (cached; what a `WebhookReceiver` verifies deliveries with)."""
        return self._connection.published_keys()

    def token(self) -> str:
        """A current access token (fetched or renewed as needed); for diagnostics and tools."""
        return self._connection.token()

    def close(self) -> None:
        """Close the HTTP client if this library made it (also closes every `using()` view)."""
        self._connection.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExchangeClient({self._connection.base_url!r}, client_id={self.client_id!r}, agency={self.agency!r})"


# --- resources --------------------------------------------------------------------------------------------------------

class _Resource:
    path: ClassVar[str]

    def __init__(self, client: ExchangeClient) -> None:
        self._client = client

    def _item(self, record_id: str | uuid.UUID, suffix: str = "") -> str:
        return f"{self.path}/{_segment(record_id)}{suffix}"

    def _list(self, page: int, page_size: int | None, filters: Mapping[str, Any]) -> Result:
        return self._client.call("GET", self.path, params={**filters, "page": page, "page_size": page_size})

    def _iterate(self, page_size: int, filters: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            data = self._list(page, page_size, filters).data
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ResponseVerificationError("unexpected_content", "A page without items.")
            yield from items
            total = data.get("total")
            if not items or not isinstance(total, int) or page * page_size >= total:
                return
            page += 1


class _Records(_Resource):
    """A record kind with list, get, create (POST) and update (PATCH with If-Match)."""

    def get(self, record_id: str | uuid.UUID) -> Result:
        """The record as the caller's agency may see it; `etag` is its version for a later update."""
        return self._client.call("GET", self._item(record_id))

    def create(self, record: Mapping[str, Any]) -> Result:
        """Create a record (201; `location` and `etag` of the new record)."""
        return self._client.call("POST", self.path, body=dict(record))

    def update(self, record_id: str | uuid.UUID, changes: Mapping[str, Any], *, if_match: ETag) -> Result:
        """Change a record: `if_match` is the ETag (or version) read; `PreconditionFailed` if someone wrote since,
        and `"*"` overwrites whatever is current."""
        return self._client.call("PATCH", self._item(record_id), body=dict(changes), if_match=if_match)


class ReturneeFilters(TypedDict, total=False):
    status: str
    risk_level: str
    citizenship: str
    register_number: str
    updated_since: datetime


class Returnees(_Records):
    path = "/v1/returnees"

    def list(self, *, page: int = 1, page_size: int | None = None, **filters: Unpack[ReturneeFilters]) -> Result:
        """A page `{"items", "page", "page_size", "total"}` (page_size 1-100)."""
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100, **filters: Unpack[ReturneeFilters]) -> Iterator[dict[str, Any]]:
        """Every matching returnee, page after page."""
        return self._iterate(page_size, filters)

    def transition(self, returnee_id: str | uuid.UUID, to: str, *, if_match: ETag | None = None) -> Result:
        """Move a returnee to status `to`; `ConflictError` (`invalid_transition`) if the lifecycle or the caller's
        agency forbids it. `if_match` optional."""
        return self._client.call("POST", self._item(returnee_id, "/transitions"), body={"to": to},
                                 if_match=if_match)


class HotlineContactFilters(TypedDict, total=False):
    returnee_id: str | uuid.UUID
    channel: str


class HotlineContacts(_Records):
    path = "/v1/hotline-contacts"

    def list(self, *, page: int = 1, page_size: int | None = None,
             **filters: Unpack[HotlineContactFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100, **filters: Unpack[HotlineContactFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)


class BorderInstructionFilters(TypedDict, total=False):
    returnee_id: str | uuid.UUID
    instruction: str
    active_at: datetime


class BorderInstructions(_Records):
    path = "/v1/border-instructions"

    def list(self, *, page: int = 1, page_size: int | None = None,
             **filters: Unpack[BorderInstructionFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100,
                **filters: Unpack[BorderInstructionFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)


class BorderCrossingFilters(TypedDict, total=False):
    returnee_id: str | uuid.UUID
    crossing_point: str
    direction: str
    unmatched: bool
    flagged_for_interior: bool
    occurred_from: datetime
    occurred_to: datetime


class BorderCrossings(_Records):
    path = "/v1/border-crossings"

    def list(self, *, page: int = 1, page_size: int | None = None,
             **filters: Unpack[BorderCrossingFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100, **filters: Unpack[BorderCrossingFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)


class VettingAssessmentFilters(TypedDict, total=False):
    returnee_id: str | uuid.UUID
    risk_level: str


class VettingAssessments(_Records):
    path = "/v1/vetting-assessments"

    def list(self, *, page: int = 1, page_size: int | None = None,
             **filters: Unpack[VettingAssessmentFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100,
                **filters: Unpack[VettingAssessmentFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)


class ProsecutorialDecisionFilters(TypedDict, total=False):
    returnee_id: str | uuid.UUID
    decision: str
    case_number: str


class ProsecutorialDecisions(_Records):
    path = "/v1/prosecutorial-decisions"

    def list(self, *, page: int = 1, page_size: int | None = None,
             **filters: Unpack[ProsecutorialDecisionFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100,
                **filters: Unpack[ProsecutorialDecisionFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)


class Screening(_Resource):
    """Border screening (`POST /v1/screening`): ranked candidates with scores, in the border view."""

    path = "/v1/screening"

    def by_name(self, name: str, *, birth_date: str | None = None, limit: int | None = None,
                min_score: float | None = None) -> Result:
        """Transliteration-aware, typo-tolerant name search; `birth_date` may be partial (`1975`, `1975-05`)."""
        query: dict[str, Any] = {"name": name, "birth_date": birth_date, "limit": limit, "min_score": min_score}
        return self._client.call("POST", self.path, body={k: v for k, v in query.items() if v is not None})

    def by_document(self, document_number: str, *, limit: int | None = None) -> Result:
        """Exact match after normalisation (spaces, dashes, Cyrillic look-alike letters)."""
        query: dict[str, Any] = {"document_number": document_number, "limit": limit}
        return self._client.call("POST", self.path, body={k: v for k, v in query.items() if v is not None})


    def manifest(self, travellers: Sequence[Mapping[str, Any]], *, limit: int | None = None,
                 min_score: float | None = None) -> Result:
        """Screen a manifest of up to 500 travellers (`name`, `birth_date`, `document_number`, `nationality`,
        `flight` or `crossing_point`, `expected_arrival`): one answer with each traveller's candidates."""
        body: dict[str, Any] = {"travellers": [dict(t) for t in travellers], "limit": limit, "min_score": min_score}
        return self._client.call("POST", "/v1/screening/manifests",
                                 body={k: v for k, v in body.items() if v is not None})


class Events(_Resource):
    """Your agency's events (`GET /v1/events`, events.md): pull them with `poll`, or `follow` them for ever."""

    path = "/v1/events"

    def poll(self, *, after: str | None = None, wait: int = 0, limit: int | None = None) -> Result:
        """One read: `{"events": [...], "next": cursor}`; with `wait` (0-30 s) the exchange holds the call until an
        event arrives. A cursor past retention raises `BadRequestError` with code `cursor_expired` (410)."""
        if not 0 <= wait <= 30:
            raise ValueError("wait is 0 to 30 seconds")
        connection = self._client._connection
        return connection.call("GET", self.path, context=self._client.context,
                               params={"after": after, "wait": wait or None, "limit": limit},
                               timeout=connection.http.timeout.read + wait if connection.http.timeout.read else None)

    def follow(self, *, cursor_file: Path | str | None = None, after: str | None = None, wait: int = 25,
               limit: int | None = None, stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """Every event from the cursor on, for ever (or until `stop` is set), long-polling `wait` seconds at a time.

        With `cursor_file`, the cursor is read from it at the start (if it exists; else `after`, else the oldest
        retained event) and written to it (atomically) once every event of a page has been taken from the generator:
        after a restart, following resumes where it stopped. Delivery is at least once (a page being worked on when
        the process stopped comes again): de-duplicate by the event's `id`. A cursor past retention raises
        `BadRequestError` (`cursor_expired`): reconcile by reading the register, then delete the file."""
        path = Path(cursor_file) if cursor_file is not None else None
        cursor = after
        if path is not None and path.exists():
            cursor = path.read_text(encoding="ascii").strip() or after
        while stop is None or not stop.is_set():
            page = self.poll(after=cursor, wait=wait, limit=limit).data
            if not isinstance(page, dict) or not isinstance(page.get("events"), list) or \
                    not isinstance(page.get("next"), str):
                raise ResponseVerificationError("unexpected_content", "An events page without events or next.")
            yield from page["events"]
            if page["next"] != cursor:
                cursor = page["next"]
                if path is not None:
                    atomic_write(path, cursor.encode("ascii"), prefix=".cursor-")


class ClientFilters(TypedDict, total=False):
    agency: str
    status: str


class Clients(_Resource):
    """Agency clients, for security officers (`clients:admin`, purpose `key-management`)."""

    path = "/v1/clients"

    def list(self, *, page: int = 1, page_size: int | None = None, **filters: Unpack[ClientFilters]) -> Result:
        return self._list(page, page_size, filters)

    def iterate(self, *, page_size: int = 100, **filters: Unpack[ClientFilters]) -> Iterator[dict[str, Any]]:
        return self._iterate(page_size, filters)

    def get(self, client_id: str) -> Result:
        return self._client.call("GET", self._item(client_id))

    def create(self, *, client_id: str, agency: str, name: str, scopes: Iterable[str],
               keys: Iterable[Mapping[str, Any]]) -> Result:
        """Register a client with its public keys (`PartnerKeys.registration()` gives `keys`)."""
        return self._client.call("POST", self.path, body={
            "client_id": client_id, "agency": agency, "name": name, "scopes": sorted(set(scopes)),
            "keys": [dict(k) for k in keys]})

    def update(self, client_id: str, changes: Mapping[str, Any], *, if_match: ETag) -> Result:
        return self._client.call("PATCH", self._item(client_id), body=dict(changes), if_match=if_match)

    def suspend(self, client_id: str, *, reason: str, if_match: ETag) -> Result:
        """Suspend a client: its tokens stop working at once. `if_match="*"` to suspend whatever its version."""
        return self.update(client_id, {"status": "suspended", "status_reason": reason}, if_match=if_match)

    def resume(self, client_id: str, *, if_match: ETag, reason: str | None = None) -> Result:
        changes: dict[str, Any] = {"status": "active"}
        if reason:
            changes["status_reason"] = reason
        return self.update(client_id, changes, if_match=if_match)

    def add_key(self, client_id: str, *, purpose: str, jwk: Mapping[str, Any]) -> Result:
        """Register another public key (`auth`, `sign` or `enc`) for a client."""
        return self._client.call("POST", self._item(client_id, "/keys"), body={"purpose": purpose, "jwk": dict(jwk)})

    def rotate_own_key(self, *, purpose: str, new_jwk: Mapping[str, Any], current: PartnerKey) -> Result:
        """Replace this client's own `purpose` key by `new_jwk` (public), proven by `current`: the active key of
        that purpose (the `sign` key when replacing `enc`). The old key keeps working for an overlap of ~11 minutes;
        switch to the new private key now."""
        from exchange.protocol.encoding import okp_thumbprint

        new_kid = okp_thumbprint(str(new_jwk.get("crv")), str(new_jwk.get("x")))
        issuer = self._client._connection.metadata().issuer.rstrip("/")  # the server checks aud against it
        proof = rotation_proof(client_id=self._client.client_id, url=f"{issuer}{self.path}/me/keys", current=current,
                               new_kid=new_kid)
        return self._client.call("POST", f"{self.path}/me/keys",
                                 body={"purpose": purpose, "jwk": dict(new_jwk), "proof": proof})

    def revoke_key(self, client_id: str, kid: str, *, reason: str) -> Result:
        """Revoke one of a client's keys: it fails every request at once."""
        return self._client.call("POST", self._item(client_id, f"/keys/{_segment(kid)}/revocation"),
                                 body={"reason": reason})



class AuditFilters(TypedDict, total=False):
    agency: str
    client_id: str
    action: str
    outcome: str
    purpose: str
    record_id: str
    after: int
    limit: int


class Audit(_Resource):
    """The audit log.

    Every agency: `verify(receipt)` checks that the exchange recorded one of your calls. Each `Result.audit` receipt
    names an audit entry, and `/v1/audit/receipts/{index}` answers (for your own entries only) the latest signed
    checkpoint, the entry's inclusion proof in it and the consistency proof from the checkpoint you kept.

    Auditors (scope `audit:read`, purpose `oversight`): `checkpoint()`, `entries()`, `iterate_entries()`,
    `search()`, `inclusion_proof()`, `consistency_proof()`; `exchange.audit.remote.ServerSource` verifies the whole
    log through them (`exchange audit verify --server`)."""

    path = "/v1/audit"
    PAGE: ClassVar[int] = 1000  # the most entries the exchange returns per call

    def checkpoint(self) -> str:
        """The latest signed checkpoint note, unverified: check it with `exchange.protocol.checkpoint.verify_checkpoint`
        against the keys you trust."""
        text: str = self._client._connection.call("GET", f"{self.path}/checkpoint", context=self._client.context,
                                                  signed_text=True).data
        return text

    def published_verifiers(self, origin: str) -> list[NoteVerifier]:
        """The `audit` keys the exchange publishes in its JWKS, as verifiers of checkpoints of `origin`: what to
        trust on first use (then keep the key, as `exchange audit verify` does in its state file)."""
        return [NoteVerifier(name=origin, public_key=key) for key in self._client._connection.published_keys().audit]

    def entries(self, start: int, end: int | None = None) -> Result:
        """`{"start", "end", "size", "entries": [{"index", "leaf", "leaf_hash"}]}`, at most 1000 entries."""
        return self._client.call("GET", f"{self.path}/entries", params={"start": start, "end": end})

    def iterate_entries(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        """Every entry in [start, end), a page at a time."""
        while start < end:
            page = self.entries(start, min(end, start + self.PAGE)).data
            items = page.get("entries") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ResponseVerificationError("unexpected_content", "A page of audit entries without entries.")
            if not items:
                return
            yield from items
            start += len(items)

    def search(self, **filters: Unpack[AuditFilters]) -> Result:
        return self._client.call("GET", f"{self.path}/search", params=cast(Mapping[str, ParamValue], filters))

    def inclusion_proof(self, index: int, size: int) -> Result:
        return self._client.call("GET", f"{self.path}/proofs/inclusion", params={"index": index, "size": size})

    def consistency_proof(self, old: int, new: int) -> Result:
        return self._client.call("GET", f"{self.path}/proofs/consistency", params={"old": old, "new": new})

    def verify(self, receipt: AuditReceipt, *, kept: SignedCheckpoint | None = None,
               state: Path | str | None = None) -> SignedCheckpoint:
        """Verify that the entry `receipt` names is in the log, under a checkpoint signed by the exchange's
        published `audit` key, and that the log only grew since the checkpoint kept from the last check (by this
        client, or `kept` if you store it elsewhere). Returns the new checkpoint, and keeps it for the next check:
        in memory, and in the file `state` if given (JSON, mode 0600; read first when `kept` is not given), so that
        the next run, like `exchange audit verify --state`, notices a log that was rewritten in between.

        Raises `ResponseVerificationError` with code `audit_proof_invalid` if anything does not verify, and
        `audit_state_invalid` if the state file holds a checkpoint the exchange's audit keys do not verify."""
        connection = self._client._connection
        if kept is None and state is not None:
            kept = self._load_state(Path(state))
        kept = kept if kept is not None else connection.kept_checkpoint
        params = {"since": kept.size} if kept is not None else {}
        result = self._client.call("GET", f"{self.path}/receipts/{receipt.index}", params=params)
        try:
            latest = self._check(result.data, receipt, kept, connection.published_keys(), connection.witnesses)
        except (AuditVerificationError, KeyError, TypeError, ValueError) as first:
            try:  # the exchange may have rotated its audit key since the JWKS was fetched
                latest = self._check(result.data, receipt, kept, connection.published_keys(refresh=True),
                                     connection.witnesses)
            except (AuditVerificationError, KeyError, TypeError, ValueError) as e:
                raise ResponseVerificationError("audit_proof_invalid", f"The audit proof does not verify: {e}",
                                                result.request_id) from first
        connection.kept_checkpoint = latest
        if state is not None:
            self._save_state(Path(state), latest)
        return latest

    def _load_state(self, path: Path) -> SignedCheckpoint | None:
        from exchange.protocol.checkpoint import verify_checkpoint

        try:
            note = json.loads(path.read_text(encoding="utf-8"))["note"]
        except FileNotFoundError:
            return None  # first use: the first checkpoint verified is kept
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ResponseVerificationError("audit_state_invalid", f"{path} is not an audit state file: {e}") from e
        origin = note.split("\n", 1)[0]
        for refresh in (False, True):
            published = self._client._connection.published_keys(refresh=refresh)
            try:
                return verify_checkpoint(note, [NoteVerifier(name=origin, public_key=k) for k in published.audit],
                                         origin=origin)
            except AuditVerificationError as e:
                error = e
        raise ResponseVerificationError("audit_state_invalid", f"the checkpoint kept in {path} does not verify "
                                        f"against the exchange's published audit keys: {error}")

    @staticmethod
    def _save_state(path: Path, checkpoint: SignedCheckpoint) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"note": checkpoint.note, "size": checkpoint.size,
                       "verified_at": datetime.now(UTC).isoformat(timespec="seconds")}, handle)
        os.replace(name, path)

    @staticmethod
    def _check(data: Any, receipt: AuditReceipt, kept: SignedCheckpoint | None,
               published: PublishedKeys, witnesses: WitnessPolicy) -> SignedCheckpoint:
        if data["index"] != receipt.index or data["leaf_hash"] != receipt.leaf_hash:
            raise AuditVerificationError("the proof is for another entry")
        note = data["checkpoint"]
        origin = kept.checkpoint.origin if kept is not None else note.split("\n", 1)[0]
        if kept is not None and data.get("since") != kept.size:
            raise AuditVerificationError(f"no consistency proof from the kept checkpoint of size {kept.size}")
        verifiers = [NoteVerifier(name=origin, public_key=k) for k in published.audit]
        verify_witnessed(note, verifiers, origin=origin, policy=witnesses)  # the client's own quorum (witness.md §4)
        latest = verify_receipt(
            note=note, verifiers=verifiers, origin=origin,
            index=receipt.index, leaf_hash=b64url_decode(receipt.leaf_hash),
            inclusion=[b64url_decode(h) for h in data["inclusion"]], kept=kept,
            consistency=[b64url_decode(h) for h in data["consistency"]] if kept is not None else None)
        if latest.size != data["size"]:
            raise AuditVerificationError("the checkpoint and the proof disagree on the size")
        return latest

