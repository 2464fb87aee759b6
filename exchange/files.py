"""Files written whole or not at all: the one atomic write lives in `exchange.protocol.files`, where the partner
library (which may import only the protocol) uses it too; re-exported here for the server's callers. And SQLite
files readable by their owner only."""

from __future__ import annotations

import logging
import os

from exchange.protocol.files import atomic_write, fsync_directory

__all__ = ["PRIVATE_FILE_MODE", "SQLITE_COMPANIONS", "atomic_write", "fsync_directory", "secure_sqlite_files"]

log = logging.getLogger("exchange.db")


PRIVATE_FILE_MODE = 0o600
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def sqlite_file_path(database: str | None) -> str | None:
    """The absolute path of the file an SQLite database name (a URL's `database` part) stands for; None for an
    in-memory database, a `file:` URI, or no name."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def secure_sqlite_files(database: str | None) -> None:
    """An SQLite file and its -wal/-shm/-journal companions (the register in clear; the auditor's console's index of
    the log and review notes): owner-only (0600).

    A missing database file is created empty with mode 0600 before SQLite opens it (SQLite then gives its -wal and
    -shm files the database file's mode); files that exist with a looser mode are narrowed. An in-memory database
    has no file. A folder that does not exist yet is left to whoever creates it (`exchange init`)."""
    path = sqlite_file_path(database)
    if path is None:
        return
    if not os.path.isdir(os.path.dirname(path)):
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for suffix in SQLITE_COMPANIONS:
        companion = path + suffix
        try:
            if os.stat(companion).st_mode & 0o077:
                os.chmod(companion, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours to change: say so, once per connection, and go on
            log.warning("database file readable by others", extra={"path": companion})

