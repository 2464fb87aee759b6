"""The embedded key store: the exchange's private keys, one file per key under `EXCHANGE_KEYS_DIR`.

Behind the `KeyStore` protocol so that an HSM or cloud KMS can take its place. This first version keeps Ed25519 seeds
in files of mode 0600 written atomically (temp file, fsync, rename); the key-management issue seals them under a key
derived from `EXCHANGE_MASTER_PASSPHRASE` and adds the full lifecycle (pending, retiring, revoked, destroyed).
A key's private part never appears in a repr, a log line, an error or an API response.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

from exchange.errors import ExchangeError

PURPOSES = ("token", "envelope-sign", "audit")  # Ed25519 signing purposes held by the exchange
ENCRYPTION_PURPOSES = ("envelope-enc",)  # X25519: request envelopes are sealed to it
SECRET_PURPOSES = ("storage",)  # XSalsa20-Poly1305: the evidence store at rest


class KeyStoreError(ExchangeError):
    """The key store is missing, unreadable or holds no usable key; the exchange fails closed."""

    status = 503
    code = "key_store_unavailable"
    default_message = "The exchange's key store is unavailable."


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def okp_thumbprint(crv: str, x: str) -> str:
    """RFC 7638 JWK thumbprint of an OKP key: b64url(SHA-256 of {"crv","kty","x"} in lexicographic order)."""
    canonical = json.dumps({"crv": crv, "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


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
        return b64url(hashlib.sha256(b"exchange-storage-key\x00" + self.secret).digest()[:16])

    def seal(self, plaintext: bytes) -> bytes:
        return bytes(nacl.secret.SecretBox(self.secret).encrypt(plaintext))

    def open(self, sealed: bytes) -> bytes:
        try:
            return nacl.secret.SecretBox(self.secret).decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise KeyStoreError("Stored data does not open with this storage key.") from e


class KeyStore(Protocol):
    def active(self, purpose: str) -> ExchangeKey:
        """The key that signs for `purpose` now; raises KeyStoreError if there is none."""
        ...

    def verification_keys(self, purpose: str) -> list[ExchangeKey]:
        """Every key whose signatures for `purpose` are still accepted (the active one first)."""
        ...

    def ensure(self, purpose: str) -> ExchangeKey:
        """The active key, generated if the store has none for `purpose` (`exchange init`)."""
        ...

    def active_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        """The X25519 key partners seal to now."""
        ...

    def decryption_keys(self, purpose: str) -> list[ExchangeEncryptionKey]:
        """Every X25519 key that still opens envelopes (the active one first)."""
        ...

    def ensure_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        """The active X25519 key, generated if there is none (`exchange init`)."""
        ...

    def ensure_secret(self, purpose: str) -> StorageKey:
        """The active secret key for data at rest, generated if there is none."""
        ...


class FileKeyStore:
    """Keys as files `<purpose>.<created>.key` (JSON with the b64url seed), mode 0600, in a 0700 folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Parsed keys by (path, mtime): files are listed on every call (a rotation is seen at once), but each key
        # file is read and parsed once (bench: re-reading cost ~9% of an authorised read).
        self._parsed: dict[tuple[Path, int], ExchangeKey | ExchangeEncryptionKey] = {}

    def _files(self, purpose: str) -> list[Path]:
        if not self.directory.is_dir():
            raise KeyStoreError(f"The key store {self.directory} does not exist; run `exchange init`.")
        return sorted(self.directory.glob(f"{purpose}.*.key"), reverse=True)  # newest first

    def _seed(self, path: Path) -> tuple[dict[str, Any], bytes]:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyStoreError(f"Key file {path.name} is readable by others (mode {mode:o}); refusing to use it.")
        try:
            data = json.loads(path.read_text(encoding="ascii"))
            return data, base64.urlsafe_b64decode(data["seed"] + "==")
        except (ValueError, KeyError, TypeError) as e:
            raise KeyStoreError(f"Key file {path.name} is unreadable.") from e

    def _cached(self, path: Path) -> tuple[tuple[Path, int], ExchangeKey | ExchangeEncryptionKey | None]:
        stat = path.stat()
        if stat.st_mode & 0o077:
            raise KeyStoreError(f"Key file {path.name} is readable by others (mode {stat.st_mode & 0o777:o}); "
                                "refusing to use it.")
        slot = (path, stat.st_mtime_ns)
        return slot, self._parsed.get(slot)

    def _read(self, path: Path) -> ExchangeKey:
        slot, cached = self._cached(path)
        if isinstance(cached, ExchangeKey):
            return cached
        key = self._parse_signing(path)
        self._parsed[slot] = key
        return key

    def _parse_signing(self, path: Path) -> ExchangeKey:
        data, seed = self._seed(path)
        try:
            return ExchangeKey(purpose=data["purpose"], created_at=int(data["created_at"]),
                               signing_key=nacl.signing.SigningKey(seed))
        except (ValueError, KeyError, TypeError, nacl.exceptions.CryptoError) as e:
            raise KeyStoreError(f"Key file {path.name} is unreadable.") from e

    def _read_encryption(self, path: Path) -> ExchangeEncryptionKey:
        slot, cached = self._cached(path)
        if isinstance(cached, ExchangeEncryptionKey):
            return cached
        key = self._parse_encryption(path)
        self._parsed[slot] = key
        return key

    def _parse_encryption(self, path: Path) -> ExchangeEncryptionKey:
        data, seed = self._seed(path)
        try:
            return ExchangeEncryptionKey(purpose=data["purpose"], created_at=int(data["created_at"]),
                                         private_key=nacl.public.PrivateKey(seed))
        except (ValueError, KeyError, TypeError, nacl.exceptions.CryptoError) as e:
            raise KeyStoreError(f"Key file {path.name} is unreadable.") from e

    def ensure_secret(self, purpose: str) -> StorageKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = self._files(purpose)
        if files:
            data, secret = self._seed(files[0])
            return StorageKey(purpose=purpose, created_at=int(data["created_at"]), secret=secret)
        key = StorageKey(purpose=purpose, created_at=int(time.time()), secret=nacl.utils.random(32))
        self._write_seed(self.directory / f"{purpose}.{key.created_at}.key", purpose, key.created_at, key.secret)
        return key

    def active_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        files = self._files(purpose)
        if not files:
            raise KeyStoreError(f"The key store has no {purpose!r} key; run `exchange init`.")
        return self._read_encryption(files[0])

    def decryption_keys(self, purpose: str) -> list[ExchangeEncryptionKey]:
        return [self._read_encryption(path) for path in self._files(purpose)]

    def ensure_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._files(purpose):
            return self.active_encryption(purpose)
        key = ExchangeEncryptionKey(purpose=purpose, created_at=int(time.time()),
                                    private_key=nacl.public.PrivateKey.generate())
        self._write_seed(self.directory / f"{purpose}.{key.created_at}.key", purpose, key.created_at,
                         bytes(key.private_key))
        return key

    def active(self, purpose: str) -> ExchangeKey:
        files = self._files(purpose)
        if not files:
            raise KeyStoreError(f"The key store has no {purpose!r} key; run `exchange init`.")
        return self._read(files[0])

    def verification_keys(self, purpose: str) -> list[ExchangeKey]:
        return [self._read(path) for path in self._files(purpose)]

    def ensure(self, purpose: str) -> ExchangeKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._files(purpose):
            return self.active(purpose)
        key = ExchangeKey(purpose=purpose, created_at=int(time.time()), signing_key=nacl.signing.SigningKey.generate())
        self._write(self.directory / f"{purpose}.{key.created_at}.key", key)
        return key

    def _write(self, path: Path, key: ExchangeKey) -> None:
        self._write_seed(path, key.purpose, key.created_at, bytes(key.signing_key))

    def _write_seed(self, path: Path, purpose: str, created_at: int, seed: bytes) -> None:
        payload = json.dumps({"purpose": purpose, "created_at": created_at, "seed": b64url(seed)}).encode("ascii")
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, payload)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, path)
            directory_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class InMemoryKeyStore:
    """For tests: keys generated on first use, kept in memory."""

    def __init__(self) -> None:
        self._keys: dict[str, list[ExchangeKey]] = {}
        self._encryption: dict[str, list[ExchangeEncryptionKey]] = {}
        self._secrets: dict[str, StorageKey] = {}

    def active_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        if not self._encryption.get(purpose):
            raise KeyStoreError(f"No {purpose!r} key.")
        return self._encryption[purpose][0]

    def decryption_keys(self, purpose: str) -> list[ExchangeEncryptionKey]:
        return list(self._encryption.get(purpose, []))

    def ensure_secret(self, purpose: str) -> StorageKey:
        if purpose not in self._secrets:
            self._secrets[purpose] = StorageKey(purpose=purpose, created_at=int(time.time()),
                                                secret=nacl.utils.random(32))
        return self._secrets[purpose]

    def ensure_encryption(self, purpose: str) -> ExchangeEncryptionKey:
        if not self._encryption.get(purpose):
            self._encryption[purpose] = [ExchangeEncryptionKey(
                purpose=purpose, created_at=int(time.time()), private_key=nacl.public.PrivateKey.generate())]
        return self._encryption[purpose][0]

    def active(self, purpose: str) -> ExchangeKey:
        if not self._keys.get(purpose):
            raise KeyStoreError(f"No {purpose!r} key.")
        return self._keys[purpose][0]

    def verification_keys(self, purpose: str) -> list[ExchangeKey]:
        return list(self._keys.get(purpose, []))

    def ensure(self, purpose: str) -> ExchangeKey:
        if not self._keys.get(purpose):
            key = ExchangeKey(purpose=purpose, created_at=int(time.time()),
                              signing_key=nacl.signing.SigningKey.generate())
            self._keys[purpose] = [key]
        return self._keys[purpose][0]
