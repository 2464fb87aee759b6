"""Files written whole or not at all: the one atomic write lives in `exchange.protocol.files`, where the partner
library (which may import only the protocol) uses it too; re-exported here for the server's callers."""

from __future__ import annotations

from exchange.protocol.files import atomic_write, fsync_directory

__all__ = ["atomic_write", "fsync_directory"]
