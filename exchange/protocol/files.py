"""Files written whole or not at all: the one atomic write of the exchange and of the partner library (key files,
master parameters, the auditor's trust state, a partner's event cursor).

A crash at any point leaves either the old file or the new one, never a torn one: the bytes go to a 0600 temp file
in the same folder, which is fsynced, renamed over the target, and then the folder itself is fsynced so that the
rename survives a power loss (without it the directory entry may still name the old inode after a crash).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, payload: bytes, *, prefix: str = ".tmp-") -> None:
    """Write `path` (mode 0600) whole or not at all: temp file in the same folder, fsync, rename, fsync the folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(payload)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
