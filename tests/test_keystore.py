"""The embedded key store: files of mode 0600, atomic, fail closed, private parts never shown."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from exchange.keys.store import FileKeyStore, KeyStoreError


def test_keys_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys")
    token = store.ensure("token")
    enc = store.ensure_encryption("envelope-enc")
    assert store.ensure("token").kid == token.kid and store.ensure_encryption("envelope-enc").kid == enc.kid
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    files = sorted((tmp_path / "keys").iterdir())
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not any(f.name.startswith(".tmp-") for f in files)
    assert store.verification_keys("token") == [token] and store.decryption_keys("envelope-enc")[0].kid == enc.kid


def test_private_parts_are_never_in_a_repr(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    key, enc = store.ensure("audit"), store.ensure_encryption("envelope-enc")
    seed = json.loads(next(tmp_path.glob("audit.*.key")).read_text())["seed"]
    assert seed not in repr(key) and "signing_key" not in repr(key) and "private_key" not in repr(enc)
    assert "d" not in key.public_jwk() and "d" not in enc.public_jwk()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    store.ensure("token")
    [path] = tmp_path.glob("token.*.key")
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError) as refused:
        store.active("token")
    assert refused.value.code == "key_store_unavailable" and "readable by others" in refused.value.message


def test_missing_store_or_key_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path / "absent").active("token")
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path).active("token")
    (tmp_path / "token.1.key").write_text("not json")
    os.chmod(tmp_path / "token.1.key", 0o600)
    with pytest.raises(KeyStoreError):
        FileKeyStore(tmp_path).active("token")
