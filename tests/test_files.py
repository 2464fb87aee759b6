"""The one atomic write (exchange/files.py) and the auditor's trust state that relies on it: a crash leaves the old
file or the new one, and the rename is made durable by an fsync of the folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from exchange.audit.verify import TrustState
from exchange.protocol import files


def _state(size: int) -> TrustState:
    return TrustState(origin="exchange.local/audit", size=size, root=bytes([size]) * 32, checkpoint=f"note {size}\n",
                      key="exchange.local/audit+abcd+AQ", verified_at="2026-01-01T00:00:00Z")


class FsyncSpy:
    """Records what each os.fsync was called on: ("dir"|"file", inode), in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            self.calls.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
            real(fd)

        monkeypatch.setattr(files.os, "fsync", fsync)


def test_the_trust_state_is_fsynced_and_its_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "audit-state.json"
    spy = FsyncSpy(monkeypatch)
    _state(7).save(path)
    # the new file's content, then the folder holding the rename (after it: the file is in place by then)
    assert spy.calls == [("file", path.stat().st_ino), ("dir", path.parent.stat().st_ino)]
    assert TrustState.load(path) == _state(7)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit-state.json"]


@pytest.mark.parametrize("crash_at", ["write", "fsync", "replace"])
def test_a_crash_while_saving_keeps_the_previous_trust_state_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    path = tmp_path / "audit-state.json"
    _state(5).save(path)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for the process dying at this point

    monkeypatch.setattr(files.os, crash_at, crash)
    with pytest.raises(KeyboardInterrupt):
        _state(9).save(path)
    monkeypatch.undo()
    assert TrustState.load(path) == _state(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-state.json"]  # no temp file left behind


def test_atomic_write_writes_everything_even_when_the_os_writes_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    files.atomic_write(tmp_path / "f", b"0123456789")
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_a_key_file_and_its_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchange.keys.master import MasterSecret, new_master_key, unlock
    from exchange.keys.store import FileKeyStore

    directory = tmp_path / "keys"
    store = FileKeyStore(directory, master=unlock(directory, MasterSecret(key=new_master_key()), create=True))
    spy = FsyncSpy(monkeypatch)
    key = store.generate("storage")
    assert spy.calls == [("file", (directory / f"{key.kid}.key").stat().st_ino), ("dir", directory.stat().st_ino)]
