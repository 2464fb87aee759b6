"""The witness's answers other than 200 (C2SP tlog-witness "add-checkpoint"), as typed errors."""

from __future__ import annotations

from exchange.protocol.errors import ExchangeError


class WitnessError(ExchangeError):
    """A refused submission; `body` and `content_type` are what the witness answers."""

    content_type = "text/plain; charset=utf-8"

    @property
    def body(self) -> bytes:
        return (self.message + "\n").encode("utf-8")


class BadSubmission(WitnessError):
    status = 400
    code = "bad_request"
    default_message = "The add-checkpoint request is malformed."


class UntrustedCheckpoint(WitnessError):
    status = 403
    code = "untrusted_checkpoint"
    default_message = "The checkpoint is not signed by a key this witness trusts for its log."


class UnknownLog(WitnessError):
    status = 404
    code = "unknown_log"
    default_message = "This witness does not know the checkpoint's log."


class SizeConflict(WitnessError):
    """409: the submitter's old size is not the witness's, or the same size came with another root. The body is the
    witness's size (`text/x.tlog.size`)."""

    status = 409
    code = "size_conflict"
    content_type = "text/x.tlog.size"

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(message or f"The witness has cosigned a tree of {size} entries.")
        self.size = size

    @property
    def body(self) -> bytes:
        return b"%d\n" % self.size


class InconsistentCheckpoint(WitnessError):
    status = 422
    code = "inconsistent_checkpoint"
    default_message = "The consistency proof does not verify: the checkpoint is not an extension of the one cosigned."
