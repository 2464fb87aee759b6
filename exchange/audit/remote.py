"""The log as an auditor reads it over the API (`exchange audit verify --server`).

`ServerSource` is a `LogSource` over the partner client library: every read is an authenticated, audited call
(token, DPoP proof, sealed and verified answer) by the auditor's own client. Nothing the server says is trusted:
`verify_log` checks the checkpoint's signature and recomputes the root from the entries it was sent.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator

from exchange.audit.services import StoredEntry
from exchange.partner.api import ExchangeClient
from exchange.protocol.audit_errors import LogMismatch
from exchange.protocol.encoding import b64url_decode


class ServerSource:
    """A running exchange's log, read through `client` (an auditor's `ExchangeClient`, purpose `oversight`)."""

    def __init__(self, client: ExchangeClient, *, description: str | None = None) -> None:
        self.client = client
        self.description = description or f"server {client._connection.base_url}"
        self._checkpoint_size: int | None = None

    def checkpoint(self) -> str:
        note = self.client.audit.checkpoint()
        lines = note.split("\n")
        self._checkpoint_size = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
        return note

    def entries(self, end: int) -> Iterator[StoredEntry]:
        for position, item in enumerate(self.client.audit.iterate_entries(0, end)):
            try:
                stored = item.get("leaf_hash")
                yield StoredEntry(int(item["index"]), b64url_decode(item["leaf"]),
                                  b64url_decode(stored) if stored else None)
            except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as e:
                raise LogMismatch(position, f"the server sent entry {position} in a form that is not an entry") from e

    def checkpoint_sizes(self) -> list[int]:
        return []  # the API publishes only the latest checkpoint

    def checkpoint_note(self, size: int) -> str | None:
        return None

    def uncovered(self) -> int | None:
        if self._checkpoint_size is None:
            return None
        size = self.client.audit.entries(0, 0).data.get("size")
        return size - self._checkpoint_size if isinstance(size, int) else None
