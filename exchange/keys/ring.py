"""The key ring: the registry (database) says which key does what when; the store holds the private parts.

Every worker keeps a snapshot of the registry (a handful of rows) for `KEY_CACHE_SECONDS` and reloads it at once when
asked for a key it does not know (a token or envelope naming a key another worker just started using). Activations
are scheduled at least `KEY_CACHE_SECONDS` ahead (`exchange.keys.service`), so every worker knows a key before any
worker signs with it: rotation fails no request. A revocation reaches every worker within `KEY_CACHE_SECONDS`.

The app uses the ring where it used the key store before: `active`, `verification_keys`, `active_encryption`,
`decryption_keys`, `active_secret`/`storage_key`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import nacl.public
import nacl.signing
from flask import Flask, current_app
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exchange.keys.errors import KeyStoreError
from exchange.keys.models import ExchangeKeyRecord
from exchange.keys.store import (
    ALGORITHMS,
    ENCRYPTION_PURPOSES,
    SECRET_PURPOSES,
    SIGNING_PURPOSES,
    ExchangeEncryptionKey,
    ExchangeKey,
    KeyStore,
    PrivateKey,
    StorageKey,
)
from exchange.protocol.encoding import b64url_decode

MISS_REFRESH_SECONDS = 0.2  # a burst of unknown kids reloads the registry at most this often


class KeyTimes(Protocol):
    @property
    def kid(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def activate_at(self) -> datetime | None: ...
    @property
    def retire_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def destroyed_at(self) -> datetime | None: ...


def active_kids(keys: Iterable[KeyTimes], now: datetime) -> dict[str, str]:
    """purpose -> the kid active at `now`: the latest activated key not revoked, destroyed or retired."""
    best: dict[str, tuple[datetime, str]] = {}
    for key in keys:
        if key.revoked_at is not None or key.destroyed_at is not None:
            continue
        if key.activate_at is None or key.activate_at > now:
            continue
        if key.retire_at is not None and key.retire_at <= now:
            continue
        current = best.get(key.purpose)
        if current is None or (key.activate_at, key.kid) > current:
            best[key.purpose] = (key.activate_at, key.kid)
    return {purpose: kid for purpose, (_, kid) in best.items()}


def state_of(key: KeyTimes, now: datetime, active: Mapping[str, str]) -> str:
    """keys.md's state of `key` at `now` (see exchange.keys.models)."""
    if key.revoked_at is not None:
        return "revoked"
    if key.destroyed_at is not None:
        return "destroyed"
    if active.get(key.purpose) == key.kid:
        return "active"
    if key.retire_at is not None and key.retire_at <= now:
        return "retired"
    if key.activate_at is None or key.activate_at > now:
        return "pending"
    return "retiring"


@dataclass(frozen=True, kw_only=True)
class PublishedKey:
    """A registry row as every worker sees it: public part and times, never a private part."""

    kid: str
    purpose: str
    algorithm: str
    x: str | None
    created_at: datetime
    activate_at: datetime | None
    retire_at: datetime | None
    revoked_at: datetime | None
    destroyed_at: datetime | None

    @classmethod
    def of(cls, row: ExchangeKeyRecord) -> PublishedKey:
        return cls(kid=row.kid, purpose=row.purpose, algorithm=row.algorithm, x=row.x, created_at=row.created_at,
                   activate_at=row.activate_at, retire_at=row.retire_at, revoked_at=row.revoked_at,
                   destroyed_at=row.destroyed_at)

    @property
    def public_bytes(self) -> bytes:
        if self.x is None:
            raise KeyStoreError(f"Key {self.kid} has no public part.")
        return b64url_decode(self.x)

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return nacl.signing.VerifyKey(self.public_bytes)

    def public_jwk(self, *, state: str | None = None) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kty": "OKP", "crv": self.algorithm, "x": self.x, "kid": self.kid}
        if self.algorithm == "Ed25519":
            jwk.update(use="sig", key_ops=["verify"], alg="EdDSA")
        else:
            jwk.update(use="enc", key_ops=["deriveKey"])
        jwk["purpose"] = self.purpose
        if state is not None:
            jwk["status"] = state
        return jwk


@dataclass(frozen=True)
class Snapshot:
    keys: tuple[PublishedKey, ...]
    loaded_at: float

    def by_kid(self, kid: str) -> PublishedKey | None:
        return next((k for k in self.keys if k.kid == kid), None)


class KeyRing:
    def __init__(self, *, engine: Engine, store: KeyStore, cache_seconds: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.store = store
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._last_miss_refresh = 0.0
        self._lock = threading.Lock()

    # ---- the registry snapshot ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def snapshot(self, *, refresh: bool = False) -> Snapshot:
        snap = self._snapshot
        if refresh or snap is None or self.clock() - snap.loaded_at >= self.cache_seconds:
            with Session(self.engine) as session:
                rows = session.scalars(select(ExchangeKeyRecord).order_by(ExchangeKeyRecord.created_at)).all()
                snap = Snapshot(keys=tuple(PublishedKey.of(r) for r in rows), loaded_at=self.clock())
            self._snapshot = snap
        return snap

    def invalidate(self) -> None:
        self._snapshot = None

    def _refresh_on_miss(self) -> Snapshot | None:
        """Reload the registry because a kid was not found; at most every MISS_REFRESH_SECONDS."""
        with self._lock:
            if self.clock() - self._last_miss_refresh < MISS_REFRESH_SECONDS:
                return None
            self._last_miss_refresh = self.clock()
        return self.snapshot(refresh=True)

    def states(self, snap: Snapshot | None = None) -> dict[str, str]:
        snap = snap or self.snapshot()
        now = self.now()
        active = active_kids(snap.keys, now)
        return {k.kid: state_of(k, now, active) for k in snap.keys}

    # ---- public parts -------------------------------------------------------------------------------------------

    def _trusted(self, purpose: str, snap: Snapshot) -> list[PublishedKey]:
        """Keys whose signatures for `purpose` verify now, the active one first.

        Tokens and envelopes: pending, active, retiring (and a destroyed key within its overlap: its public part is
        kept). Audit checkpoints: every key but a revoked one, so old checkpoints verify forever.
        """
        states = self.states(snap)
        now = self.now()
        order = {"active": 0, "pending": 1, "retiring": 2, "retired": 3, "destroyed": 4}
        trusted = []
        for key in snap.keys:
            state = states[key.kid]
            if key.purpose != purpose or state == "revoked":
                continue
            in_overlap = key.retire_at is None or key.retire_at > now
            if purpose == "audit" or state in ("pending", "active", "retiring") or (
                    state == "destroyed" and in_overlap and key.activate_at is not None):
                trusted.append(key)
        return sorted(trusted, key=lambda k: order[states[k.kid]])

    def verification_keys(self, purpose: str) -> list[PublishedKey]:
        return self._trusted(purpose, self.snapshot())

    def verification_key(self, purpose: str, kid: str) -> PublishedKey | None:
        """The trusted key `kid`, reloading the registry once if this worker does not know it yet."""
        found = next((k for k in self._trusted(purpose, self.snapshot()) if k.kid == kid), None)
        if found is None:
            snap = self._refresh_on_miss()
            if snap is not None:
                found = next((k for k in self._trusted(purpose, snap) if k.kid == kid), None)
        return found

    def published(self) -> list[tuple[PublishedKey, str]]:
        """The JWKS: every key partners may meet, with its state, the active ones first."""
        snap = self.snapshot()
        out: list[tuple[PublishedKey, str]] = []
        states = self.states(snap)
        for purpose in (*SIGNING_PURPOSES, *ENCRYPTION_PURPOSES):
            keys = (self._trusted(purpose, snap) if purpose != "envelope-enc"
                    else [k for k in self._decryptable(snap)])
            out.extend((k, states[k.kid]) for k in keys)
        return out

    # ---- private parts ------------------------------------------------------------------------------------------

    def _active_record(self, purpose: str) -> PublishedKey:
        snap = self.snapshot()
        kid = active_kids(snap.keys, self.now()).get(purpose)
        if kid is None:
            raise KeyStoreError(f"The exchange has no active {purpose!r} key; run `exchange init` or "
                                f"`exchange keys rotate {purpose}`.")
        key = snap.by_kid(kid)
        if key is None:  # cannot happen: the kid came from this snapshot
            raise KeyStoreError(f"Key {kid} vanished from the registry.")
        return key

    def _private(self, kid: str) -> PrivateKey:
        return self.store.load(kid)

    def active(self, purpose: str) -> ExchangeKey:
        key = self._private(self._active_record(purpose).kid)
        if not isinstance(key, ExchangeKey):
            raise KeyStoreError(f"The active {purpose!r} key is not a signing key.")
        return key

    def active_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        key = self._private(self._active_record(purpose).kid)
        if not isinstance(key, ExchangeEncryptionKey):
            raise KeyStoreError(f"The active {purpose!r} key is not an X25519 key.")
        return key

    def _decryptable(self, snap: Snapshot) -> list[PublishedKey]:
        states = self.states(snap)
        order = {"active": 0, "pending": 1, "retiring": 2}
        keys = [k for k in snap.keys if k.purpose == "envelope-enc" and states[k.kid] in order]
        return sorted(keys, key=lambda k: order[states[k.kid]])

    def decryption_keys(self, purpose: str = "envelope-enc") -> list[ExchangeEncryptionKey]:
        out = []
        for record in self._decryptable(self.snapshot()):
            key = self._private(record.kid)
            if isinstance(key, ExchangeEncryptionKey):
                out.append(key)
        return out

    def decryption_keyring(self) -> DecryptionKeys:
        """rkid -> X25519 private key, for `open_envelope`; an unknown rkid reloads the registry once."""
        return DecryptionKeys(self)

    def active_secret(self, purpose: str = "storage") -> StorageKey:
        key = self._private(self._active_record(purpose).kid)
        if not isinstance(key, StorageKey):
            raise KeyStoreError("The active storage key is not a secret key.")
        return key

    def storage_key(self, kid: str) -> StorageKey:
        """Any storage key still held (to open evidence sealed before a rotation)."""
        key = self._private(kid)
        if not isinstance(key, StorageKey):
            raise KeyStoreError(f"{kid} is not a storage key.")
        return key

    # ---- set-up -------------------------------------------------------------------------------------------------

    def ensure_all(self, *, officer: str | None = None) -> list[PublishedKey]:
        """Generate and activate a key for every purpose that has no active one (`exchange init`); idempotent.

        Runs in its own transaction: at set-up nothing is using keys yet, so activation is immediate.
        """
        created: list[PublishedKey] = []
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(select(ExchangeKeyRecord)).all()
            now = self.now()
            active = active_kids(rows, now)
            # storage first: it seals the rest
            for purpose in (*SECRET_PURPOSES, *SIGNING_PURPOSES, *ENCRYPTION_PURPOSES):
                if purpose in active:
                    continue
                wrap_with = active.get("storage")
                key = self.store.generate(purpose, wrap_with=wrap_with)
                row = registry_row(key, activate_at=now, officer=officer)
                session.add(row)
                session.flush()
                active[purpose] = key.kid
                created.append(PublishedKey.of(row))
        self.invalidate()
        return created


def registry_row(key: PrivateKey, *, activate_at: datetime | None, officer: str | None) -> ExchangeKeyRecord:
    return ExchangeKeyRecord(kid=key.kid, purpose=key.purpose, algorithm=ALGORITHMS[key.purpose], x=key.x,
                             activate_at=activate_at, created_by=officer,
                             created_at=datetime.fromtimestamp(key.created_at, UTC))


class DecryptionKeys(Mapping[str, nacl.public.PrivateKey]):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._keys = {k.kid: k.private_key for k in ring.decryption_keys()}
        if not self._keys:
            raise KeyStoreError("The exchange has no envelope-enc key; run `exchange init`.")

    def __getitem__(self, rkid: str) -> nacl.public.PrivateKey:
        if rkid not in self._keys and self.ring._refresh_on_miss() is not None:
            self._keys = {k.kid: k.private_key for k in self.ring.decryption_keys()}
        return self._keys[rkid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)



def provision(keys_dir: Path, engine: Engine, *, master_key: str) -> KeyRing:
    """A key store in `keys_dir` unlocked by `master_key` (an `EXCHANGE_MASTER_KEY` value), with every exchange key
    made and registered: what `exchange init` does, for the demo, the benchmarks and tests that start servers."""
    from exchange.keys.master import MasterSecret, unlock
    from exchange.keys.store import FileKeyStore

    master = unlock(keys_dir, MasterSecret(key=master_key), create=True)
    ring = KeyRing(engine=engine, store=FileKeyStore(keys_dir, master=master))
    ring.ensure_all()
    return ring


_EXTENSION = "exchange.keystore"


def attach_key_ring(app: Flask, ring: KeyRing) -> None:
    """Make `ring` the app's key ring (the app factory does, once)."""
    app.extensions[_EXTENSION] = ring


def key_ring(app: Flask | None = None) -> KeyRing:
    """The app's key ring (`app`, or the current app): the one way to reach it."""
    ring: KeyRing = (app or current_app).extensions[_EXTENSION]
    return ring
