"""The partner side of protocol v1 §4: a partner's keys, the exchange's published keys, sealing requests, opening
responses. Built on the envelope core (`exchange.protocol.envelope`); `exchange.partner.api` is the only intended user.

A partner holds three long-lived keys and one ephemeral one:

| key | type | file | what for |
|---|---|---|---|
| `auth` | Ed25519 | `auth.jwk.json` | client assertions at the token endpoint (`PartnerKey`) |
| `sign` | Ed25519 | `sign.jwk.json` | signing request envelopes (`skid`) (`PartnerKey`) |
| `enc` | X25519 | `enc.jwk.json` | the exchange seals responses to it (`rkid`) (`PartnerEncryptionKey`) |
| DPoP | Ed25519 | none | made per `ExchangeClient`, bound to its tokens |

Key files are private OKP JWKs (RFC 8037: `kty` OKP, `crv`, `x`, `d`), written with mode 0600 and never
overwritten. `PartnerKeys.generate().save(key_dir)` makes all three; `PartnerKeys.registration()` is the `keys` list a
security officer registers (`POST /v1/clients`, public parts only).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import nacl.public
import nacl.signing

from exchange.partner.credentials import PartnerKey
from exchange.protocol.auth_errors import Replayed
from exchange.protocol.encoding import b64url, b64url_decode_strict
from exchange.protocol.envelope import (
    MAX_BODY_BYTES,
    EnvelopeHeader,
    OpenedEnvelope,
    RequestRef,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    ed25519_kid,
    open_response,
    request_hash_of,
    seal_json,
    x25519_kid,
)
from exchange.protocol.envelope_errors import UnknownKey

EXCHANGE = "exchange"  # the exchange's party id: recipient of requests, sender of responses
SIGN_PURPOSE = "envelope-sign"
ENC_PURPOSE = "envelope-enc"
AUDIT_PURPOSE = "audit"


def _write_private(path: Path, jwk: Mapping[str, Any]) -> None:
    """Create `path` with mode 0600 (never readable by others) and refuse to overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        json.dump(dict(jwk), handle)


def _key_bytes(value: Any, member: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"the JWK member {member!r} must be a string")
    raw = b64url_decode_strict(value)
    if len(raw) != 32:
        raise ValueError(f"the JWK member {member!r} must encode 32 bytes")
    return raw


@dataclass(frozen=True, kw_only=True)
class PartnerEncryptionKey:
    """A partner's X25519 `enc` key: the exchange seals its responses to it. `repr` never shows the private part."""

    private_key: nacl.public.PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> PartnerEncryptionKey:
        return cls(private_key=nacl.public.PrivateKey.generate())

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PartnerEncryptionKey:
        """From a private X25519 OKP JWK; raises ValueError if it is not one, or if its `x` is not its `d`'s."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "X25519":
            raise ValueError('an enc key is an OKP JWK with "crv": "X25519"')
        key = cls(private_key=nacl.public.PrivateKey(_key_bytes(jwk.get("d"), "d")))
        if "x" in jwk and _key_bytes(jwk["x"], "x") != bytes(key.public_key):
            raise ValueError("the JWK's x is not the public key of its d")
        return key

    @classmethod
    def load(cls, path: Path) -> PartnerEncryptionKey:
        return cls.from_jwk(json.loads(path.read_text(encoding="ascii")))

    def save(self, path: Path) -> None:
        """Write the private JWK to `path`, created with mode 0600; an existing file is never overwritten."""
        _write_private(path, {**self.public_jwk, "d": b64url(bytes(self.private_key))})

    @property
    def public_key(self) -> nacl.public.PublicKey:
        return self.private_key.public_key

    @property
    def public_jwk(self) -> dict[str, Any]:
        return {"kty": "OKP", "crv": "X25519", "x": b64url(bytes(self.public_key))}

    @property
    def kid(self) -> str:
        return x25519_kid(self.public_key)


def _ed25519_private(key: PartnerKey, name: str) -> PartnerKey:
    if key.public_jwk["crv"] != "Ed25519" or not key.key.is_private:
        raise ValueError(f"the {name} key must be a private Ed25519 OKP JWK")
    return key


class MissingKeyFiles(FileNotFoundError):
    """A partner key folder, or some of its key files, is missing; the text says which and how to make them."""

    def __init__(self, key_dir: Path, missing: list[str]) -> None:
        super().__init__(errno.ENOENT, "missing key files", str(key_dir))
        self.key_dir = key_dir
        self.missing = missing

    def __str__(self) -> str:
        what = f"no key folder {self.key_dir}" if not self.key_dir.is_dir() else (
            f"{self.key_dir} lacks {', '.join(self.missing)}")
        return (f"{what}: make the auth, sign and enc keys with `exchange clients keygen --out {self.key_dir}` (or "
                "`PartnerKeys.generate().save(key_dir)`), then have a security officer register their public parts "
                "(`exchange clients add`)")


@dataclass(frozen=True, kw_only=True)
class PartnerKeys:
    """A partner client's long-lived keys (`auth`, `sign`, `enc`)."""

    FILES: ClassVar[Mapping[str, str]] = {"auth": "auth.jwk.json", "sign": "sign.jwk.json", "enc": "enc.jwk.json"}

    auth: PartnerKey
    sign: PartnerKey
    enc: PartnerEncryptionKey

    def __post_init__(self) -> None:
        _ed25519_private(self.auth, "auth")
        _ed25519_private(self.sign, "sign")
        if self.auth.kid == self.sign.kid:
            raise ValueError("use distinct auth and sign keys")

    @classmethod
    def generate(cls) -> PartnerKeys:
        return cls(auth=PartnerKey.generate(), sign=PartnerKey.generate(), enc=PartnerEncryptionKey.generate())

    @classmethod
    def load(cls, key_dir: Path) -> PartnerKeys:
        """Read `auth.jwk.json`, `sign.jwk.json` and `enc.jwk.json` from `key_dir`."""
        key_dir = Path(key_dir)
        missing = [name for name in cls.FILES.values() if not (key_dir / name).is_file()]
        if missing:
            raise MissingKeyFiles(key_dir, missing)
        return cls(auth=PartnerKey.load(key_dir / cls.FILES["auth"]), sign=PartnerKey.load(key_dir / cls.FILES["sign"]),
                   enc=PartnerEncryptionKey.load(key_dir / cls.FILES["enc"]))

    def save(self, key_dir: Path) -> None:
        """Write the three private JWKs into `key_dir` (created with mode 0700 if missing); never overwrites a key."""
        key_dir = Path(key_dir)
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = [name for name in self.FILES.values() if (key_dir / name).exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite keys in {key_dir}: {', '.join(existing)}")
        self.auth.save(key_dir / self.FILES["auth"])
        self.sign.save(key_dir / self.FILES["sign"])
        self.enc.save(key_dir / self.FILES["enc"])

    def registration(self) -> list[dict[str, Any]]:
        """The public keys as `POST /v1/clients` takes them: `[{"purpose": "auth", "jwk": {...}}, ...]`."""
        return [{"purpose": "auth", "jwk": self.auth.public_jwk}, {"purpose": "sign", "jwk": self.sign.public_jwk},
                {"purpose": "enc", "jwk": self.enc.public_jwk}]

    @functools.cached_property
    def signing_key(self) -> nacl.signing.SigningKey:
        """The `sign` key as PyNaCl's signing key (what `seal` takes); parsed once (the keys never change)."""
        return nacl.signing.SigningKey(_key_bytes(self.sign.key.as_dict(private=True)["d"], "d"))


@dataclass(frozen=True, kw_only=True)
class PublishedKeys:
    """The exchange's envelope keys as its JWKS publishes them (`/.well-known/jwks.json`).

    `enc`: the X25519 `envelope-enc` key requests are sealed to: the first one listed, since the exchange lists its
    active key before pending or retiring ones. `sign`: every `envelope-sign` key (active and retiring), any of
    which may have signed a response. A key whose `kid` is not its RFC 7638 thumbprint is ignored: `rkid`/`skid` are
    thumbprints, so such a key could never be named correctly."""

    enc: nacl.public.PublicKey | None
    sign: tuple[nacl.signing.VerifyKey, ...]
    fetched_at: float
    audit: tuple[bytes, ...] = ()  # the `audit` keys (Ed25519, raw) that sign checkpoints, to check audit receipts

    @classmethod
    def from_jwks(cls, jwks: Any, *, fetched_at: float) -> PublishedKeys:
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError('a JWKS is a JSON object with a "keys" array')
        enc: nacl.public.PublicKey | None = None
        sign: list[nacl.signing.VerifyKey] = []
        audit: list[bytes] = []
        for jwk in jwks["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != "OKP":
                continue
            try:
                raw = _key_bytes(jwk.get("x"), "x")
            except ValueError:
                continue
            if jwk.get("purpose") == ENC_PURPOSE and jwk.get("crv") == "X25519":
                public = nacl.public.PublicKey(raw)
                if enc is None and jwk.get("kid") == x25519_kid(public):
                    enc = public
            elif jwk.get("purpose") in (SIGN_PURPOSE, AUDIT_PURPOSE) and jwk.get("crv") == "Ed25519":
                verify = nacl.signing.VerifyKey(raw)
                if jwk.get("kid") != ed25519_kid(verify):
                    continue
                if jwk.get("purpose") == SIGN_PURPOSE:
                    sign.append(verify)
                else:
                    audit.append(raw)
        return cls(enc=enc, sign=tuple(sign), fetched_at=fetched_at, audit=tuple(audit))

    @property
    def enc_kid(self) -> str | None:
        return None if self.enc is None else x25519_kid(self.enc)

    def sender_keys(self) -> StaticSenderKeys | _NoKeys:
        """The resolver of the responses' signers: made once per set of published keys (both are immutable; a
        refreshed JWKS is a new `PublishedKeys`), not once per response."""
        return self._sender_keys

    @functools.cached_property
    def _sender_keys(self) -> StaticSenderKeys | _NoKeys:
        if not self.sign:
            return _NoKeys()
        return StaticSenderKeys(SenderKey(agency=EXCHANGE, verify_key=key) for key in self.sign)


class _NoKeys:
    """A resolver for a JWKS that lists no `envelope-sign` key: every response's signer is unknown."""

    def resolve(self, agency: str, skid: str, at: int) -> nacl.signing.VerifyKey:
        raise UnknownKey()


class ResponseReplayCache:
    """The client's own replay check of response envelopes (protocol.md §4 step 10, `envelope:exchange`, msg_id).

    Like `exchange.auth.replay.InMemoryReplayCache`, but it forgets expired entries (each lives until the response's
    `exp` + 60 s, at most about six minutes), so that a partner process running for months does not grow without
    bound; and it needs no database code."""

    PURGE_EVERY: ClassVar[int] = 60  # seconds between sweeps of expired entries

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._next_purge = 0

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        now = int(self._clock())
        with self._lock:
            if now >= self._next_purge:
                self._seen = {k: exp for k, exp in self._seen.items() if exp >= now}
                self._next_purge = now + self.PURGE_EVERY
            seen = self._seen.get((namespace, jti))
            if seen is not None and seen >= now:
                raise Replayed(jti)
            self._seen[(namespace, jti)] = expires_at


def seal_request(
    *, agency: str, keys: PartnerKeys, exchange: PublishedKeys, method: str, target: str, value: Any, now: int,
    msg_id: str | None = None,
) -> tuple[bytes, RequestRef]:
    """Seal `value` for `method target` from `agency` to the exchange's `envelope-enc` key (with a fresh `msg_id`
    unless one is given: the same request sealed again to a new key); return the body and what the response must
    name. Raises ValueError if the exchange publishes no `envelope-enc` key."""
    if exchange.enc is None or exchange.enc_kid is None:
        raise ValueError("the exchange's JWKS lists no usable envelope-enc key")
    signing_key = keys.signing_key
    # The skid from the key actually used (the same `sign` key; its thumbprint is memoised by the envelope core).
    header = EnvelopeHeader.for_request(sender=agency, skid=ed25519_kid(signing_key.verify_key), recipient=EXCHANGE,
                                        rkid=exchange.enc_kid, method=method, target=target, now=now,
                                        msg_id=msg_id)
    sealed = seal_json(header=header, value=value, signing_key=signing_key, recipient_key=exchange.enc)
    # What `RequestRef.of_envelope(sealed)` would read back from the header just written, without parsing it again.
    request = RequestRef(method=header.method, target=header.target, reply_to=header.msg_id,
                         request_hash=request_hash_of(sealed))
    return sealed.to_json(), request


def open_reply(
    body: bytes, *, request: RequestRef, agency: str, keys: PartnerKeys, exchange: PublishedKeys,
    replay: ResponseReplayCache, now: int, max_bytes: int = MAX_BODY_BYTES,
) -> OpenedEnvelope:
    """Open a response envelope: the receiver's checks 1-11, from the exchange, to `agency`'s `enc` key, answering
    `request`; raises the core's `EnvelopeError` (`UnknownKey` when its signer is not a published key)."""
    return open_response(body, request=request, receiver=agency, decrypt_keys=decrypt_keyring([keys.enc.private_key]),
                         sender=EXCHANGE, sender_keys=exchange.sender_keys(), replay=replay, now=now,
                         max_bytes=max_bytes)


__all__ = [
    "EXCHANGE",
    "PartnerEncryptionKey",
    "PartnerKeys",
    "PublishedKeys",
    "ResponseReplayCache",
    "open_reply",
    "seal_request",
]
