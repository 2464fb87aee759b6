"""The master key that unlocks the key store (keys.md "Storage of private keys"; operations.md's environment).

`EXCHANGE_MASTER_PASSPHRASE`: the key-encryption key is derived with Argon2id (PyNaCl `pwhash.argon2id`) with the
salt and cost kept in `<keys>/master.json`. `EXCHANGE_MASTER_KEY`: the key-encryption key itself, 32 bytes in base64
(from a secrets manager). `master.json` also holds a check value sealed under the key-encryption key, so a wrong secret
is told apart from a damaged key file at once, before anything is used. Neither secret is ever stored or logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from exchange.files import atomic_write
from exchange.keys.errors import KEY_ENV, PASSPHRASE_ENV, KeyStoreError, MasterSecretMissing, MasterSecretWrong

COST_ENV = "EXCHANGE_MASTER_KDF"  # interactive | moderate | sensitive; read only when the store is created
CHECK_PLAINTEXT = b"returnee-exchange key store v1"
FILE_NAME = "master.json"
MIN_PASSPHRASE_CHARS = 12
COSTS = {
    "interactive": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE),
    "sensitive": (nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE),
}


@dataclass(frozen=True)
class MasterSecret:
    """What the environment says; `repr` shows neither secret."""

    passphrase: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    cost: str = "moderate"

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> MasterSecret:
        env = os.environ if env is None else env
        return cls(passphrase=env.get(PASSPHRASE_ENV) or None, key=env.get(KEY_ENV) or None,
                   cost=env.get(COST_ENV) or "moderate")

    @property
    def present(self) -> bool:
        return bool(self.passphrase or self.key)


@dataclass(frozen=True)
class MasterKey:
    """The key-encryption key. Seals `storage` keys (and the check value); `repr` never shows it."""

    kek: bytes = field(repr=False)

    def seal(self, plaintext: bytes) -> bytes:
        return bytes(nacl.secret.SecretBox(self.kek).encrypt(plaintext))

    def open(self, sealed: bytes) -> bytes:
        try:
            return nacl.secret.SecretBox(self.kek).decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise MasterSecretWrong() from e


def _raw_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None,
                               validate=True)
    except (binascii.Error, ValueError) as e:
        raise MasterSecretWrong(f"{KEY_ENV} is not base64.") from e
    if len(raw) != nacl.secret.SecretBox.KEY_SIZE:
        raise MasterSecretWrong(f"{KEY_ENV} must be 32 bytes in base64 (it holds {len(raw)}).")
    return raw


def _derive(passphrase: str, params: Mapping[str, Any]) -> bytes:
    salt = base64.b64decode(params["salt"])
    kek: bytes = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt,
                                          opslimit=int(params["opslimit"]), memlimit=int(params["memlimit"]))
    return kek


def unlock(directory: Path, secret: MasterSecret, *, create: bool = False) -> MasterKey:
    """The master key of the store in `directory`, checked against its check value.

    `create`: set the store up (a new salt and check value) if `master.json` does not exist yet (`exchange init`).
    """
    if not secret.present:
        raise MasterSecretMissing()
    path = directory / FILE_NAME
    if not path.exists():
        if not create:
            raise KeyStoreError(f"The key store {directory} is not set up; run `exchange init`.")
        return _create(directory, secret)
    try:
        params = json.loads(path.read_text(encoding="ascii"))
        check = base64.b64decode(params["check"])
        kdf = params["kdf"]
    except (ValueError, KeyError, TypeError) as e:
        raise KeyStoreError(f"{path} is unreadable.") from e
    if secret.key:
        master = MasterKey(_raw_key(secret.key))  # a raw key is the key-encryption key, whatever made it
    elif kdf == "argon2id" and secret.passphrase:
        master = MasterKey(_derive(secret.passphrase, params))
    else:
        raise MasterSecretWrong(f"This key store was set up with {KEY_ENV}; a passphrase cannot open it.")
    if master.open(check) != CHECK_PLAINTEXT:
        raise MasterSecretWrong()
    return master


def _create(directory: Path, secret: MasterSecret) -> MasterKey:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    params: dict[str, Any] = {"v": 1}
    if secret.key:
        master = MasterKey(_raw_key(secret.key))
        params["kdf"] = "raw"
    elif secret.passphrase is not None:
        if len(secret.passphrase) < MIN_PASSPHRASE_CHARS:
            raise MasterSecretWrong(f"{PASSPHRASE_ENV} must have at least {MIN_PASSPHRASE_CHARS} characters.")
        if secret.cost not in COSTS:
            raise KeyStoreError(f"{COST_ENV} must be one of {', '.join(COSTS)}.")
        opslimit, memlimit = COSTS[secret.cost]
        params.update(kdf="argon2id", salt=base64.b64encode(nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES))
                      .decode("ascii"), opslimit=opslimit, memlimit=memlimit)
        master = MasterKey(_derive(secret.passphrase, params))
    else:
        raise MasterSecretMissing()
    params["check"] = base64.b64encode(master.seal(CHECK_PLAINTEXT)).decode("ascii")
    atomic_write(directory / FILE_NAME, json.dumps(params, indent=1).encode("ascii"))
    return master


def new_master_key() -> str:
    """A fresh `EXCHANGE_MASTER_KEY` value (the demo and tests use one; production keeps it in a secrets manager)."""
    return base64.b64encode(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)).decode("ascii")
