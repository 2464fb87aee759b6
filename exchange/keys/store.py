"""Where the exchange's private keys live: the `KeyStore` interface, the embedded `FileKeyStore`, and a memory store.

keys.md "Storage of private keys": one file per key under `EXCHANGE_KEYS_DIR`, sealed (XSalsa20-Poly1305), mode 0600,
written atomically (temp file, fsync, rename, fsync of the folder). `storage` keys are sealed by the master key
(`exchange.keys.master`); every other key is sealed by a `storage` key, named in its file, so that `rewrap` can move
them under a new one. Which key is active, retiring or revoked is not the store's business: the key registry in the
database says so (`exchange.keys.ring`). An HSM or cloud KMS can take this store's place by implementing `KeyStore`.

A key's private part never appears in a repr, a log line, an error or an API response.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

from exchange.files import atomic_write, fsync_directory
from exchange.keys.errors import KeyStoreDamaged, KeyStoreError, MasterSecretMissing
from exchange.protocol.encoding import b64url, b64url_decode, okp_thumbprint

SIGNING_PURPOSES = ("token", "envelope-sign", "audit")  # Ed25519 signing purposes held by the exchange
ENCRYPTION_PURPOSES = ("envelope-enc",)  # X25519: request envelopes are sealed to it
SECRET_PURPOSES = ("storage",)  # XSalsa20-Poly1305: the evidence store and key files at rest
ALL_PURPOSES = (*SIGNING_PURPOSES, *ENCRYPTION_PURPOSES, *SECRET_PURPOSES)
ALGORITHMS = {"token": "Ed25519", "envelope-sign": "Ed25519", "audit": "Ed25519", "envelope-enc": "X25519",
              "storage": "XSalsa20-Poly1305"}
FILE_VERSION = 1
MASTER = "master"  # `wrapped_by` of a file sealed directly by the master key


def storage_kid(secret: bytes) -> str:
    """A secret key's id: a hash that reveals nothing of the key."""
    return b64url(hashlib.sha256(b"exchange-storage-key\x00" + secret).digest()[:16])


@dataclass(frozen=True, kw_only=True)
class ExchangeKey:
    """One of the exchange's Ed25519 keys. `repr` never shows the private part."""

    purpose: str
    created_at: int
    signing_key: nacl.signing.SigningKey = field(repr=False, compare=False)

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def x(self) -> str:
        return b64url(self.public_bytes)

    @property
    def kid(self) -> str:
        return okp_thumbprint("Ed25519", self.x)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    def public_jwk(self) -> dict[str, Any]:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "use": "sig", "key_ops": ["verify"],
                "alg": "EdDSA", "purpose": self.purpose}

    def private_jwk(self) -> dict[str, Any]:
        """For the JOSE library that signs tokens; never logged, never returned by the API."""
        return {**self.public_jwk(), "d": b64url(bytes(self.signing_key)), "key_ops": ["sign"]}


@dataclass(frozen=True, kw_only=True)
class ExchangeEncryptionKey:
    """One of the exchange's X25519 keys (`envelope-enc`). `repr` never shows the private part."""

    purpose: str
    created_at: int
    private_key: nacl.public.PrivateKey = field(repr=False, compare=False)

    @property
    def public_key(self) -> nacl.public.PublicKey:
        return self.private_key.public_key

    @property
    def x(self) -> str:
        return b64url(bytes(self.public_key))

    @property
    def kid(self) -> str:
        return okp_thumbprint("X25519", self.x)

    def public_jwk(self) -> dict[str, Any]:
        return {"kty": "OKP", "crv": "X25519", "x": self.x, "kid": self.kid, "use": "enc", "key_ops": ["deriveKey"],
                "purpose": self.purpose}


@dataclass(frozen=True, kw_only=True)
class StorageKey:
    """A secret key that seals data at rest (XSalsa20-Poly1305). Its id is a hash, never the key."""

    purpose: str
    created_at: int
    secret: bytes = field(repr=False, compare=False)

    @property
    def kid(self) -> str:
        return storage_kid(self.secret)

    @property
    def x(self) -> None:
        return None  # a secret key has no public part

    def seal(self, plaintext: bytes) -> bytes:
        return bytes(nacl.secret.SecretBox(self.secret).encrypt(plaintext))

    def open(self, sealed: bytes) -> bytes:
        try:
            return nacl.secret.SecretBox(self.secret).decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise KeyStoreError("Stored data does not open with this storage key.") from e


PrivateKey = ExchangeKey | ExchangeEncryptionKey | StorageKey


def make_key(purpose: str, *, created_at: int, secret: bytes | None = None) -> PrivateKey:
    """A key of `purpose` from its 32 secret bytes, or a fresh one."""
    secret = nacl.utils.random(32) if secret is None else secret
    if purpose in SIGNING_PURPOSES:
        return ExchangeKey(purpose=purpose, created_at=created_at, signing_key=nacl.signing.SigningKey(secret))
    if purpose in ENCRYPTION_PURPOSES:
        return ExchangeEncryptionKey(purpose=purpose, created_at=created_at,
                                     private_key=nacl.public.PrivateKey(secret))
    if purpose in SECRET_PURPOSES:
        if len(secret) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("a storage key is 32 bytes")
        return StorageKey(purpose=purpose, created_at=created_at, secret=secret)
    raise ValueError(f"unknown key purpose {purpose!r}")


def secret_bytes(key: PrivateKey) -> bytes:
    if isinstance(key, ExchangeKey):
        return bytes(key.signing_key)
    if isinstance(key, ExchangeEncryptionKey):
        return bytes(key.private_key)
    return key.secret


class KeyStore(Protocol):
    """Private key material by `kid`. The registry (database) decides what each key is for and when."""

    def generate(self, purpose: str, *, wrap_with: str | None = None) -> PrivateKey:
        """Make and keep a new key. `wrap_with`: the `storage` key to seal it under (storage keys: the master)."""
        ...

    def load(self, kid: str) -> PrivateKey:
        """The key `kid`; KeyStoreError if it is absent, destroyed or does not open."""
        ...

    def has(self, kid: str) -> bool:
        ...

    def destroy(self, kid: str) -> bool:
        """Erase the private part for good; True if there was one."""
        ...

    def wrapped_by(self, kid: str) -> str | None:
        """Which storage key seals `kid` (`master` for storage keys); None if not stored."""
        ...

    def rewrap(self, storage_kid: str) -> int:
        """Seal every non-storage key under `storage_kid`; return how many were rewritten."""
        ...

    def unlock(self) -> None:
        """Check the master secret now (refuse to start if it is missing or wrong)."""
        ...


class FileKeyStore:
    """Keys as files `<kid>.key` (JSON: purpose, created_at, wrapped_by, sealed secret), 0600 in a 0700 folder."""

    def __init__(self, directory: Path, *, master: Any = None) -> None:
        """`master`: a `MasterKey`, or a callable returning one (unlocked on first use)."""
        self.directory = directory
        self._master_source = master
        self._master: Any = None
        self._loaded: dict[str, PrivateKey] = {}  # files are immutable per kid, except rewrap (same secret)
        self._lock = threading.Lock()

    # ---- the master key -----------------------------------------------------------------------------------------

    def unlock(self) -> None:
        self._master_key()

    def _master_key(self) -> Any:
        if self._master is None:
            source = self._master_source
            if source is None:
                raise MasterSecretMissing()
            self._master = source() if callable(source) else source
        return self._master

    # ---- files --------------------------------------------------------------------------------------------------

    def _path(self, kid: str) -> Path:
        if not kid or not all(c.isalnum() or c in "-_" for c in kid):
            raise KeyStoreError("Not a key id.")
        return self.directory / f"{kid}.key"

    def _read_file(self, kid: str) -> dict[str, Any]:
        if not self.directory.is_dir():
            raise KeyStoreError(f"The key store {self.directory} does not exist; run `exchange init`.")
        path = self._path(kid)
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError as e:
            raise KeyStoreError(f"The key store has no private part for key {kid}.") from e
        if mode & 0o077:
            raise KeyStoreError(f"Key file {path.name} is readable by others (mode {mode:o}); refusing to use it.")
        try:
            data = json.loads(path.read_text(encoding="ascii"))
            if data.get("v") != FILE_VERSION or not isinstance(data.get("sealed"), str):
                raise ValueError("not a sealed key file of this version")
            return dict(data)
        except (ValueError, UnicodeDecodeError, AttributeError) as e:
            raise KeyStoreDamaged(f"Key file {path.name} is damaged: it is not a sealed key file.") from e

    def _unseal(self, kid: str, data: dict[str, Any]) -> bytes:
        sealed = b64url_decode(data["sealed"])
        wrapper = data.get("wrapped_by")
        if wrapper == MASTER:
            master = self._master_key()  # unlock() proved the secret right against master.json's check value
            try:
                opened: bytes = master.open(sealed)
            except KeyStoreError as e:  # so a file that does not open under it is damaged, not the secret wrong
                raise KeyStoreDamaged(f"Key file {kid}.key is damaged: it does not open with the master key.") from e
            return opened
        # A wrapping key is a storage key sealed by the master key: checking that first also ends any loop of
        # files that name each other (or themselves) as their wrapper.
        if not isinstance(wrapper, str) or wrapper == kid or (
                wrapper not in self._loaded and self._read_file(wrapper).get("wrapped_by") != MASTER):
            raise KeyStoreDamaged(f"Key file {kid}.key is sealed under {wrapper}.key, which is damaged or not a "
                                  "storage key sealed by the master key.")
        storage = self.load(wrapper)
        if not isinstance(storage, StorageKey):
            raise KeyStoreDamaged(f"Key file {kid}.key names a wrapping key that is not a storage key.")
        try:
            return storage.open(sealed)
        except KeyStoreError as e:
            raise KeyStoreDamaged(f"Key file {kid}.key is damaged: it does not open with storage key {wrapper}.") from e

    def load(self, kid: str) -> PrivateKey:
        key = self._loaded.get(kid)
        if key is not None:
            return key
        data = self._read_file(kid)
        try:
            key = make_key(str(data["purpose"]), created_at=int(data["created_at"]), secret=self._unseal(kid, data))
        except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as e:
            raise KeyStoreDamaged(f"Key file {kid}.key is damaged: its contents are not a key.") from e
        if key.kid != kid:
            raise KeyStoreDamaged(f"Key file {kid}.key is damaged: it holds another key.")
        self._loaded[kid] = key
        return key

    def has(self, kid: str) -> bool:
        return self._path(kid).exists()

    def wrapped_by(self, kid: str) -> str | None:
        if not self.has(kid):
            return None
        return str(self._read_file(kid).get("wrapped_by"))

    def generate(self, purpose: str, *, wrap_with: str | None = None) -> PrivateKey:
        key = make_key(purpose, created_at=int(time.time()))
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write(key, wrap_with=MASTER if purpose in SECRET_PURPOSES else wrap_with)
        self._loaded[key.kid] = key
        return key

    def _write(self, key: PrivateKey, *, wrap_with: str | None) -> None:
        if wrap_with is None:
            raise KeyStoreError("A new key needs an active storage key to be sealed under; run `exchange init`.")
        if wrap_with == MASTER:
            sealed: bytes = self._master_key().seal(secret_bytes(key))
        else:
            storage = self.load(wrap_with)
            if not isinstance(storage, StorageKey):
                raise KeyStoreError(f"{wrap_with} is not a storage key.")
            sealed = storage.seal(secret_bytes(key))
        payload = json.dumps({"v": FILE_VERSION, "kid": key.kid, "purpose": key.purpose, "created_at": key.created_at,
                              "wrapped_by": wrap_with, "sealed": b64url(sealed)}).encode("ascii")
        atomic_write(self._path(key.kid), payload)

    def destroy(self, kid: str) -> bool:
        path = self._path(kid)
        self._loaded.pop(kid, None)
        if not path.exists():
            return False
        with path.open("r+b") as handle:  # overwrite before unlinking (best effort on journaling file systems)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            handle.write(nacl.utils.random(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        fsync_directory(self.directory)
        return True

    def kids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name.removesuffix(".key") for p in self.directory.glob("*.key"))

    def rewrap(self, storage_kid: str) -> int:
        count = 0
        with self._lock:
            for kid in self.kids():
                data = self._read_file(kid)
                if data.get("wrapped_by") in (MASTER, storage_kid):
                    continue
                self._write(self.load(kid), wrap_with=storage_kid)
                count += 1
        return count


class InMemoryKeyStore:
    """For tests: keys kept in this process's memory, never on disk."""

    def __init__(self) -> None:
        self._keys: dict[str, PrivateKey] = {}
        self._wrapping: dict[str, str] = {}

    def unlock(self) -> None:
        return None

    def generate(self, purpose: str, *, wrap_with: str | None = None) -> PrivateKey:
        key = make_key(purpose, created_at=int(time.time()))
        self._keys[key.kid] = key
        self._wrapping[key.kid] = MASTER if purpose in SECRET_PURPOSES else (wrap_with or MASTER)
        return key

    def load(self, kid: str) -> PrivateKey:
        try:
            return self._keys[kid]
        except KeyError as e:
            raise KeyStoreError(f"The key store has no private part for key {kid}.") from e

    def has(self, kid: str) -> bool:
        return kid in self._keys

    def destroy(self, kid: str) -> bool:
        self._wrapping.pop(kid, None)
        return self._keys.pop(kid, None) is not None

    def wrapped_by(self, kid: str) -> str | None:
        return self._wrapping.get(kid)

    def rewrap(self, storage_kid: str) -> int:
        moved = [k for k, w in self._wrapping.items() if w not in (MASTER, storage_kid)]
        for kid in moved:
            self._wrapping[kid] = storage_kid
        return len(moved)
