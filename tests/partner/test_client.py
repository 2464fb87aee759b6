"""The partner client library against a fake exchange on `httpx.MockTransport` (no server, no database).

`FakeExchange` plays the exchange with the real verification code wherever the project has it: client assertions
are verified with `exchange.protocol.jose`, DPoP proofs with `exchange.protocol.dpop.verify_dpop_proof` (ath, htm, htu,
cnf binding, one use), request envelopes with the core's `open_envelope` (all eleven checks, replay included), and
responses are sealed with `EnvelopeHeader.for_response` + `seal` to the partner's `enc` key. Tests then break one
thing at a time (a revoked token, a tampered or misaddressed response, an outage) and check what the client does.

The end-to-end smoke test at the bottom runs only against a real exchange named by `EXCHANGE_E2E_BASE_URL`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.partner import errors
from exchange.partner.api import ExchangeClient, Result, RetryPolicy
from exchange.partner.envelopes import PartnerEncryptionKey, PartnerKeys, PublishedKeys, ResponseReplayCache
from exchange.partner.tokens import FileTokenCache
from exchange.protocol import jose
from exchange.protocol.auth_errors import DPoPReplay, InvalidDPoPProof, Replayed
from exchange.protocol.dpop import DPoPProof, verify_dpop_proof
from exchange.protocol.encoding import b64url
from exchange.protocol.envelope import (
    MEDIA_TYPE,
    AuditReceipt,
    EnvelopeHeader,
    RequestRef,
    SealedEnvelope,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    dumps_json,
    ed25519_kid,
    open_envelope,
    seal,
    x25519_kid,
)
from exchange.protocol.envelope_errors import EnvelopeError, UnknownKey
from exchange.protocol.receipts import SignedReceipt
from exchange.protocol.replay import InMemoryReplayCache

BASE = "https://exchange.test"
CLIENT_ID = "interior-case-1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MARKER = "PLAINTEXT-MARKER-4c1e"  # record content: must never surface in an error
RETURNEE_ID = "6f1c2b9e-6c1d-4a47-9d55-3e0f7a4f9a10"


# --- the fake exchange ------------------------------------------------------------------------------------------------

class FakeClock:
    """Time for both sides; `sleep` advances it and records the delay."""

    def __init__(self) -> None:
        self.now = time.time()  # real time: the core's in-memory replay cache compares expiries with it
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Seen:
    """One /v1 request as the fake exchange accepted it."""

    method: str
    target: str
    headers: httpx.Headers
    proof: DPoPProof
    token: str
    value: Any = None
    msg_id: str | None = None
    ref: RequestRef | None = None


@dataclass
class Reply:
    status: int = 200
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_body(status: int, code: str, message: str = "Refused.", request_id: str = "req-err",
               **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "status": status, "message": message, "request_id": request_id,
                                        **extra}, headers={"X-Request-ID": request_id})


class FakeExchange:
    def __init__(self, clock: FakeClock, *, agency: str = "interior") -> None:
        self.clock = clock
        self.agency = agency
        self.issuer = BASE
        self.partner = PartnerKeys.generate()
        self.sign_keys = [nacl.signing.SigningKey.generate()]  # envelope-sign; [0] signs responses
        self.enc_keys = [nacl.public.PrivateKey.generate()]  # envelope-enc; all of them decrypt, [0] is published
        self.response_signer = self.sign_keys[0]
        self.replay = InMemoryReplayCache()
        self.token_lifetime = 300
        self.tokens: dict[str, tuple[float, str]] = {}  # token -> (expires at, DPoP jkt)
        self.token_requests: list[dict[str, Any]] = []
        self.jwks_fetches = 0
        self.seen: list[Seen] = []
        self.api_attempts = 0
        self.outages: deque[httpx.Response | Exception] = deque()  # served before answering (after opening)
        self.failures: deque[Exception] = deque()  # raised before anything (connection errors)
        self.token_outages: deque[httpx.Response] = deque()
        self.reply: Callable[[Seen], Reply | httpx.Response] = self.echo
        self.tamper: Callable[[EnvelopeHeader, bytes], tuple[EnvelopeHeader, bytes]] | None = None
        self.tamper_body: Callable[[bytes], bytes] | None = None
        self.audit_headers: dict[str, str] | None = None
        self.audit_index = 0
        self.audit_key = nacl.signing.SigningKey.generate()  # signs the receipts (witness.md §2)
        self.last_request_body = b""

    # -- keys as published --

    def jwks(self) -> dict[str, Any]:
        token_key = nacl.signing.SigningKey(b"\x01" * 32).verify_key
        keys = [{"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(token_key)), "kid": ed25519_kid(token_key),
                 "use": "sig", "purpose": "token"}]
        keys.append({"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(self.audit_key.verify_key)),
                     "kid": ed25519_kid(self.audit_key.verify_key), "use": "sig", "purpose": "audit"})
        for signer in self.sign_keys:
            keys.append({"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(signer.verify_key)),
                         "kid": ed25519_kid(signer.verify_key), "use": "sig", "purpose": "envelope-sign"})
        for enc in self.enc_keys:
            keys.append({"kty": "OKP", "crv": "X25519", "x": b64url(bytes(enc.public_key)),
                         "kid": x25519_kid(enc.public_key), "use": "enc", "purpose": "envelope-enc"})
        return {"keys": keys}

    def rotate_signing(self) -> None:
        """A new envelope-sign key signs responses from now on and is published; the old one stays listed."""
        self.response_signer = nacl.signing.SigningKey.generate()
        self.sign_keys.insert(0, self.response_signer)

    def rotate_encryption(self) -> None:
        """A new envelope-enc key replaces the old one, which no longer decrypts."""
        self.enc_keys = [nacl.public.PrivateKey.generate()]

    # -- HTTP --

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            raise self.failures.popleft()
        path = request.url.path
        if request.method == "GET" and path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json={"issuer": self.issuer, "token_endpoint": f"{BASE}/oauth/token",
                                             "jwks_uri": f"{BASE}/.well-known/jwks.json"})
        if request.method == "GET" and path == "/.well-known/jwks.json":
            self.jwks_fetches += 1
            return httpx.Response(200, json=self.jwks())
        if request.method == "POST" and path == "/oauth/token":
            return self.token_endpoint(request)
        if path.startswith("/v1/"):
            return self.api(request)
        return error_body(404, "not_found")

    def token_endpoint(self, request: httpx.Request) -> httpx.Response:
        if self.token_outages:
            return self.token_outages.popleft()
        form = {k: v[0] for k, v in parse_qs(request.content.decode("ascii")).items()}
        try:
            proof = verify_dpop_proof(request.headers.get("DPoP"), method="POST", url=f"{BASE}/oauth/token",
                                      access_token=None, replay=self.replay, now=int(self.clock()))
        except (InvalidDPoPProof, DPoPReplay) as e:
            return httpx.Response(400, json={"error": "invalid_dpop_proof", "error_description": e.message})
        auth_key = jose.OKPKey.import_key(self.partner.auth.public_jwk)
        claims = dict(jose.decode(form["client_assertion"], auth_key).claims)
        self.token_requests.append({"form": form, "assertion": claims, "proof": proof})
        assert form["grant_type"] == "client_credentials" and form["client_assertion_type"] == ASSERTION_TYPE
        assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["aud"] == self.issuer
        assert 0 < claims["exp"] - claims["iat"] <= 60
        token = f"token-{len(self.token_requests)}-{uuid.uuid4().hex}"
        self.tokens[token] = (self.clock() + self.token_lifetime, proof.jkt)
        return httpx.Response(200, json={"access_token": token, "token_type": "DPoP",
                                         "expires_in": self.token_lifetime}, headers={"Cache-Control": "no-store"})

    def api(self, request: httpx.Request) -> httpx.Response:
        self.api_attempts += 1
        now = int(self.clock())
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        bound = self.tokens.get(token)
        if scheme != "DPoP" or bound is None or bound[0] <= self.clock():
            return error_body(401, "invalid_token")
        target = request.url.raw_path.decode("ascii")
        try:
            proof = verify_dpop_proof(request.headers.get("DPoP"), method=request.method,
                                      url=self.issuer + request.url.path, access_token=token, replay=self.replay,
                                      bound_to=bound[1], now=now)
        except (InvalidDPoPProof, DPoPReplay) as e:
            return error_body(401, e.code)
        seen = Seen(method=request.method, target=target, headers=request.headers, proof=proof, token=token)
        if request.content:
            self.last_request_body = request.content
            if request.headers.get("Content-Type") != MEDIA_TYPE:
                return error_body(415, "unsupported_media_type")
            sender = StaticSenderKeys([SenderKey(agency=self.agency, verify_key=self.partner.signing_key.verify_key)])
            try:
                opened = open_envelope(request.content, receiver="exchange", decrypt_keys=decrypt_keyring(
                    self.enc_keys), method=request.method, target=target, authenticated_agency=self.agency,
                    sender_keys=sender, replay=self.replay, now=now)
            except EnvelopeError as e:
                return error_body(e.status, e.code, e.message)
            seen.value, seen.msg_id, seen.ref = opened.json, opened.header.msg_id, opened.request_ref()
        else:
            seen.ref = RequestRef.of_proof(proof.raw, method=request.method, target=target)
        self.seen.append(seen)
        if self.outages:
            outage = self.outages.popleft()
            if isinstance(outage, Exception):
                raise outage
            return outage
        reply = self.reply(seen)
        if isinstance(reply, httpx.Response):
            return reply
        return self.sealed(seen, reply)

    def echo(self, seen: Seen) -> Reply:
        created = seen.method == "POST" and seen.target.count("/") == 2
        return Reply(status=201 if created else 200,
                     data={"id": RETURNEE_ID, "method": seen.method, "target": seen.target, "echo": seen.value,
                           "note": MARKER},
                     headers={"ETag": '"1"', **({"Location": f"/v1/returnees/{RETURNEE_ID}"} if created else {})})

    def receipt(self, index: int) -> AuditReceipt:
        signed = SignedReceipt.sign(index=index, leaf_hash=hashlib.sha256(str(index).encode()).digest(),
                                    time=1_800_000_000, log="exchange.local/audit", sign=self.sign_receipt)
        return AuditReceipt(index=index, leaf_hash=b64url(signed.leaf_hash), time=signed.time, log=signed.log,
                            sig=b64url(signed.sig))

    def sign_receipt(self, message: bytes) -> bytes:
        return self.audit_key.sign(message).signature

    def sealed(self, seen: Seen, reply: Reply) -> httpx.Response:
        assert seen.ref is not None
        self.audit_index += 1
        receipt = self.receipt(self.audit_index)
        header = EnvelopeHeader.for_response(
            sender="exchange", skid=ed25519_kid(self.response_signer.verify_key), recipient=self.agency,
            rkid=self.partner.enc.kid, request=seen.ref, audit=receipt, now=int(self.clock()))
        plaintext = dumps_json(reply.data)
        if self.tamper is not None:
            header, plaintext = self.tamper(header, plaintext)
        envelope = seal(header=header, plaintext=plaintext, signing_key=self.response_signer,
                        recipient_key=self.partner.enc.public_key).to_json()
        if self.tamper_body is not None:
            envelope = self.tamper_body(envelope)
        audit_headers = self.audit_headers or {"Audit-Index": str(receipt.index), "Audit-Leaf-Hash": receipt.leaf_hash,
                                               "Audit-Time": str(receipt.time), "Audit-Log": str(receipt.log),
                                               "Audit-Signature": str(receipt.sig)}
        return httpx.Response(reply.status, content=envelope, headers={
            "Content-Type": MEDIA_TYPE, "X-Request-ID": f"req-{self.api_attempts}", **audit_headers, **reply.headers})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeExchange:
    return FakeExchange(clock)


MakeClient = Callable[..., ExchangeClient]


@pytest.fixture
def make_client(fake: FakeExchange, clock: FakeClock) -> Iterator[MakeClient]:
    clients: list[ExchangeClient] = []

    def make(**options: Any) -> ExchangeClient:
        defaults: dict[str, Any] = {
            "client_id": CLIENT_ID, "agency": fake.agency, "keys": fake.partner, "purpose": "amnesty-vetting",
            "officer": "TJ-MVD-04411", "transport": httpx.MockTransport(fake.handle), "clock": clock,
            "sleep": clock.sleep, "rng": random.Random(7),
        }
        client = ExchangeClient(BASE, **{**defaults, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> ExchangeClient:
    return make_client()


# --- tokens -----------------------------------------------------------------------------------------------------------

def test_a_token_is_obtained_with_private_key_jwt_and_a_dpop_proof(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    [request] = fake.token_requests
    assert request["form"]["scope"] == "events:read returnees:read returnees:write"
    assert request["proof"].htu == f"{BASE}/oauth/token" and request["proof"].htm == "POST"
    assert request["proof"].jkt == client.dpop_jkt
    assert request["assertion"]["aud"] == BASE  # the issuer exactly, not the token endpoint


def test_the_token_is_reused_and_renewed_when_less_than_30_seconds_remain(
    client: ExchangeClient, fake: FakeExchange, clock: FakeClock,
) -> None:
    client.returnees.get(RETURNEE_ID)
    clock.now += 300 - 31
    client.returnees.get(RETURNEE_ID)
    assert len(fake.token_requests) == 1
    clock.now += 2  # 29 s left
    client.returnees.get(RETURNEE_ID)
    assert len(fake.token_requests) == 2
    assert fake.seen[-1].token != fake.seen[0].token


def test_invalid_token_renews_once_and_retries(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    fake.tokens.clear()  # revoked, or the exchange forgot it
    result = client.returnees.get(RETURNEE_ID)
    assert result.data["id"] == RETURNEE_ID
    assert len(fake.token_requests) == 2 and fake.api_attempts == 3


def test_invalid_token_after_renewal_is_raised(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.reply = lambda seen: error_body(401, "invalid_token", "Suspended.")
    with pytest.raises(errors.AuthError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert caught.value.code == "invalid_token" and caught.value.status == 401
    assert len(fake.token_requests) == 2 and fake.api_attempts == 2


def test_token_endpoint_errors_are_token_errors(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.token_outages.append(httpx.Response(401, json={
        "error": "invalid_client", "error_description": "Unknown key.", "code": "invalid_client", "status": 401,
        "message": "Unknown key.", "request_id": "req-tok"}))
    with pytest.raises(errors.TokenError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert isinstance(caught.value, errors.AuthError)
    assert (caught.value.code, caught.value.status, caught.value.request_id) == ("invalid_client", 401, "req-tok")
    assert fake.api_attempts == 0


def test_the_token_request_is_retried_on_503(client: ExchangeClient, fake: FakeExchange, clock: FakeClock) -> None:
    fake.token_outages.append(unavailable("1"))
    assert client.returnees.get(RETURNEE_ID).status == 200
    assert len(fake.token_requests) == 1 and clock.sleeps == [1.0]


def test_threads_share_one_token(client: ExchangeClient, fake: FakeExchange) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: client.returnees.get(RETURNEE_ID), range(16)))
    assert all(r.data["id"] == RETURNEE_ID for r in results)
    assert len(fake.token_requests) == 1 and len({s.proof.jti for s in fake.seen}) == 16


def test_a_bearer_token_is_refused(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.token_outages.append(httpx.Response(200, json={"access_token": "x", "token_type": "Bearer"}))
    with pytest.raises(errors.TokenError, match="not DPoP-bound"):
        client.returnees.get(RETURNEE_ID)


# --- DPoP proofs ------------------------------------------------------------------------------------------------------

def test_every_call_carries_a_fresh_proof_with_htm_htu_ath_and_purpose(
    client: ExchangeClient, fake: FakeExchange,
) -> None:
    client.returnees.list(status="arrived", page_size=5)
    client.returnees.update(RETURNEE_ID, {"birth_place": "Vahdat"}, if_match=3)
    listed, patched = fake.seen
    assert (listed.proof.htm, listed.proof.htu) == ("GET", f"{BASE}/v1/returnees")  # no query in htu
    assert listed.target == "/v1/returnees?status=arrived&page=1&page_size=5"
    assert (patched.proof.htm, patched.proof.htu) == ("PATCH", f"{BASE}/v1/returnees/{RETURNEE_ID}")
    for seen in fake.seen:  # verify_dpop_proof checked ath against the token and the cnf binding
        assert seen.headers["Authorization"] == f"DPoP {seen.token}"
        assert (seen.proof.purpose, seen.proof.officer, seen.proof.case_ref) == (
            "amnesty-vetting", "TJ-MVD-04411", None)
        claims = json.loads(base64.urlsafe_b64decode(seen.proof.raw.split(".")[1] + "=="))
        assert claims["ath"] == jose.sha256_b64(seen.token)
    assert listed.proof.jti != patched.proof.jti


def test_using_changes_the_call_context_and_shares_the_token(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    review = client.using(purpose="reintegration", case_ref="MVD-2015-77")
    review.returnees.get(RETURNEE_ID)
    client.returnees.get(RETURNEE_ID)
    assert [(s.proof.purpose, s.proof.case_ref, s.proof.officer) for s in fake.seen] == [
        ("amnesty-vetting", None, "TJ-MVD-04411"), ("reintegration", "MVD-2015-77", "TJ-MVD-04411"),
        ("amnesty-vetting", None, "TJ-MVD-04411")]
    assert len(fake.token_requests) == 1


def test_a_purpose_is_required_before_anything_is_sent(make_client: MakeClient, fake: FakeExchange) -> None:
    client = make_client(purpose=None)
    with pytest.raises(ValueError, match="purpose"):
        client.returnees.get(RETURNEE_ID)
    assert fake.api_attempts == 0 and not fake.token_requests


def test_an_agency_with_one_purpose_gets_it_by_default(clock: FakeClock) -> None:
    fake = FakeExchange(clock, agency="border")
    with ExchangeClient(BASE, client_id=CLIENT_ID, agency="border", keys=fake.partner, clock=clock,
                        transport=httpx.MockTransport(fake.handle)) as client:
        client.screening.by_name("Gulmurod Halimov", birth_date="1975")
    assert fake.seen[0].proof.purpose == "border-screening"
    assert fake.token_requests[0]["form"]["scope"] == "crossings:write events:read returnees:screen"


# --- sealing requests -------------------------------------------------------------------------------------------------

def test_a_request_body_is_sealed_from_the_agency_to_the_exchange(client: ExchangeClient, fake: FakeExchange) -> None:
    body = {"person_name": {"given": "Гулмурод", "surname": "Халимов"}, "birth_date": "1975-05-14"}
    result = client.returnees.create(body)
    [seen] = fake.seen
    assert seen.headers["Content-Type"] == MEDIA_TYPE
    assert seen.value == body  # open_envelope passed all eleven checks: sender interior, this method and target
    header = EnvelopeHeader.parse(SealedEnvelope.from_json(fake.last_request_body).header_bytes)
    assert (header.sender, header.recipient, header.skid) == ("interior", "exchange", fake.partner.sign.kid)
    assert header.rkid == x25519_kid(fake.enc_keys[0].public_key)
    assert (result.status, result.location, result.etag, result.version) == (
        201, f"/v1/returnees/{RETURNEE_ID}", '"1"', 1)
    assert result.data["echo"] == body


def test_the_sealed_target_is_the_request_target_with_its_query(client: ExchangeClient, fake: FakeExchange) -> None:
    result = client.call("POST", "/v1/returnees", params={"dry_run": False, "note": "a b/ç"}, body={"x": 1})
    assert fake.seen[0].target == "/v1/returnees?dry_run=false&note=a%20b%2F%C3%A7"
    assert result.data["target"] == fake.seen[0].target


def test_patch_sends_if_match_and_transitions_are_sealed(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.update(RETURNEE_ID, {"birth_place": "Vahdat"}, if_match='"3"')
    client.returnees.update(RETURNEE_ID, {"birth_place": "Vahdat"}, if_match=4)
    client.returnees.transition(RETURNEE_ID, "under_vetting")
    client.clients.suspend("border-2", reason="lost laptop", if_match="*")
    assert [s.headers.get("If-Match") for s in fake.seen] == ['"3"', '"4"', None, "*"]
    assert fake.seen[2].value == {"to": "under_vetting"}
    assert fake.seen[2].target == f"/v1/returnees/{RETURNEE_ID}/transitions"
    assert (fake.seen[3].method, fake.seen[3].target, fake.seen[3].value) == (
        "PATCH", "/v1/clients/border-2", {"status": "suspended", "status_reason": "lost laptop"})
    with pytest.raises(ValueError):
        client.returnees.update(RETURNEE_ID, {}, if_match="W/3")


def test_the_exchanges_rotated_encryption_key_is_fetched_once(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    fake.rotate_encryption()  # the cached rkid no longer decrypts: envelope_wrong_recipient
    result = client.returnees.create({"x": 1})
    assert result.data["echo"] == {"x": 1}
    assert fake.jwks_fetches == 2
    assert fake.api_attempts == 3


# --- verifying responses ----------------------------------------------------------------------------------------------

def _other_ref(ref: RequestRef, **changes: str) -> RequestRef:
    return RequestRef(**{"method": ref.method, "target": ref.target, "reply_to": ref.reply_to,
                         "request_hash": ref.request_hash, **changes})


def _retarget(**changes: str) -> Callable[[EnvelopeHeader, bytes], tuple[EnvelopeHeader, bytes]]:
    def tamper(header: EnvelopeHeader, plaintext: bytes) -> tuple[EnvelopeHeader, bytes]:
        assert header.audit is not None
        return EnvelopeHeader.for_response(
            sender=header.sender, skid=header.skid, recipient=header.recipient, rkid=header.rkid,
            request=_other_ref(RequestRef(method=header.method, target=header.target, reply_to=header.reply_to or "",
                                          request_hash=header.request_hash or ""), **changes),
            audit=header.audit, now=header.iat), plaintext
    return tamper


def _flip_ciphertext(body: bytes) -> bytes:
    obj = json.loads(body)
    raw = bytearray(base64.urlsafe_b64decode(obj["ciphertext"] + "=="))
    raw[-1] ^= 1
    return json.dumps({"protected": obj["protected"], "ciphertext": b64url(bytes(raw))}).encode()


def _swap_header(body: bytes) -> bytes:
    """Replace the signed header with an otherwise identical one naming another audit index."""
    obj = json.loads(body)
    header = json.loads(base64.urlsafe_b64decode(obj["protected"] + "=="))
    header["audit"]["index"] += 1
    return json.dumps({"protected": b64url(json.dumps(header).encode()), "ciphertext": obj["ciphertext"]}).encode()


VERIFICATION_FAILURES: dict[str, tuple[Callable[[FakeExchange], None], str]] = {
    "tampered ciphertext": (lambda f: setattr(f, "tamper_body", _flip_ciphertext), "envelope_undecryptable"),
    "tampered header": (lambda f: setattr(f, "tamper_body", _swap_header), "envelope_bad_signature"),
    "wrong reply_to": (lambda f: setattr(f, "tamper", _retarget(reply_to="someone-elses-request-jti")),
                       "envelope_reply_mismatch"),
    "wrong request_hash": (lambda f: setattr(f, "tamper", _retarget(request_hash=b64url(b"\x00" * 32))),
                           "envelope_reply_mismatch"),
    "another target": (lambda f: setattr(f, "tamper", _retarget(target="/v1/hotline-contacts")),
                       "envelope_misdirected"),
    "unknown signing key": (lambda f: setattr(f, "response_signer", nacl.signing.SigningKey.generate()),
                            "unknown_key"),
    "sealed to another client": (lambda f: setattr(f, "partner", PartnerKeys(
        auth=f.partner.auth, sign=f.partner.sign, enc=PartnerEncryptionKey.generate())), "envelope_wrong_recipient"),
    "not an envelope": (lambda f: setattr(f, "reply", lambda s: httpx.Response(
        200, json={"note": MARKER}, headers={"X-Request-ID": "req-plain"})),
                        "response_not_enveloped"),
    "audit headers disagree": (lambda f: setattr(f, "audit_headers", {"Audit-Index": "999",
                                                                      "Audit-Leaf-Hash": b64url(b"\x01" * 32)}),
                               "audit_receipt_mismatch"),
}


@pytest.mark.parametrize("defect", sorted(VERIFICATION_FAILURES))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_response_that_fails_verification_is_never_returned(
    make_client: MakeClient, fake: FakeExchange, defect: str, method: str,
) -> None:
    client = make_client(keys=fake.partner)
    client.returnees.get(RETURNEE_ID)  # token and keys first, before the defect
    apply, code = VERIFICATION_FAILURES[defect]
    apply(fake)
    returned: list[Result] = []
    with pytest.raises(errors.ResponseVerificationError) as caught:
        if method == "GET":
            returned.append(client.returnees.get(RETURNEE_ID))
        else:
            returned.append(client.returnees.create({"x": 1}))
    assert not returned
    assert caught.value.code == code and caught.value.status == 502
    assert caught.value.request_id and caught.value.request_id.startswith("req-")
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value)
    assert fake.api_attempts == 2  # a failed verification is never retried


def test_a_response_signed_by_a_rotated_key_is_accepted_after_one_jwks_refetch(
    client: ExchangeClient, fake: FakeExchange,
) -> None:
    client.returnees.get(RETURNEE_ID)
    fake.rotate_signing()
    assert client.returnees.get(RETURNEE_ID).data["id"] == RETURNEE_ID
    assert fake.jwks_fetches == 2
    client.returnees.get(RETURNEE_ID)
    assert fake.jwks_fetches == 2


def test_an_unknown_signing_key_costs_one_refetch_per_call(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.response_signer = nacl.signing.SigningKey.generate()
    with pytest.raises(errors.ResponseVerificationError, match="unknown_key"):
        client.returnees.get(RETURNEE_ID)
    assert fake.jwks_fetches == 2


def test_the_result_carries_the_signed_audit_receipt(client: ExchangeClient, fake: FakeExchange) -> None:
    result = client.returnees.get(RETURNEE_ID)
    assert result.audit == fake.receipt(1)
    assert result.request_id == "req-1" and result.msg_id
    assert MARKER not in repr(result)


def test_an_issuer_that_is_not_the_base_url_is_refused(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.issuer = "https://evil.test"
    with pytest.raises(errors.ResponseVerificationError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert caught.value.code == "issuer_mismatch" and not fake.token_requests


# --- typed errors -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "malformed_json", errors.BadRequestError),
    (403, "purpose_not_allowed", errors.ForbiddenError),
    (403, "not_permitted", errors.ForbiddenError),
    (404, "not_found", errors.NotFoundError),
    (409, "invalid_transition", errors.ConflictError),
    (409, "envelope_replayed", errors.ConflictError),
    (412, "precondition_failed", errors.PreconditionFailed),
    (413, "envelope_too_large", errors.BadRequestError),
    (422, "validation_failed", errors.ValidationError),
    (428, "precondition_required", errors.PreconditionRequired),
    (500, "internal_error", errors.ServerError),
])
def test_errors_are_typed_and_carry_the_servers_code(
    client: ExchangeClient, fake: FakeExchange, status: int, code: str, cls: type[errors.ExchangeClientError],
) -> None:
    field_errors = {"to": ["Not a status."]} if status == 422 else None
    fake.reply = lambda seen: error_body(status, code, "Server says no.", "req-77",
                                         **({"errors": field_errors} if field_errors else {}))
    with pytest.raises(cls) as caught:
        client.returnees.transition(RETURNEE_ID, "closed")
    error = caught.value
    assert type(error) is cls
    assert (error.code, error.status, error.message, error.request_id) == (code, status, "Server says no.", "req-77")
    assert error.errors == field_errors
    assert fake.api_attempts == 1 and not fake.seen[0].headers.get("If-Match")
    shown = ' {"to": ["Not a status."]}' if field_errors else ""  # a 422's text shows what to fix
    assert str(error) == f"{status} {code}: Server says no.{shown} (request req-77)"


def test_an_error_that_is_not_the_exchanges_json_still_has_a_family(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.reply = lambda seen: httpx.Response(502, text="<html>Bad gateway</html>", headers={"X-Request-ID": "px-1"})
    with pytest.raises(errors.ServerError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert (caught.value.code, caught.value.status, caught.value.request_id) == ("http_502", 502, "px-1")
    assert fake.api_attempts == 3, "a gateway's 502 is retried where repeating is safe (a read)"


# --- retries ----------------------------------------------------------------------------------------------------------

def unavailable(retry_after: str | None = None) -> httpx.Response:
    headers = {"X-Request-ID": "req-503", **({"Retry-After": retry_after} if retry_after else {})}
    return httpx.Response(503, json={"code": "commit_failed", "status": 503, "message": "Nothing was stored.",
                                     "request_id": "req-503"}, headers=headers)


def test_a_read_is_retried_on_503_with_bounded_backoff(
    client: ExchangeClient, fake: FakeExchange, clock: FakeClock,
) -> None:
    fake.outages.extend([unavailable(), unavailable()])
    assert client.returnees.get(RETURNEE_ID).data["id"] == RETURNEE_ID
    assert fake.api_attempts == 3
    first, second = clock.sleeps
    assert 0.125 <= first <= 0.25 and 0.25 <= second <= 0.5  # [c/2, c], c doubling from 0.25


def test_retry_after_is_honoured(client: ExchangeClient, fake: FakeExchange, clock: FakeClock) -> None:
    fake.outages.append(unavailable("3"))
    client.returnees.get(RETURNEE_ID)
    assert clock.sleeps == [3.0]
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.now + 5))
    fake.outages.append(unavailable(http_date))
    client.returnees.get(RETURNEE_ID)
    assert 4.0 <= clock.sleeps[1] <= 5.0


def test_a_retry_after_beyond_the_bound_is_not_waited_for(
    client: ExchangeClient, fake: FakeExchange, clock: FakeClock,
) -> None:
    fake.outages.append(unavailable("3600"))
    with pytest.raises(errors.UnavailableError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert caught.value.code == "commit_failed" and clock.sleeps == [] and fake.api_attempts == 1


def test_503_gives_up_after_three_tries(client: ExchangeClient, fake: FakeExchange, clock: FakeClock) -> None:
    fake.outages.extend([unavailable(), unavailable(), unavailable(), unavailable()])
    with pytest.raises(errors.UnavailableError) as caught:
        client.returnees.get(RETURNEE_ID)
    assert (caught.value.code, caught.value.status, caught.value.request_id) == ("commit_failed", 503, "req-503")
    assert fake.api_attempts == 3 and len(clock.sleeps) == 2
    assert all(delay <= 2.0 for delay in clock.sleeps)


def test_a_write_is_retried_on_503_with_the_same_envelope(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.replay = _SeenIsNotStoredHere(fake.replay)
    fake.outages.append(unavailable())
    result = client.returnees.create({"x": 1})
    first, second = fake.seen  # the same envelope (the exchange deduplicates by msg_id), a fresh proof each time
    assert first.msg_id == second.msg_id and first.proof.jti != second.proof.jti
    assert first.ref == second.ref, "the same request hash: the same bytes sent again"
    assert result.data["echo"] == {"x": 1} and result.status == 201


class _SeenIsNotStoredHere:
    """The exchange's step 10 over HTTP: a msg_id seen but not stored is carried out (DPoP jtis stay one-use)."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        if not namespace.startswith("envelope:"):
            self.cache.claim(namespace, jti, expires_at)


@pytest.mark.parametrize("answer", [
    lambda: error_body(500, "audit_pending"), lambda: error_body(500, "response_withheld"),
    lambda: error_body(500, "commit_unknown"), lambda: httpx.Response(504, text="gateway timeout"),
    lambda: httpx.ReadTimeout("stored, then the answer was lost"),
], ids=["audit_pending", "response_withheld", "commit_unknown", "504", "read-timeout"])
def test_a_write_whose_answer_was_lost_is_sent_again_unchanged(
    client: ExchangeClient, fake: FakeExchange, answer: Callable[[], Any],
) -> None:
    fake.replay = _SeenIsNotStoredHere(fake.replay)
    fake.outages.append(answer())
    assert client.returnees.create({"x": 1}).status == 201
    first, second = fake.seen
    assert first.msg_id == second.msg_id and first.ref == second.ref


def test_an_internal_error_is_not_retried(client: ExchangeClient, fake: FakeExchange) -> None:
    fake.outages.append(error_body(500, "internal_error"))
    with pytest.raises(errors.ServerError):
        client.returnees.create({"x": 1})
    assert fake.api_attempts == 1


def test_the_backoff_is_capped(clock: FakeClock) -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=2.0)
    rng = random.Random(1)
    assert max(policy.backoff(n, rng) for n in range(1, 10)) <= 2.0
    assert min(policy.backoff(9, rng) for _ in range(50)) >= 1.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 422, 429])
def test_a_4xx_is_never_retried(client: ExchangeClient, fake: FakeExchange, clock: FakeClock, status: int) -> None:
    code = "dpop_replay" if status == 401 else f"code_{status}"
    fake.reply = lambda seen: error_body(status, code)
    with pytest.raises(errors.ExchangeClientError):
        client.returnees.create({"x": 1})
    assert fake.api_attempts == 1 and clock.sleeps == []


def test_connection_errors_are_retried_for_reads(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    fake.failures.extend([httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
    assert client.returnees.get(RETURNEE_ID).data["id"] == RETURNEE_ID


def test_a_write_that_keeps_failing_raises_connection_failed(client: ExchangeClient, fake: FakeExchange) -> None:
    client.returnees.get(RETURNEE_ID)
    fake.failures.append(httpx.ConnectError("refused"))
    assert client.returnees.create({"x": 1}).status == 201
    before = fake.api_attempts
    fake.replay = _SeenIsNotStoredHere(fake.replay)
    fake.outages.extend([httpx.ReadTimeout("lost")] * 3)
    with pytest.raises(errors.ConnectionFailed) as caught:
        client.returnees.create({"x": 1})
    assert caught.value.code == "connection_failed" and caught.value.status == 0
    assert isinstance(caught.value, errors.UnavailableError)
    assert fake.api_attempts == before + 3  # the same envelope three times: the exchange stores it at most once
    assert len({seen.msg_id for seen in fake.seen[-3:]}) == 1


# --- resources --------------------------------------------------------------------------------------------------------

def test_iterate_walks_every_page(client: ExchangeClient, fake: FakeExchange) -> None:
    people = [{"id": str(uuid.UUID(int=n))} for n in range(5)]

    def page(seen: Seen) -> Reply:
        query = parse_qs(seen.target.partition("?")[2])
        number, size = int(query["page"][0]), int(query["page_size"][0])
        return Reply(data={"items": people[(number - 1) * size:number * size], "page": number, "page_size": size,
                           "total": len(people)})

    fake.reply = page
    since = datetime(2015, 5, 9, tzinfo=UTC)
    assert list(client.border_crossings.iterate(page_size=2, unmatched=True, occurred_from=since)) == people
    assert [s.target for s in fake.seen] == [
        f"/v1/border-crossings?unmatched=true&occurred_from=2015-05-09T00%3A00%3A00%2B00%3A00&page={n}&page_size=2"
        for n in (1, 2, 3)]


def test_every_resource_has_its_route(client: ExchangeClient, fake: FakeExchange) -> None:
    client.hotline_contacts.create({"summary": "call"})
    client.border_instructions.list(instruction="DETAIN")
    client.vetting_assessments.get(RETURNEE_ID)
    client.prosecutorial_decisions.update(RETURNEE_ID, {"notes": "n"}, if_match=2)
    client.screening.by_document("400 123 456")
    client.clients.create(client_id="border-9", agency="border", name="Post 9", scopes=["returnees:screen"],
                          keys=fake.partner.registration())
    client.clients.resume("border-9", if_match=2)
    client.clients.revoke_key("border-9", fake.partner.sign.kid, reason="rotated")
    assert [(s.method, s.target.partition("?")[0]) for s in fake.seen] == [
        ("POST", "/v1/hotline-contacts"), ("GET", "/v1/border-instructions"),
        ("GET", f"/v1/vetting-assessments/{RETURNEE_ID}"), ("PATCH", f"/v1/prosecutorial-decisions/{RETURNEE_ID}"),
        ("POST", "/v1/screening"), ("POST", "/v1/clients"), ("PATCH", "/v1/clients/border-9"),
        ("POST", f"/v1/clients/border-9/keys/{fake.partner.sign.kid}/revocation")]
    assert fake.seen[4].value == {"document_number": "400 123 456"}
    assert [k["purpose"] for k in fake.seen[5].value["keys"]] == ["auth", "sign", "enc"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=30))
def test_any_filter_value_seals_the_target_the_exchange_sees(value: str) -> None:
    clock = FakeClock()
    fake = FakeExchange(clock)
    with ExchangeClient(BASE, client_id=CLIENT_ID, agency="interior", keys=fake.partner, purpose="reintegration",
                        transport=httpx.MockTransport(fake.handle), clock=clock) as client:
        client.returnees.list(register_number=value)
        client.call("POST", "/v1/returnees", params={"q": value}, body={"q": value})
    assert parse_qs(fake.seen[0].target.partition("?")[2])["register_number"] == [value]
    assert fake.seen[1].value == {"q": value}


# --- keys -------------------------------------------------------------------------------------------------------------

def test_partner_keys_round_trip_through_private_files(tmp_path: Path, fake: FakeExchange, clock: FakeClock) -> None:
    key_dir = tmp_path / "keys"
    keys = PartnerKeys.generate()
    keys.save(key_dir)
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    for name in ("auth.jwk.json", "sign.jwk.json", "enc.jwk.json"):
        assert stat.S_IMODE((key_dir / name).stat().st_mode) == 0o600
    enc = json.loads((key_dir / "enc.jwk.json").read_text())
    assert (enc["kty"], enc["crv"]) == ("OKP", "X25519") and "d" in enc
    loaded = PartnerKeys.load(key_dir)
    assert (loaded.auth.kid, loaded.sign.kid, loaded.enc.kid) == (keys.auth.kid, keys.sign.kid, keys.enc.kid)
    assert all("d" not in k["jwk"] for k in loaded.registration())
    with pytest.raises(FileExistsError):
        keys.save(key_dir)
    fake.partner = loaded
    with ExchangeClient.from_files(BASE, CLIENT_ID, "interior", key_dir, purpose="reintegration", clock=clock,
                                   transport=httpx.MockTransport(fake.handle)) as client:
        assert client.returnees.get(RETURNEE_ID).data["id"] == RETURNEE_ID


def test_bad_key_files_are_refused(tmp_path: Path) -> None:
    enc = PartnerEncryptionKey.generate()
    other = PartnerEncryptionKey.generate()
    jwk = {**enc.public_jwk, "d": b64url(bytes(enc.private_key))}
    assert PartnerEncryptionKey.from_jwk(jwk).kid == enc.kid
    with pytest.raises(ValueError, match="x"):
        PartnerEncryptionKey.from_jwk({**jwk, "x": other.public_jwk["x"]})
    with pytest.raises(ValueError, match="X25519"):
        PartnerEncryptionKey.from_jwk({**jwk, "crv": "Ed25519"})
    keys = PartnerKeys.generate()
    with pytest.raises(ValueError, match="distinct"):
        PartnerKeys(auth=keys.auth, sign=keys.auth, enc=keys.enc)
    assert "private" not in repr(enc) and b64url(bytes(enc.private_key)) not in repr(keys)


def test_published_keys_ignore_keys_whose_kid_is_not_their_thumbprint() -> None:
    signer = nacl.signing.SigningKey.generate()
    enc = nacl.public.PrivateKey.generate()
    jwks = {"keys": [
        {"kty": "OKP", "crv": "X25519", "x": b64url(bytes(enc.public_key)), "kid": "wrong", "purpose": "envelope-enc"},
        {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(signer.verify_key)), "kid": "wrong",
         "purpose": "envelope-sign"},
        {"kty": "OKP", "crv": "X25519", "x": "short", "kid": "x", "purpose": "envelope-enc"},
    ]}
    published = PublishedKeys.from_jwks(jwks, fetched_at=0)
    assert published.enc is None and published.sign == ()
    with pytest.raises(ValueError):
        PublishedKeys.from_jwks({"no": "keys"}, fetched_at=0)


def test_published_keys_resolve_only_their_own_signers_and_build_the_resolver_once() -> None:
    """The resolver is kept with the published keys it was made from: a refreshed JWKS (a new `PublishedKeys`) never
    resolves a key the old one listed, and the old one never a key only the new one lists."""
    old_key, new_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()

    def published(*signers: nacl.signing.SigningKey) -> PublishedKeys:
        return PublishedKeys.from_jwks({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(key.verify_key)), "kid": ed25519_kid(key.verify_key),
             "purpose": "envelope-sign"} for key in signers]}, fetched_at=0)

    before, after = published(old_key), published(new_key)
    assert before.sender_keys() is before.sender_keys()
    assert before.sender_keys().resolve("exchange", ed25519_kid(old_key.verify_key), 0) == old_key.verify_key
    assert after.sender_keys().resolve("exchange", ed25519_kid(new_key.verify_key), 0) == new_key.verify_key
    with pytest.raises(UnknownKey):
        after.sender_keys().resolve("exchange", ed25519_kid(old_key.verify_key), 0)
    with pytest.raises(UnknownKey):
        before.sender_keys().resolve("exchange", ed25519_kid(new_key.verify_key), 0)
    with pytest.raises(UnknownKey):
        published().sender_keys().resolve("exchange", ed25519_kid(old_key.verify_key), 0)


def test_the_response_replay_cache_refuses_a_replay_and_forgets_expired_entries() -> None:
    clock = FakeClock()
    cache = ResponseReplayCache(clock)
    cache.claim("envelope:exchange", "m1", int(clock.now) + 120)
    with pytest.raises(Replayed):
        cache.claim("envelope:exchange", "m1", int(clock.now) + 120)
    clock.now += 600
    cache.claim("envelope:exchange", "m2", int(clock.now) + 120)
    assert len(cache) == 1


# --- end to end -------------------------------------------------------------------------------------------------------

E2E_BASE_URL = os.environ.get("EXCHANGE_E2E_BASE_URL")


@pytest.mark.server
@pytest.mark.skipif(not E2E_BASE_URL, reason="end-to-end smoke test: set EXCHANGE_E2E_BASE_URL (and "
                    "EXCHANGE_E2E_CLIENT_ID, EXCHANGE_E2E_AGENCY, EXCHANGE_E2E_KEY_DIR) to run it against a live "
                    "exchange")
def test_smoke_against_a_live_exchange() -> None:
    assert E2E_BASE_URL is not None
    with ExchangeClient.from_files(E2E_BASE_URL, os.environ["EXCHANGE_E2E_CLIENT_ID"],
                                   os.environ.get("EXCHANGE_E2E_AGENCY", "interior"),
                                   os.environ["EXCHANGE_E2E_KEY_DIR"],
                                   purpose=os.environ.get("EXCHANGE_E2E_PURPOSE", "register-maintenance")) as client:
        page = client.returnees.list(page_size=1)
    assert set(page.data) >= {"items", "page", "page_size", "total"}
    assert page.audit is not None and page.audit.index >= 0


# --- messages and the token cache (issue 12) --------------------------------------------------------------------------

def test_an_unknown_agency_is_told_the_agencies(fake: FakeExchange) -> None:
    with pytest.raises(ValueError, match="the agencies are auditor, border, interior, prosecutor, security"):
        ExchangeClient(BASE, client_id=CLIENT_ID, agency="customs", keys=fake.partner)


def test_missing_keys_name_the_command_that_makes_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no key folder {tmp_path / 'absent'}: .*exchange clients keygen"):
        PartnerKeys.load(tmp_path / "absent")
    PartnerKeys.generate().save(tmp_path / "keys")
    (tmp_path / "keys" / "enc.jwk.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks enc.jwk.json"):
        PartnerKeys.load(tmp_path / "keys")


def test_a_file_token_cache_carries_the_token_and_its_dpop_key_to_the_next_client(
    make_client: MakeClient, fake: FakeExchange, tmp_path: Path
) -> None:
    cache = FileTokenCache(tmp_path / "token.json")
    first = make_client(token_cache=cache)
    first.returnees.get(RETURNEE_ID)
    second = make_client(token_cache=cache)
    second.returnees.get(RETURNEE_ID)
    assert len(fake.token_requests) == 1 and second.dpop_jkt == first.dpop_jkt
    other_scopes = make_client(token_cache=cache, scopes=["returnees:read"])  # not what the token was issued for
    other_scopes.returnees.get(RETURNEE_ID)
    assert len(fake.token_requests) == 2 and other_scopes.dpop_jkt != first.dpop_jkt
