"""Keeping the exchange's signed audit receipts (witness.md §2), in a folder the integrator chooses.

Each verified receipt is written as `<index>-<leaf hash prefix>.receipt.json` (`{index, leaf_hash, log, time, sig}`,
b64), atomically (a temporary file in the same folder, fsync, rename). Whoever holds them can later check them
against the log (`exchange audit verify --receipts DIR`): a receipt the log contradicts is proof, to anyone, that the
log was rewritten after the receipt was handed out.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from exchange.protocol.receipts import SignedReceipt, read_receipts, receipt_file_name

__all__ = ["ReceiptFolder", "read_receipts"]


class ReceiptFolder:
    """A folder of kept receipts (created, mode 0700, if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def keep(self, receipt: SignedReceipt) -> Path:
        target = self.path / receipt_file_name(receipt)
        payload = json.dumps(receipt.to_json(), separators=(",", ":")).encode("utf-8") + b"\n"
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".receipt-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return target

    def receipts(self) -> list[tuple[Path, SignedReceipt]]:
        return read_receipts(self.path)
