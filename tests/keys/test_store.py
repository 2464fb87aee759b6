"""The embedded key store: sealed under the master key, files of mode 0600, atomic, fail closed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from exchange import create_app
from exchange.keys.errors import KeyStoreError, MasterSecretMissing, MasterSecretWrong
from exchange.keys.master import MasterSecret, new_master_key, unlock
from exchange.keys.ring import key_ring
from exchange.keys.store import MASTER, ExchangeKey, FileKeyStore, KeyStoreDamaged, StorageKey, secret_bytes
from exchange.protocol.encoding import b64url

PASSPHRASE = "correct horse battery staple"


def passphrase(text: str = PASSPHRASE) -> MasterSecret:
    return MasterSecret(passphrase=text, cost="interactive")


def opened(directory: Path, secret: MasterSecret) -> FileKeyStore:
    return FileKeyStore(directory, master=unlock(directory, secret, create=True))


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return opened(tmp_path / "keys", MasterSecret(key=new_master_key()))


def test_keys_are_sealed_in_files_of_mode_0600_in_a_0700_folder(store: FileKeyStore) -> None:
    storage = store.generate("storage")
    token = store.generate("token", wrap_with=storage.kid)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    files = sorted(store.directory.glob("*.key"))
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not list(store.directory.glob(".tmp-*"))
    for key in (storage, token):
        text = (store.directory / f"{key.kid}.key").read_text()
        assert b64url(secret_bytes(key)) not in text and secret_bytes(key).hex() not in text
    assert store.wrapped_by(storage.kid) == MASTER and store.wrapped_by(token.kid) == storage.kid


def test_a_restarted_store_opens_its_keys_with_the_same_master_secret(tmp_path: Path) -> None:
    directory, secret = tmp_path / "keys", passphrase()
    first = opened(directory, secret)
    storage = first.generate("storage")
    token = first.generate("token", wrap_with=storage.kid)
    enc = first.generate("envelope-enc", wrap_with=storage.kid)
    again = FileKeyStore(directory, master=unlock(directory, secret))
    loaded = again.load(token.kid)
    assert isinstance(loaded, ExchangeKey) and loaded.kid == token.kid
    assert loaded.sign(b"m") == token.sign(b"m")  # type: ignore[union-attr]
    assert again.load(enc.kid).kid == enc.kid


def test_a_wrong_or_missing_master_secret_is_refused_with_its_code(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    opened(directory, passphrase()).generate("storage")
    with pytest.raises(MasterSecretWrong) as wrong:
        unlock(directory, passphrase("not the passphrase at all"))
    assert wrong.value.code == "master_secret_wrong"
    with pytest.raises(MasterSecretWrong):
        unlock(directory, MasterSecret(key=new_master_key()))  # a raw key that is not this store's KEK
    with pytest.raises(MasterSecretMissing) as missing:
        unlock(directory, MasterSecret())
    assert missing.value.code == "master_secret_missing"
    assert PASSPHRASE not in (directory / "master.json").read_text()


def test_a_store_set_up_with_a_raw_key_refuses_a_passphrase_and_bad_keys(tmp_path: Path) -> None:
    directory, key = tmp_path / "keys", new_master_key()
    opened(directory, MasterSecret(key=key))
    assert unlock(directory, MasterSecret(key=key)) is not None
    with pytest.raises(MasterSecretWrong):
        unlock(directory, passphrase())
    with pytest.raises(MasterSecretWrong) as short:
        unlock(directory, MasterSecret(key="c2hvcnQ="))
    assert "32 bytes" in short.value.message


def test_a_short_passphrase_is_refused_when_the_store_is_set_up(tmp_path: Path) -> None:
    with pytest.raises(MasterSecretWrong):
        unlock(tmp_path / "keys", passphrase("short"), create=True)
    assert not (tmp_path / "keys" / "master.json").exists()


def test_a_key_file_readable_by_others_is_refused(store: FileKeyStore) -> None:
    storage = store.generate("storage")
    os.chmod(store.directory / f"{storage.kid}.key", 0o640)
    fresh = FileKeyStore(store.directory, master=store._master)
    with pytest.raises(KeyStoreError) as refused:
        fresh.load(storage.kid)
    assert refused.value.code == "key_store_unavailable" and "readable by others" in refused.value.message


def test_a_tampered_or_swapped_key_file_is_refused(store: FileKeyStore) -> None:
    storage = store.generate("storage")
    a = store.generate("token", wrap_with=storage.kid)
    b = store.generate("audit", wrap_with=storage.kid)
    path_a, path_b = store.directory / f"{a.kid}.key", store.directory / f"{b.kid}.key"
    data = json.loads(path_a.read_text())
    sealed = bytearray(data["sealed"].encode())
    sealed[30] = ord("A") if sealed[30] != ord("A") else ord("B")
    path_a.write_text(json.dumps({**data, "sealed": sealed.decode()}))
    fresh = FileKeyStore(store.directory, master=store._master)
    with pytest.raises(KeyStoreError):
        fresh.load(a.kid)
    os.replace(path_b, path_a)  # b's file under a's name
    with pytest.raises(KeyStoreError) as swapped:
        FileKeyStore(store.directory, master=store._master).load(a.kid)
    assert "another key" in swapped.value.message


def test_destroy_erases_the_private_part(store: FileKeyStore) -> None:
    storage = store.generate("storage")
    token = store.generate("token", wrap_with=storage.kid)
    assert store.destroy(token.kid) is True
    assert not (store.directory / f"{token.kid}.key").exists() and not store.has(token.kid)
    with pytest.raises(KeyStoreError):
        store.load(token.kid)
    assert store.destroy(token.kid) is False


def test_rewrap_moves_every_key_under_the_new_storage_key(store: FileKeyStore) -> None:
    old = store.generate("storage")
    keys = [store.generate(p, wrap_with=old.kid) for p in ("token", "audit", "envelope-enc")]
    new = store.generate("storage")
    assert store.rewrap(new.kid) == 3
    assert all(store.wrapped_by(k.kid) == new.kid for k in keys)
    store.destroy(old.kid)
    fresh = FileKeyStore(store.directory, master=store._master)
    assert [fresh.load(k.kid).kid for k in keys] == [k.kid for k in keys]
    assert store.rewrap(new.kid) == 0


def test_private_parts_are_never_in_a_repr(store: FileKeyStore) -> None:
    storage = store.generate("storage")
    assert isinstance(storage, StorageKey)
    token = store.generate("token", wrap_with=storage.kid)
    enc = store.generate("envelope-enc", wrap_with=storage.kid)
    for key in (storage, token, enc):
        assert b64url(secret_bytes(key)) not in repr(key) and secret_bytes(key).hex() not in repr(key)
    assert PASSPHRASE not in repr(passphrase())


def test_the_exchange_refuses_to_start_without_the_master_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    directory = tmp_path / "keys"
    opened(directory, passphrase())
    monkeypatch.delenv("EXCHANGE_MASTER_KEY", raising=False)
    monkeypatch.delenv("EXCHANGE_MASTER_PASSPHRASE", raising=False)
    config = {"DATABASE_URL": database_url, "KEYS_DIR": str(directory)}
    with pytest.raises(MasterSecretMissing):
        create_app(config)
    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", "not the passphrase at all")
    with pytest.raises(MasterSecretWrong):
        create_app(config)
    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", PASSPHRASE)
    assert key_ring(create_app(config)) is not None


def test_readyz_says_unavailable_when_an_active_key_does_not_open(file_app: Any) -> None:
    client = file_app.test_client()
    assert client.get("/readyz").get_json()["checks"]["key_store"] == "ok"
    ring = key_ring(file_app)
    token = ring.active("token").kid
    ring.store.destroy(token)  # e.g. a file deleted by hand
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["key_store"] == "unavailable"


def _damage(path: Path) -> None:
    """Flip one byte inside the sealed secret: the file still parses, but no longer opens."""
    data = json.loads(path.read_text())
    sealed = data["sealed"]
    middle = len(sealed) // 2
    data["sealed"] = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1:]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "not json", "another key"])
def test_a_damaged_key_file_is_reported_as_damaged_naming_it(tmp_path: Path, damage: str) -> None:
    """The master secret is right (master.json's check value says so): the file is at fault, not the secret."""
    directory, secret = tmp_path / "keys", MasterSecret(key=new_master_key())
    first = opened(directory, secret)
    storage = first.generate("storage")
    token = first.generate("token", wrap_with=storage.kid)
    other = first.generate("audit", wrap_with=storage.kid)
    path = directory / f"{storage.kid}.key"
    if damage == "flipped":
        _damage(path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "not json":
        path.write_bytes(b"\x00\x01garbage")
    else:
        path.write_bytes((directory / f"{other.kid}.key").read_bytes())
    again = FileKeyStore(directory, master=unlock(directory, secret))
    for kid in (storage.kid, token.kid):  # the storage key, and a key sealed under it
        with pytest.raises(KeyStoreDamaged) as damaged:
            again.load(kid)
        assert damaged.value.code == "key_store_damaged" and damaged.value.status == 503
        assert f"{storage.kid}.key" in damaged.value.message


def test_a_damaged_signing_key_file_names_itself_and_a_wrong_secret_stays_wrong(tmp_path: Path) -> None:
    directory, secret = tmp_path / "keys", MasterSecret(key=new_master_key())
    first = opened(directory, secret)
    storage = first.generate("storage")
    token = first.generate("token", wrap_with=storage.kid)
    _damage(directory / f"{token.kid}.key")
    again = FileKeyStore(directory, master=unlock(directory, secret))
    assert again.load(storage.kid).kid == storage.kid
    with pytest.raises(KeyStoreDamaged) as damaged:
        again.load(token.kid)
    assert f"{token.kid}.key" in damaged.value.message
    with pytest.raises(MasterSecretWrong):
        unlock(directory, MasterSecret(key=new_master_key()))


def test_calls_that_cannot_be_audited_are_refused_while_key_administration_stays_open(
    make_app: Any, file_keys: FileKeyStore, master_key: str
) -> None:
    """A damaged audit key: readyz says so, and /v1 calls are 503 audit_key_unavailable (never served unaudited),
    except key administration, the way to repair it."""
    from exchange.identity import Caller
    from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
    from tests.conftest import AgencyClient

    first = make_app(KEYSTORE=file_keys, KEYS_DIR=str(file_keys.directory))
    audit_kid = first.extensions["exchange.keystore"].active("audit").kid
    _damage(file_keys.directory / f"{audit_kid}.key")
    fresh = FileKeyStore(file_keys.directory, master=unlock(file_keys.directory, MasterSecret(key=master_key)))
    app = make_app(KEYSTORE=fresh, KEYS_DIR=str(file_keys.directory))
    assert app.test_client().get("/readyz").status_code == 503

    def caller(agency: str) -> AgencyClient:
        return AgencyClient(app.test_client(), Caller(agency=agency, client_id=f"test-{agency}", officer="TJ-1",
                                                      scopes=AGENCY_SCOPES[agency], purpose=min(PURPOSES[agency])))

    interior = caller("interior")
    for response in (interior.get("/v1/returnees"), interior.post("/v1/returnees", json={}),
                     AgencyClient(app.test_client(), None).get("/v1/returnees")):
        body = response.get_json()
        assert response.status_code == 503 and body["code"] == "audit_key_unavailable", body
    security = caller("security")
    assert security.get("/v1/keys").status_code == 200
